"""The fine-tuned MiniLM sentiment classifier that notebooks 03-06 share, trained once and cached.

``get_classifier(config)`` returns the classifier for a ``FinetuneConfig``. The first call fine-tunes MiniLM on the
Rotten Tomatoes train split (keeping the epoch with the best *validation* accuracy; the test split is never seen
here), then caches the weights under ``<cache>/classifier-<key>/`` where the key hashes the settings. Later calls
load the cache in a second.

The entry is made by ``helpers.cache.cached_dir`` (file lock, atomic rename, sha256 of every file).
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from . import cache, evaluation, models
from . import data as data_mod

CACHE_FORMAT = 1
WEIGHTS_FILE = "weights.pt"


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 3
    max_len: int = 64
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    train_examples: int | None = None  # None: the whole train split
    seed: int = 0

    def key(self) -> str:
        """A short hash of the settings (and of what the cache format depends on)."""
        return cache.settings_key({"config": dataclasses.asdict(self), "format": CACHE_FORMAT,
                                   "model": "all-MiniLM-L6-v2", "data": "rotten_tomatoes/binary/seed0"})


#: Smoke: a short fine-tune for CI (about a minute on 2 cores). Full: the workshop setting (about 0.80 test accuracy).
SMOKE = FinetuneConfig(epochs=1, max_len=48, train_examples=1600, lr=1.5e-4)
FULL = FinetuneConfig(epochs=3, max_len=64)


def config_for(smoke: bool) -> FinetuneConfig:
    return SMOKE if smoke else FULL


# --- training -------------------------------------------------------------------------------------------------

def train(config: FinetuneConfig, progress: bool = True):
    """Fine-tune a fresh MiniLM classifier; return ``(model, history)``. Model selection on validation only."""
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    splits = data_mod.load_rotten_tomatoes()
    train_split = splits["train"] if config.train_examples is None else splits["train"].head(config.train_examples)
    val_split = splits["validation"]
    tokenizer = models.load_tokenizer()
    model = models.load_classifier(num_labels=2)
    enc = models.encode(tokenizer, train_split.texts, config.max_len)
    labels = torch.tensor(train_split.labels)
    n = len(labels)
    steps_per_epoch = (n + config.batch_size - 1) // config.batch_size
    total = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(1, int(total * config.warmup_frac))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))))
    generator = torch.Generator().manual_seed(config.seed)
    history, best_state, best_acc = [], None, -1.0
    bar = tqdm(total=total, desc="fine-tune MiniLM", disable=not progress)
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size:(step + 1) * config.batch_size]
            out = model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx],
                        token_type_ids=enc["token_type_ids"][idx], labels=labels[idx])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            running += out.loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{running / (step + 1):.3f}")
        val_logits = evaluation.predict_logits(model, tokenizer, val_split.texts, config.max_len)
        val_acc = (val_logits.argmax(dim=1) == torch.tensor(val_split.labels)).float().mean().item()
        history.append({"epoch": epoch + 1, "train_loss": running / steps_per_epoch, "val_accuracy": val_acc})
        if val_acc > best_acc:
            best_acc, best_state = val_acc, {k: v.detach().clone() for k, v in model.state_dict().items()}
    bar.close()
    model.load_state_dict(best_state)
    return model.eval(), history


# --- cache ----------------------------------------------------------------------------------------------------

def entry_name(config: FinetuneConfig) -> str:
    """The classifier's cache entry: ``classifier-<key>``, the key hashing its settings."""
    return f"classifier-{config.key()}"


def load_weights(entry: Path) -> torch.nn.Module:
    """A MiniLM classifier with the weights saved in a cache entry (``torch.load(..., weights_only=True)``)."""
    model = models.load_classifier(num_labels=2)
    model.load_state_dict(torch.load(Path(entry) / WEIGHTS_FILE, weights_only=True, map_location="cpu"), strict=True)
    return model.eval()


def save_weights(model: torch.nn.Module, folder: Path) -> None:
    """``torch.save(model.state_dict(), ...)``: the weights alone, which ``load_weights`` reads back."""
    torch.save(model.state_dict(), Path(folder) / WEIGHTS_FILE)


def cached_weights(name: str, train_model, cache_dir: Path | None = None, progress: bool = True):
    """``(model, entry, meta, from_cache)`` for the cache entry ``name`` holding a classifier's weights: loaded
    (``load_weights``), or trained with ``train_model() -> (model, meta)`` and saved (``save_weights``). A checkpoint
    that no longer loads (truncated, or keys that no longer fit the model) is trained again."""
    trained, loaded = [], []

    def build(folder: Path) -> dict:
        model, meta = train_model()
        save_weights(model, folder)
        trained.append(model)
        return meta

    def accept(entry: Path) -> bool:
        try:
            loaded.append(load_weights(entry))
        except (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError):
            return False
        return True

    entry, meta, from_cache = cache.cached_dir(name, build, root=cache_dir, required=(WEIGHTS_FILE,),
                                               progress=progress, accept=accept)
    return (loaded[-1] if from_cache else trained[0]), entry, meta, from_cache


def get_classifier(config: FinetuneConfig | None = None, cache_dir: Path | None = None, progress: bool = True):
    """The fine-tuned classifier for ``config``: ``(model, tokenizer, info)``.

    ``info`` holds ``from_cache``, the cache ``path``, the training ``history`` (validation accuracy per epoch)
    and ``train_seconds``. The model is in eval mode on the CPU.
    """
    config = config or FULL
    models.minilm_path()  # fail early, with the install hint, if the model package is missing

    def train_model():
        model, history = train(config, progress=progress)
        return model, {"config": dataclasses.asdict(config), "history": history, "torch": torch.__version__}

    model, entry, meta, from_cache = cached_weights(entry_name(config), train_model, cache_dir, progress)
    info = {"from_cache": from_cache, "path": str(entry), "history": meta["history"],
            "train_seconds": meta["build_seconds"], "config": dataclasses.asdict(config)}
    return model, models.load_tokenizer(), info


# --- what a notebook starts from ------------------------------------------------------------------------------

@dataclass(frozen=True)
class NotebookClassifier:
    """What notebooks 03-06 start from: the fine-tuned classifier with its tokenizer and settings, and the data.

    ``splits`` holds the whole train, validation and test splits; ``validation`` and ``test`` the examples the
    notebook scores (the first ``validation_examples`` / ``test_examples`` of each split, or all of it). ``info``
    is ``get_classifier``'s cache info."""

    model: torch.nn.Module
    tokenizer: object
    config: FinetuneConfig
    splits: dict[str, data_mod.Split]
    test: data_mod.Split
    info: dict
    validation: data_mod.Split

    @property
    def max_len(self) -> int:
        """The length every sequence is padded or truncated to (the fine-tune's)."""
        return self.config.max_len

    def head(self, split: str, n: int | None) -> data_mod.Split:
        """The first ``n`` examples of a split (``"train"``, ``"validation"`` or ``"test"``); all of it if ``n`` is
        None."""
        if split not in self.splits:
            raise KeyError(f"no split {split!r}; choose from {sorted(self.splits)}")
        return self.splits[split] if n is None else self.splits[split].head(n)

    def describe(self) -> str:
        """Where the classifier came from and how it was fine-tuned, in one line (the cache entry by name, never a
        machine path)."""
        cfg, info = self.config, self.info
        source = "loaded from the cache" if info["from_cache"] else "fine-tuned now"
        n_train = cfg.train_examples or len(self.splits["train"])
        val = [round(h["val_accuracy"], 4) for h in info["history"]]
        return (f"classifier {Path(info['path']).name} {source}: {cfg.epochs} epoch(s) on {n_train} training examples, "
                f"max_len {cfg.max_len}, {info['train_seconds']} s to fine-tune; validation accuracy per epoch {val}")


def load_for_notebook(smoke: bool, test_examples: int | None = None, progress: bool = True,
                      cache_dir: Path | None = None, validation_examples: int | None = None) -> NotebookClassifier:
    """The classifier a notebook works on: ``get_classifier(config_for(smoke))`` (fine-tuned on first use, then
    cached), its tokenizer, and the Rotten Tomatoes splits, with the first ``validation_examples`` validation and
    ``test_examples`` test examples as ``validation`` and ``test`` (``None``: the whole split)."""
    config = config_for(smoke)
    model, tokenizer, info = get_classifier(config, cache_dir=cache_dir, progress=progress)
    splits = data_mod.load_rotten_tomatoes()
    validation = splits["validation"] if validation_examples is None else splits["validation"].head(validation_examples)
    test = splits["test"] if test_examples is None else splits["test"].head(test_examples)
    return NotebookClassifier(model, tokenizer, config, splits, test, info, validation)
