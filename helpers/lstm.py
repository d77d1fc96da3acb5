"""A word-level text pipeline and the small LSTM sentiment classifier of notebook 02.

- ``tokenize``: lower-cased words and punctuation marks;
- ``Vocab``: word -> id, built from the *training* split only (``<pad>`` = 0, ``<unk>`` = 1 for every word the
  training split did not have often enough), with ``encode_batch`` padding on the right to a common length
  (``pad_to=max_len`` for the evaluation protocol's fixed shapes);
- ``LSTMClassifier``: Embedding -> 2-layer LSTM -> Linear. It reads the true length of each row from the padding,
  so a padded batch gives the same logits as the rows one by one;
- ``train``: AdamW for a fixed number of epochs (``max_epochs``) with early stopping on the *validation* split (the
  test split is never seen), tqdm progress. No wall-clock budget: the same seed gives the same model on a busy
  machine and on a quiet one;
- ``predict``: logits in batches of ``helpers.evaluation.EVAL_BATCH_SIZE`` (the protocol's batch), in order, for
  ``helpers.evaluation.compare``.
"""

from __future__ import annotations

import copy
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words (keeping contractions such as ``isn't``) and single punctuation marks."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a string, got {type(text).__name__}")
    return _TOKEN.findall(text.lower())


class Vocab:
    """Word <-> id mapping. Build it with ``Vocab.build(train_texts)``; never from validation or test text."""

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if words[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary must start with {PAD!r}, {UNK!r}; got {words[:2]}. Use Vocab.build().")
        if len(set(words)) != len(words):
            raise ValueError("the vocabulary lists a word twice")
        self.itos = words
        self.stoi = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 2, max_size: int | None = None) -> "Vocab":
        """Keep words seen at least ``min_freq`` times, most frequent first (ties alphabetical), at most ``max_size``
        words besides the two specials. Everything else becomes ``<unk>``."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be >= 0 or None, got {max_size}")
        if isinstance(texts, str):
            raise TypeError("Vocab.build expects a list of texts, got a single string; wrap it in a list")
        counts: Counter[str] = Counter()
        n_texts = 0
        for text in texts:
            counts.update(tokenize(text))
            n_texts += 1
        if n_texts == 0:
            raise ValueError("cannot build a vocabulary from no texts; pass the training split's texts")
        words = sorted((w for w, c in counts.items() if c >= min_freq and w not in (PAD, UNK)),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[:max_size]
        return cls([PAD, UNK, *words])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def encode(self, text: str) -> list[int]:
        """Ids of the tokens of ``text``; unknown words map to ``<unk>`` (id 1)."""
        return [self.stoi.get(tok, UNK_ID) for tok in tokenize(text)]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens for ``ids``, dropping padding."""
        return [self.itos[int(i)] for i in ids if int(i) != PAD_ID]

    def encode_batch(self, texts: Sequence[str], max_len: int | None = None, pad_to: int | None = None) -> torch.Tensor:
        """A ``[len(texts), T]`` long tensor: ids truncated to ``max_len`` and right-padded with ``<pad>`` (0) to the
        longest row, or to ``pad_to`` columns when given (``pad_to=max_len`` gives every batch the same shape, as the
        evaluation protocol wants). A text with no tokens at all becomes a single ``<unk>``, so every row has
        length >= 1."""
        if isinstance(texts, str):
            raise TypeError("encode_batch expects a list of texts, got a single string; wrap it in a list")
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be >= 1 or None, got {max_len}")
        if len(texts) == 0:
            raise ValueError("encode_batch got no texts")
        rows = [(self.encode(t) or [UNK_ID])[:max_len] for t in texts]
        longest = max(map(len, rows))
        if pad_to is not None and pad_to < longest:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest row ({longest} ids); pass max_len={pad_to} "
                             "as well to truncate the rows to it")
        out = torch.full((len(rows), pad_to or longest), PAD_ID, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def unknown_rate(self, texts: Sequence[str]) -> float:
        """Fraction of tokens in ``texts`` that are not in the vocabulary (out-of-vocabulary rate)."""
        ids = [i for t in texts for i in self.encode(t)]
        if not ids:
            raise ValueError("no tokens in these texts")
        return sum(i == UNK_ID for i in ids) / len(ids)


# --- the classifier -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LSTMConfig:
    embed_dim: int = 64
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.3
    min_freq: int = 2
    max_len: int = 48
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_epochs: int = 20
    patience: int = 3  # stop after this many epochs without a better validation accuracy
    train_examples: int | None = None  # None: the whole train split
    threads: int | None = 1  # torch threads while training: a small LSTM gains little from more, and on a shared
    # machine idle-spinning worker threads cost more than they give. None: leave torch's setting alone.
    seed: int = 0


#: Smoke: a fixed, short run for CI. Full: trained longer, with early stopping on validation.
SMOKE = LSTMConfig(hidden=128, max_len=40, max_epochs=6, patience=2)
FULL = LSTMConfig(lr=1e-3, max_epochs=12)  # at lr 2e-3 the 256-unit LSTM stalled at chance level


def config_for(smoke: bool) -> LSTMConfig:
    return SMOKE if smoke else FULL


class LSTMClassifier(nn.Module):
    """Embedding -> LSTM (``layers`` deep) -> Linear on the last real time step of each row.

    Input: ``[batch, T]`` token ids, right-padded with 0. Output: ``[batch, num_classes]`` logits. Padding comes
    after the words, so the LSTM state at a row's last real token has never seen padding.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden: int = 256, layers: int = 2,
                 num_classes: int = 2, dropout: float = 0.0):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("embed_dim", embed_dim), ("hidden", hidden),
                            ("layers", layers)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(f"expected a [batch, T] long tensor of token ids, got {tuple(ids.shape)} {ids.dtype}; "
                             "use Vocab.encode_batch")
        if (ids >= self.embedding.num_embeddings).any() or (ids < 0).any():
            raise ValueError(f"token ids must be in [0, {self.embedding.num_embeddings}); was the model built for "
                             "this vocabulary?")
        lengths = (ids != PAD_ID).sum(dim=1).clamp(min=1)
        out, _ = self.lstm(self.embedding(ids))
        last = out[torch.arange(ids.size(0)), lengths - 1]
        return self.fc(self.dropout(last))


def build_classifier(vocab: Vocab, config: LSTMConfig = FULL, num_classes: int = 2) -> LSTMClassifier:
    """A fresh classifier sized for ``vocab``, seeded with ``config.seed``."""
    torch.manual_seed(config.seed)
    return LSTMClassifier(len(vocab), config.embed_dim, config.hidden, config.layers, num_classes, config.dropout)


@torch.inference_mode()
def predict(model: nn.Module, ids: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Logits for encoded rows, in order, ``batch_size`` rows at a time (default: the evaluation protocol's
    ``helpers.evaluation.EVAL_BATCH_SIZE``), model in eval mode. Works for fp32 and quantized models. Dynamic int8
    picks its activation scales per batch, so score every model with the same batch size and padding."""
    from .evaluation import EVAL_BATCH_SIZE

    batch_size = EVAL_BATCH_SIZE if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    return torch.cat([model(ids[i:i + batch_size]).float() for i in range(0, len(ids), batch_size)])


def _accuracy(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> float:
    return (predict(model, ids).argmax(dim=1) == labels).float().mean().item()


def train(model: nn.Module, train_ids: torch.Tensor, train_labels, val_ids: torch.Tensor, val_labels,
          config: LSTMConfig = FULL, progress: bool = True) -> list[dict]:
    """Train ``model`` in place; keep the weights of the epoch with the best validation accuracy.

    Stops after ``config.max_epochs`` or after ``config.patience`` epochs without improvement; both count epochs,
    never seconds, so the result does not depend on how busy the machine is. Returns the history: one dict per
    epoch (loss, validation accuracy, seconds since the start).
    """
    from tqdm.auto import tqdm

    from .measure import num_threads

    train_labels, val_labels = torch.as_tensor(train_labels), torch.as_tensor(val_labels)
    if len(train_ids) != len(train_labels) or len(val_ids) != len(val_labels):
        raise ValueError(f"ids and labels differ in length: train {len(train_ids)} vs {len(train_labels)}, "
                         f"validation {len(val_ids)} vs {len(val_labels)}")
    if len(train_ids) == 0 or len(val_ids) == 0:
        raise ValueError("need at least one training and one validation example")
    if config.train_examples is not None:
        train_ids, train_labels = train_ids[:config.train_examples], train_labels[:config.train_examples]
    with num_threads(config.threads):
        return _train(model, train_ids, train_labels, val_ids, val_labels, config, progress, tqdm)


def _train(model, train_ids, train_labels, val_ids, val_labels, config, progress, tqdm) -> list[dict]:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    n = len(train_ids)
    steps = (n + config.batch_size - 1) // config.batch_size
    history: list[dict] = []
    best_acc, best_state, since_best = -1.0, None, 0
    start = time.perf_counter()
    bar = tqdm(total=steps * config.max_epochs, desc="train LSTM", disable=not progress)
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        running = 0.0
        for step in range(steps):
            idx = order[step * config.batch_size:(step + 1) * config.batch_size]
            batch = train_ids[idx]
            batch = batch[:, :int((batch != PAD_ID).sum(dim=1).max().clamp(min=1))]  # drop all-padding columns
            loss = loss_fn(model(batch), train_labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            running += loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{running / (step + 1):.3f}")
        val_acc = _accuracy(model, val_ids, val_labels)
        elapsed = time.perf_counter() - start
        history.append({"epoch": epoch, "train_loss": running / steps, "val_accuracy": val_acc,
                        "seconds": round(elapsed, 1)})
        bar.set_postfix(epoch=epoch, loss=f"{running / steps:.3f}", val_acc=f"{val_acc:.3f}")
        if val_acc > best_acc:
            best_acc, best_state, since_best = val_acc, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
        if since_best >= config.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    return history
