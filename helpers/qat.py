"""Quantization-aware training (notebook 07, part 2): fake quantization by hand, then torchao's QAT flow.

- ``fake_quantize_ste``: quantize-dequantize in the forward pass, the straight-through estimator (STE) in the
  backward pass, as a ``torch.autograd.Function``; it matches ``torch.fake_quantize_per_tensor_affine`` in both.
  ``gradient_check`` compares any such function with the STE rule and with torch's own gradient.
- ``QATSettings`` / ``base_config``: the scheme to train for, ``Int8DynamicActivationIntxWeightConfig`` (int8
  per-token dynamic activations, low-bit weights per group), the base config ``QATConfig`` accepts in torchao 0.18.
- ``train_qat``: fine-tune a model prepared with ``quantize_(model, QATConfig(base, step="prepare"))`` on the train
  split (seeded, tqdm), selecting the checkpoint on the validation split.
- ``get_qat_classifier``: the QAT-trained classifier, trained once and cached by ``helpers.cache``
  (atomic, file-locked, sha256-checked, loaded with ``weights_only=True``), returned *prepared* (fake-quantized):
  the caller converts it with ``quantize_(model, QATConfig(base, step="convert"))``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import cache, finetune, models
from . import data as data_mod

CACHE_FORMAT = 1


# --- fake quantization by hand ------------------------------------------------------------------------------------

class FakeQuantizeSTE(torch.autograd.Function):
    """Forward: ``(clamp(round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale``.

    Backward: the *clipped* straight-through estimator. Rounding has zero gradient almost everywhere, so the STE
    pretends it is the identity: the gradient passes unchanged where ``x`` lands inside the integer range, and is
    zero where the clamp saturates. Like torch's kernel, "inside" is decided on the *rounded* value
    (``qmin <= round(x / scale) + zero_point <= qmax``) and ``x / scale`` is computed as ``x * (1 / scale)`` in
    float32, so forward and backward match ``torch.fake_quantize_per_tensor_affine`` bit for bit."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):
        inv_scale = 1.0 / torch.as_tensor(scale, dtype=torch.float32)
        q = torch.round(x * inv_scale) + zero_point
        inside = (q >= qmin) & (q <= qmax)
        ctx.save_for_backward(inside)
        return (q.clamp(qmin, qmax) - zero_point) * torch.as_tensor(scale, dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad_output):
        (inside,) = ctx.saved_tensors
        return grad_output * inside, None, None, None, None


def fake_quantize_ste(x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> torch.Tensor:
    """Fake-quantize ``x`` per tensor (``FakeQuantizeSTE``): the value int8 would give, with a gradient."""
    if qmin >= qmax:
        raise ValueError(f"need qmin < qmax, got qmin={qmin}, qmax={qmax}")
    if float(scale) <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if not qmin <= zero_point <= qmax:
        raise ValueError(f"zero_point must lie in [qmin, qmax] = [{qmin}, {qmax}], got {zero_point}")
    return FakeQuantizeSTE.apply(x, scale, zero_point, qmin, qmax)


def ste_rule(x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> torch.Tensor:
    """Where the clipped STE lets the gradient through: 1.0 where ``round(x / scale) + zero_point`` is inside
    ``[qmin, qmax]``, else 0.0 (the expected gradient of ``fake_quantize(x).sum()``)."""
    q = torch.round(x.detach() * (1.0 / torch.as_tensor(scale, dtype=torch.float32))) + zero_point
    return ((q >= qmin) & (q <= qmax)).float()


def gradient_check(fn: Callable, x: torch.Tensor | None = None, scale: float = 0.1, zero_point: int = 0,
                   qmin: int = -128, qmax: int = 127, seed: int = 0) -> dict:
    """Check a fake-quant function ``fn(x, scale, zero_point, qmin, qmax)`` on a tiny tensor.

    The default ``x`` spans the clipping range and beyond (so both "inside" and "saturated" entries occur). The
    upstream gradient is random, so a function that returns the right values but the wrong gradient fails.
    Returns the forward error against ``torch.fake_quantize_per_tensor_affine``, the gradient error against the
    STE rule and against torch's own fake-quant gradient, and ``passed`` (all three exact to 1e-6)."""
    generator = torch.Generator().manual_seed(seed)
    if x is None:
        span = (qmax - qmin) * scale
        x = torch.linspace(-0.75 * span, 0.75 * span, 41) + 0.013 * scale
    upstream = torch.randn(x.shape, generator=generator)
    x_mine = x.detach().clone().float().requires_grad_(True)
    out = fn(x_mine, scale, zero_point, qmin, qmax)
    if not out.requires_grad:
        raise ValueError("the function's output has no gradient with respect to x: use a torch.autograd.Function "
                         "whose backward returns the straight-through gradient")
    (out * upstream).sum().backward()
    x_torch = x.detach().clone().float().requires_grad_(True)
    reference = torch.fake_quantize_per_tensor_affine(x_torch, scale, zero_point, qmin, qmax)
    (reference * upstream).sum().backward()
    rule = upstream * ste_rule(x, scale, zero_point, qmin, qmax)
    result = {"forward_max_diff": (out.detach() - reference.detach()).abs().max().item(),
              "grad_vs_rule_max_diff": (x_mine.grad - rule).abs().max().item(),
              "grad_vs_torch_max_diff": (x_mine.grad - x_torch.grad).abs().max().item(),
              "inside": int(ste_rule(x, scale, zero_point, qmin, qmax).sum()), "n": x.numel()}
    result["passed"] = max(result["forward_max_diff"], result["grad_vs_rule_max_diff"],
                           result["grad_vs_torch_max_diff"]) <= 1e-6
    return result


# --- the QAT scheme --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QATSettings:
    """What to train for and how long.

    ``weight_bits`` / ``group_size`` (``None``: one scale per output channel) pick the weight scheme of
    ``Int8DynamicActivationIntxWeightConfig``; activations are int8 per token, dynamic. Training: ``steps``
    optimizer steps of ``batch_size`` train sentences (cycling through ``train_examples`` of them, all when
    ``None``) at learning rate ``lr`` (warm-up, then linear decay), evaluating on validation every ``eval_every``
    steps and at the end. ``distill`` weights a KL term that pulls the fake-quantized model's outputs towards the
    fp32 model's (0: labels only). ``select_by`` is the validation figure that picks the checkpoint:
    ``"agreement"`` with fp32 or ``"accuracy"``."""
    weight_bits: int = 4
    group_size: int | None = 32
    steps: int = 60
    lr: float = 2e-5
    batch_size: int = 32
    train_examples: int | None = None
    eval_every: int = 20
    distill: float = 1.0
    select_by: str = "agreement"
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if not 2 <= self.weight_bits <= 8:
            raise ValueError(f"weight_bits must be 2..8 (QATConfig supports int2-int8 weights), got {self.weight_bits}")
        if self.select_by not in ("agreement", "accuracy"):
            raise ValueError(f"select_by is 'agreement' or 'accuracy', got {self.select_by!r}")
        if self.steps < 1 or self.eval_every < 1:
            raise ValueError(f"need steps >= 1 and eval_every >= 1, got {self.steps} and {self.eval_every}")

    def label(self) -> str:
        group = f"group {self.group_size}" if self.group_size else "per channel"
        return f"int8 dynamic activations, int{self.weight_bits} weights ({group})"

    def key(self, classifier: finetune.FinetuneConfig) -> str:
        """A short hash of these settings, the fp32 classifier they start from, and the cache format."""
        import torchao

        return cache.settings_key({"qat": dataclasses.asdict(self), "classifier": classifier.key(),
                                   "format": CACHE_FORMAT, "torchao": torchao.__version__.split("+")[0]})


#: Smoke: under a minute of training on 2 cores (a QAT step costs about 1.6 fine-tune steps: the fake quantizers and
#: the fp32 teacher's forward pass); validation is scored before and after. Full: long enough to show the recovery.
SMOKE = QATSettings(steps=20, eval_every=20, train_examples=640)
FULL = QATSettings(steps=600, eval_every=100)


def settings_for(smoke: bool) -> QATSettings:
    return SMOKE if smoke else FULL


def base_config(weight_bits: int = 4, group_size: int | None = 32):
    """``Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int<bits>, weight_granularity=PerGroup(g))``
    (``PerAxis(0)``, one scale per output channel, when ``group_size`` is None): the PTQ config, and the
    ``base_config`` of ``QATConfig`` in torchao 0.18."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, PerAxis, PerGroup

    granularity = PerGroup(group_size) if group_size else PerAxis(0)
    return Int8DynamicActivationIntxWeightConfig(weight_dtype=getattr(torch, f"int{weight_bits}"),
                                                 weight_granularity=granularity)


def prepare(model: torch.nn.Module, settings: QATSettings) -> torch.nn.Module:
    """``quantize_(model, QATConfig(base_config(...), step="prepare"))`` in place: every ``nn.Linear`` becomes a
    ``FakeQuantizedLinear`` (fake-quantized weights and activations in the forward pass, STE in the backward)."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    quantize_(model, QATConfig(base_config(settings.weight_bits, settings.group_size), step="prepare"))
    return model


# --- training ----------------------------------------------------------------------------------------------------

def _score(model, tokenizer, split, max_len: int, reference_logits: torch.Tensor) -> dict:
    from . import evaluation

    comparison = evaluation.compare(reference_logits, evaluation.predict_logits(model, tokenizer, split.texts, max_len),
                                    split.labels, split=split.name)
    return {"agreement": comparison.agreement, "accuracy": comparison.accuracy, "flips": comparison.flips}


def train_qat(prepared: torch.nn.Module, teacher: torch.nn.Module, tokenizer, settings: QATSettings, max_len: int,
              progress: bool = True, validation: data_mod.Split | None = None) -> tuple[torch.nn.Module, list[dict]]:
    """Fine-tune a QAT-prepared classifier on the train split; return ``(model, history)``.

    The loss is cross-entropy on the labels plus ``settings.distill`` times the KL divergence from the fp32
    ``teacher``'s softmax (so training also keeps the predictions fp32 made). Every ``eval_every`` steps, and at
    the end, the fake-quantized model is scored on the validation split (agreement with the teacher and accuracy)
    and the best checkpoint by ``settings.select_by`` is kept; step 0 (before training) is scored too, so QAT never
    returns something worse on validation than where it started. The test split is never read. ``validation``
    defaults to the whole validation split (a part of it keeps unit tests short)."""
    from tqdm.auto import tqdm

    from . import evaluation

    torch.manual_seed(settings.seed)
    splits = data_mod.load_rotten_tomatoes()
    train_split = splits["train"] if settings.train_examples is None else splits["train"].head(settings.train_examples)
    val_split = validation if validation is not None else splits["validation"]
    if val_split.name != "validation":
        raise ValueError(f"QAT selects its checkpoint on the validation split, got a split named {val_split.name!r}")
    teacher.eval()
    reference = evaluation.predict_logits(teacher, tokenizer, val_split.texts, max_len)
    enc = models.encode(tokenizer, train_split.texts, max_len)
    labels = torch.tensor(train_split.labels)
    optimizer = torch.optim.AdamW(prepared.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    warmup = max(1, int(settings.steps * settings.warmup_frac))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (settings.steps - s) / max(1, settings.steps - warmup))))
    generator = torch.Generator().manual_seed(settings.seed)

    def evaluate(step: int, train_loss: float | None) -> dict:
        row = {"step": step, "train_loss": train_loss, **_score(prepared, tokenizer, val_split, max_len, reference)}
        history.append(row)
        return row

    history: list[dict] = []
    best = evaluate(0, None)
    best_state = {k: v.detach().clone() for k, v in prepared.state_dict().items()}
    order, position, running = torch.randperm(len(labels), generator=generator), 0, []
    bar = tqdm(total=settings.steps, desc="QAT fine-tune", disable=not progress)
    for step in range(1, settings.steps + 1):
        if position + settings.batch_size > len(order):
            order, position = torch.randperm(len(labels), generator=generator), 0
        idx = order[position:position + settings.batch_size]
        position += settings.batch_size
        prepared.train()
        logits = prepared(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx]).logits
        loss = torch.nn.functional.cross_entropy(logits, labels[idx])
        if settings.distill:
            with torch.no_grad():
                target = teacher(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx]).logits
            loss = loss + settings.distill * torch.nn.functional.kl_div(
                logits.log_softmax(-1), target.log_softmax(-1), log_target=True, reduction="batchmean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prepared.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        running.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{sum(running[-20:]) / len(running[-20:]):.3f}")
        if step % settings.eval_every == 0 or step == settings.steps:
            row = evaluate(step, sum(running) / len(running))
            running = []
            if (row[settings.select_by], row["accuracy"]) > (best[settings.select_by], best["accuracy"]):
                best, best_state = row, {k: v.detach().clone() for k, v in prepared.state_dict().items()}
    bar.close()
    prepared.load_state_dict(best_state)
    for row in history:
        row["selected"] = row is best
    return prepared.eval(), history


# --- cache -------------------------------------------------------------------------------------------------------

def entry_name(settings: QATSettings, classifier: finetune.FinetuneConfig) -> str:
    """The QAT model's cache entry: ``qat-<key>``, the key hashing its settings and the classifier it starts from."""
    return f"qat-{settings.key(classifier)}"


def get_qat_classifier(settings: QATSettings | None = None, classifier: finetune.FinetuneConfig | None = None,
                       cache_dir: Path | None = None, progress: bool = True):
    """The QAT-trained classifier for ``settings``, starting from the fp32 classifier ``classifier`` (both default
    to the full settings): ``(prepared_model, tokenizer, info)``.

    The model is returned *prepared* (fake-quantized, eval mode), as training left it: convert it with
    ``quantize_(model, QATConfig(base, step="convert"))``. ``info`` holds
    ``from_cache``, the cache ``path`` (relative to the cache directory), the validation ``history`` (step,
    agreement, accuracy, which checkpoint was selected) and ``train_seconds``."""
    settings = settings or FULL
    classifier = classifier or finetune.FULL
    teacher, tokenizer, _ = finetune.get_classifier(classifier, cache_dir=cache_dir, progress=progress)

    def train_model():
        student = prepare(copy.deepcopy(teacher), settings)
        model, history = train_qat(student, teacher, tokenizer, settings, classifier.max_len, progress=progress)
        return model, {"settings": dataclasses.asdict(settings), "history": history, "torch": torch.__version__}

    model, entry, meta, from_cache = finetune.cached_weights(entry_name(settings, classifier), train_model,
                                                             cache_dir, progress)
    if from_cache:  # the cache holds plain weights (a prepared model's state_dict has the same keys)
        model = prepare(model, settings).eval()
    info = {"from_cache": from_cache, "path": entry.name, "history": meta["history"],
            "train_seconds": meta["build_seconds"], "settings": dataclasses.asdict(settings)}
    return model, tokenizer, info
