"""Dynamic int8 recipes for a BERT classifier (notebook 03), and the measurements that go with them.

- ``linear_groups``      the named groups of ``nn.Linear`` layers: ``head``, ``classifier``, ``block0``..``blockN``,
                          ``first_block``, ``last_block``, ``attention``, ``ffn``, ``all``
- ``quantize_model``     a quantized *copy*: every Linear dynamically int8 except the groups kept in fp32, and
                          optionally the ``nn.Embedding`` tables weight-only int8 (``float_qparams_weight_only_qconfig``)
                          and per-channel weight scales
- ``module_census``      how many modules of each type a model holds (what ``quantize_dynamic`` swapped)
- ``size_breakdown``     bytes of the saved state_dict per part: embeddings / encoder / head
- ``timed_evaluate``     accuracy and per-batch latency from one pass over a split, at a fixed thread count
- ``activation_peaks``   how far each Linear layer's input peaks above its typical value (what one int8 scale
                          per tensor has to cover)

Dynamic quantization stores int8 weights and quantizes activations on the fly, batch by batch; it touches only the
module types it is asked to. Its default set, ``{nn.Linear}``, leaves the embedding tables in fp32: on a small BERT
they are about half of the file.
"""

from __future__ import annotations

import copy
import io
import re
import time
from collections import Counter
from typing import Iterable, Sequence

import torch
from torch import nn

from . import engine as engine_mod
from . import measure

#: Parts of a ``BertForSequenceClassification`` state_dict, by key prefix.
BERT_PARTS: dict[str, tuple[str, ...]] = {
    "embeddings": ("bert.embeddings.",),
    "encoder": ("bert.encoder.",),
    "head": ("bert.pooler.", "classifier."),
}

_BLOCK = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")
_ATTENTION = re.compile(r"\.attention\.")
_FFN = re.compile(r"\.(?:intermediate|output)\.dense$")


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def linear_groups(model: nn.Module) -> dict[str, list[str]]:
    """Qualified names of the model's ``nn.Linear`` layers, grouped.

    ``attention`` holds query/key/value and the attention output projection of every block; ``ffn`` the two
    feed-forward projections (``intermediate.dense`` and ``output.dense``, not ``attention.output.dense``); ``head``
    the pooler and the classifier. ``blockK`` is every Linear of encoder layer K.
    """
    names = _linear_names(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layers: nothing to group or quantize")
    groups: dict[str, list[str]] = {"all": names}
    blocks: dict[int, list[str]] = {}
    for name in names:
        match = _BLOCK.search(name + ".")
        if match:
            blocks.setdefault(int(match.group(1)), []).append(name)
    for k in sorted(blocks):
        groups[f"block{k}"] = blocks[k]
    if blocks:
        groups["first_block"] = blocks[min(blocks)]
        groups["last_block"] = blocks[max(blocks)]
    groups["attention"] = [n for n in names if _BLOCK.search(n + ".") and _ATTENTION.search(n)]
    groups["ffn"] = [n for n in names if _BLOCK.search(n + ".") and not _ATTENTION.search(n) and _FFN.search(n)]
    groups["head"] = [n for n in names if not _BLOCK.search(n + ".")]
    groups["classifier"] = [n for n in names if n.split(".")[-1] == "classifier"]
    return {k: v for k, v in groups.items() if v}


def activation_peaks(model: nn.Module, batch: dict[str, torch.Tensor]) -> list[dict]:
    """For every ``nn.Linear``, on one forward pass of ``batch``: the peak of its input (``max |x|``) in units of
    the input's standard deviation, and how many of the 127 positive int8 levels a one-standard-deviation value
    gets when one scale covers the whole tensor (``127 / peak``), as per-tensor dynamic quantization does. Rows in
    module order, each with the layer's group (``attention``, ``ffn``, ``head``, or ``other``)."""
    groups = linear_groups(model)
    group_of = {n: g for g in ("attention", "ffn", "head") for n in groups.get(g, [])}
    peaks: dict[str, float] = {}

    def hook(name):
        def record(module, args, output):
            x = args[0].detach().float()
            peaks[name] = (x.abs().max() / x.std()).item()
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    try:
        with torch.inference_mode():
            model(**batch) if isinstance(batch, dict) else model(batch)
    finally:
        for h in handles:
            h.remove()
    return [{"layer": n, "group": group_of.get(n, "other"), "peak / std": peaks[n],
             "int8 levels per std": 127 / peaks[n]} for n in _linear_names(model) if n in peaks]


def _resolve(model: nn.Module, keep_fp32: str | Iterable[str] | None) -> set[str]:
    if keep_fp32 is None:
        return set()
    wanted = [keep_fp32] if isinstance(keep_fp32, str) else list(keep_fp32)
    groups = linear_groups(model)
    kept: set[str] = set()
    for group in wanted:
        if group not in groups:
            raise ValueError(f"unknown layer group {group!r}; choose from {sorted(groups)} "
                             "(see helpers.bert_quant.linear_groups)")
        kept.update(groups[group])
    return kept


def quantize_model(model: nn.Module, keep_fp32: str | Iterable[str] | None = None, embeddings: bool = False,
             engine: str | None = None, per_channel: bool = False) -> nn.Module:
    """A dynamically quantized copy of ``model`` (the original is left untouched): ``torch.ao.quantization.
    quantize_dynamic`` with a qconfig per layer name, so that groups of layers can stay fp32.

    Every ``nn.Linear`` becomes a dynamic int8 Linear (int8 weights, activations quantized per batch), except the
    layers of the groups in ``keep_fp32`` (names from ``linear_groups``). With ``embeddings=True`` every
    ``nn.Embedding`` is also stored as int8 rows with a float scale and offset per row (weight-only; the lookup
    returns fp32). With ``per_channel=True`` each output channel of a Linear weight gets its own scale
    (``per_channel_dynamic_qconfig``) instead of one scale per tensor. The weights are packed for ``engine``
    (default: the active quantized engine); run the copy under the same engine.
    """
    from torch.ao.quantization import (default_dynamic_qconfig, float_qparams_weight_only_qconfig,
                                       per_channel_dynamic_qconfig, quantize_dynamic)

    kept = _resolve(model, keep_fp32)
    linear_qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    spec = {name: linear_qconfig for name in _linear_names(model) if name not in kept}
    if embeddings:
        spec.update({name: float_qparams_weight_only_qconfig for name, m in model.named_modules()
                     if isinstance(m, nn.Embedding)})
    if not spec:
        raise ValueError("nothing left to quantize: every Linear layer is kept in fp32 and embeddings=False")
    with engine_mod.using(engine):
        quantized = quantize_dynamic(copy.deepcopy(model).eval(), spec, dtype=torch.qint8)
    for module in quantized.modules():
        if isinstance(module, torch.ao.nn.quantized.Embedding):
            module.register_forward_pre_hook(_contiguous_indices)
    return quantized


def _contiguous_indices(module, args):
    """The int8 lookup kernel rejects non-contiguous indices, and BERT passes an expanded (non-contiguous)
    ``token_type_ids`` buffer when the caller gives none: hand the kernel a contiguous copy."""
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


def module_census(model: nn.Module) -> Counter:
    """How many modules of each type ``model`` holds, keyed ``module.__class__.__module__ + name`` shortened."""
    counts: Counter = Counter()
    for module in model.modules():
        cls = type(module)
        prefix = "torch.ao.nn.quantized.dynamic." if cls.__module__.startswith("torch.ao.nn.quantized.dynamic") else (
            "torch.ao.nn.quantized." if cls.__module__.startswith("torch.ao.nn.quantized") else "")
        counts[prefix + cls.__name__] += 1
    return counts


def _saved_bytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def size_breakdown(model: nn.Module, parts: dict[str, Sequence[str]] | None = None) -> dict[str, int]:
    """Bytes on disk of ``torch.save(model.state_dict())``, in total and per part (by key prefix).

    Each part is the size of its own slice of the state_dict saved alone, so the parts add up to the total within
    the few kilobytes of file-format overhead. Keys that match no part go to ``other`` (left out when empty).
    """
    parts = BERT_PARTS if parts is None else parts
    state = model.state_dict()
    slices: dict[str, dict] = {name: {} for name in parts}
    other = {}
    for key, value in state.items():
        for name, prefixes in parts.items():
            if key.startswith(tuple(prefixes)):
                slices[name][key] = value
                break
        else:
            other[key] = value
    empty = [name for name, piece in slices.items() if not piece]
    if empty:
        raise ValueError(f"no state_dict keys start with the prefixes of {empty}; the model's keys begin "
                         f"{sorted({k.split('.')[0] for k in state})}. Pass parts= matching this model.")
    sizes = {name: _saved_bytes(piece) for name, piece in slices.items()}
    if other:
        sizes["other"] = _saved_bytes(other)
    sizes["total"] = measure.state_dict_bytes(model)
    return sizes


def timed_evaluate(model: nn.Module, tokenizer, split, max_len: int, batch_size: int = 32, threads: int | None = 1,
                   warmup_batches: int = 1, engine: str | None = None, progress: bool = False) -> dict:
    """One pass over ``split`` that yields both the accuracy and the latency per batch.

    Every batch is padded to ``max_len``, so every full batch costs the same work: the first ``warmup_batches``
    are not timed, the other full batches are (a last, shorter batch is scored but not timed). Returns
    ``accuracy``, ``predictions``, ``logits`` and ``latency`` (a ``measure.Latency`` over the timed batches).
    """
    from tqdm.auto import tqdm

    from .finetune import encode

    if len(split) < batch_size * (warmup_batches + 1):
        raise ValueError(f"{len(split)} examples give fewer than {warmup_batches + 1} full batches of {batch_size}; "
                         "use more examples or a smaller batch_size")
    model.eval()
    logits, times = [], []
    with engine_mod.using(engine), measure.num_threads(threads) as used, torch.inference_mode():
        starts = range(0, len(split), batch_size)
        for i, start in enumerate(tqdm(starts, desc="evaluate", disable=not progress, leave=False)):
            batch = encode(tokenizer, split.texts[start:start + batch_size], max_len)
            t0 = time.perf_counter()
            out = model(**batch).logits.float()
            elapsed = (time.perf_counter() - t0) * 1e3
            if i >= warmup_batches and len(out) == batch_size:
                times.append(elapsed)
            logits.append(out)
    logits = torch.cat(logits)
    predictions = logits.argmax(dim=1)
    return {"accuracy": measure.accuracy(predictions, split.labels), "predictions": predictions, "logits": logits,
            "latency": measure.summarize(times, used)}
