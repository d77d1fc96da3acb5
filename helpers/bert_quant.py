"""Dynamic int8 recipes for a BERT classifier (notebook 03), and the measurements that go with them.

- ``linear_groups``      the named groups of ``nn.Linear`` layers: ``head``, ``classifier``, ``block0``..``blockN``,
                          ``first_block``, ``last_block``, ``attention``, ``ffn``, ``all``
- ``qconfig_spec``       the ``qconfig_spec`` dict for ``torch.ao.quantization.quantize_dynamic``: a qconfig per
                          Linear name (groups kept fp32 are left out), optionally ``nn.Embedding`` weight-only int8
- ``quantize_model``     a quantized *copy*: ``quantize_dynamic(model, qconfig_spec(...))``, the sweep's one call
- ``float_linears``      the names of the layers that are still float ``nn.Linear`` (what a spec kept fp32)
- ``module_census``      how many modules of each type a model holds (what ``quantize_dynamic`` swapped)
- ``size_breakdown``     bytes of the saved state_dict per part: embeddings / encoder / head
- ``activation_peaks``   how far each Linear layer's input peaks above its typical value (what one int8 scale
                          per tensor has to cover)
- ``error_sources``      per Linear, the output error each ingredient of dynamic int8 causes on its own: weights
                          per tensor or per channel, activations with one 7- or 8-bit scale per batch or per token

Dynamic quantization stores int8 weights and quantizes activations on the fly, batch by batch; it touches only the
module types or names its ``qconfig_spec`` names. Its default set, ``{nn.Linear}``, leaves the embedding tables in
fp32: on a small BERT they are about half of the file.
"""

from __future__ import annotations

import copy
import io
import re
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


def _linear_inputs(model: nn.Module, batch) -> dict[str, torch.Tensor]:
    """The input of every ``nn.Linear`` on one forward pass of ``batch`` (a dict of tensors or one tensor), by
    layer name, captured with forward hooks that are removed again."""
    inputs: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(module, args, output):
            inputs[name] = args[0].detach().float()
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    try:
        with torch.inference_mode():
            model(**batch) if isinstance(batch, dict) else model(batch)
    finally:
        for h in handles:
            h.remove()
    return inputs


def _group_of(model: nn.Module) -> dict[str, str]:
    groups = linear_groups(model)
    return {n: g for g in ("attention", "ffn", "head") for n in groups.get(g, [])}


def activation_peaks(model: nn.Module, batch: dict[str, torch.Tensor]) -> list[dict]:
    """For every ``nn.Linear``, on one forward pass of ``batch``: the peak of its input (``max |x|``) in units of
    the input's standard deviation, and how many of the 127 positive int8 levels a one-standard-deviation value
    gets when one scale covers the whole tensor (``127 / peak``), as per-tensor dynamic quantization does. Rows in
    module order, each with the layer's group (``attention``, ``ffn``, ``head``, or ``other``)."""
    group_of = _group_of(model)
    inputs = _linear_inputs(model, batch)
    peaks = {n: (x.abs().max() / x.std()).item() for n, x in inputs.items()}
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


def qconfig_spec(model: nn.Module, keep_fp32: str | Iterable[str] | None = None, embeddings: bool = False,
                 per_channel: bool = False) -> dict:
    """The ``qconfig_spec`` of ``torch.ao.quantization.quantize_dynamic`` for this model, keyed by module name.

    Every ``nn.Linear`` gets ``default_dynamic_qconfig`` (one weight scale per tensor) or, with ``per_channel``,
    ``per_channel_dynamic_qconfig`` (one per output channel), except the layers of the groups in ``keep_fp32``
    (names from ``linear_groups``): they are left out of the spec, so they stay float. With ``embeddings=True``
    every ``nn.Embedding`` gets ``float_qparams_weight_only_qconfig`` (int8 rows, a float scale and offset per row).
    """
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        float_qparams_weight_only_qconfig,
        per_channel_dynamic_qconfig,
    )

    kept = _resolve(model, keep_fp32)
    linear_qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    spec = {name: linear_qconfig for name in _linear_names(model) if name not in kept}
    if embeddings:
        spec.update({name: float_qparams_weight_only_qconfig for name, m in model.named_modules()
                     if isinstance(m, nn.Embedding)})
    if not spec:
        raise ValueError("nothing left to quantize: every Linear layer is kept in fp32 and embeddings=False")
    return spec


def quantize_model(model: nn.Module, keep_fp32: str | Iterable[str] | None = None, embeddings: bool = False,
                   engine: str | None = None, per_channel: bool = False) -> nn.Module:
    """A dynamically quantized copy of ``model`` (the original is left untouched). It wraps one call,
    ``torch.ao.quantization.quantize_dynamic(model, qconfig_spec(model, keep_fp32, embeddings, per_channel),
    dtype=torch.qint8)``, for sweeps over many variants.

    Every ``nn.Linear`` becomes a dynamic int8 Linear (int8 weights, activations quantized per batch), except the
    layers of the groups in ``keep_fp32`` (names from ``linear_groups``). With ``embeddings=True`` every
    ``nn.Embedding`` is also stored as int8 rows with a float scale and offset per row (weight-only; the lookup
    returns fp32). With ``per_channel=True`` each output channel of a Linear weight gets its own scale
    (``per_channel_dynamic_qconfig``) instead of one scale per tensor. The weights are packed for ``engine``
    (default: the active quantized engine); run the copy under the same engine.
    """
    from torch.ao.quantization import quantize_dynamic

    spec = qconfig_spec(model, keep_fp32, embeddings, per_channel)
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


def float_linears(model: nn.Module) -> list[str]:
    """Names of the layers that are still float ``nn.Linear`` (exactly that type), in module order: what a
    ``qconfig_spec`` kept fp32. Dynamic int8 Linears are a different class, so they are not listed."""
    return [name for name, m in model.named_modules() if type(m) is nn.Linear]


# --- where the error of dynamic int8 comes from ---------------------------------------------------------------

#: The columns of ``error_sources``: each ingredient of dynamic int8, applied alone.
ERROR_SOURCES = ("weights, per tensor", "weights, per channel", "activations, 7-bit per batch",
                 "activations, 8-bit per batch", "activations, 8-bit per token")


def _fake_quant_weight(weight: torch.Tensor, qconfig) -> torch.Tensor:
    """``weight`` quantized and dequantized with the qconfig's own weight observer (the scales quantize_dynamic
    computes)."""
    observer = qconfig.weight()
    observer(weight)
    scale, zero_point = observer.calculate_qparams()
    if observer.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine):
        return torch.fake_quantize_per_channel_affine(weight, scale.float(), zero_point.int(), observer.ch_axis,
                                                      observer.quant_min, observer.quant_max)
    return torch.fake_quantize_per_tensor_affine(weight, float(scale), int(zero_point), observer.quant_min,
                                                 observer.quant_max)


def fake_quant_activation_per_batch(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x`` through the activation quantization of a dynamic int8 Linear: one asymmetric scale for the whole
    tensor (every sentence and token of the batch), its range widened to include 0, ``bits`` bits (fbgemm and
    x86 use 7 because the module passes ``reduce_range=True``; qnnpack uses 8)."""
    qmax = 2 ** bits - 1
    low, high = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    scale = (high - low) / qmax or 1.0
    zero_point = int(min(qmax, max(0, round(-low / scale))))
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, qmax)


def _fake_quant_per_token(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Symmetric, one scale per token (row): the activation scheme of torchao's Int8DynamicActivationInt8Weight."""
    qmax = 2 ** (bits - 1) - 1
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / qmax
    return torch.clamp(torch.round(x / scale), -qmax - 1, qmax) * scale


def error_sources(model: nn.Module, batch) -> list[dict]:
    """Where the error of dynamic int8 comes from, per ``nn.Linear`` of a float ``model``, on one forward pass
    of ``batch`` (pad it as the evaluation does: padding tokens share the activation scale).

    For each layer the relative error ``|y' - y| / |y|`` (Frobenius norms) of its output when one ingredient is
    quantized and the rest stays fp32 (``ERROR_SOURCES``): the weights with ``default_dynamic_qconfig``'s observer
    (one scale per tensor) or ``per_channel_dynamic_qconfig``'s (one per output channel); the input with one scale
    per batch at 7 bits (x86/fbgemm) or 8 bits (qnnpack), or one scale per token at 8 bits (torchao's scheme).
    Rows in module order, with the layer's group."""
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    group_of = _group_of(model)
    inputs = _linear_inputs(model, batch)
    modules = dict(model.named_modules())
    rows = []
    with torch.inference_mode():
        for name in _linear_names(model):
            if name not in inputs:
                continue
            layer, x = modules[name], inputs[name]
            w, b = layer.weight.detach().float(), None if layer.bias is None else layer.bias.detach().float()
            y = nn.functional.linear(x, w, b)
            variants = {
                ERROR_SOURCES[0]: (x, _fake_quant_weight(w, default_dynamic_qconfig)),
                ERROR_SOURCES[1]: (x, _fake_quant_weight(w, per_channel_dynamic_qconfig)),
                ERROR_SOURCES[2]: (fake_quant_activation_per_batch(x, 7), w),
                ERROR_SOURCES[3]: (fake_quant_activation_per_batch(x, 8), w),
                ERROR_SOURCES[4]: (_fake_quant_per_token(x, 8), w),
            }
            norm = y.norm().item() or 1.0
            row = {"layer": name, "group": group_of.get(name, "other")}
            row.update({source: (nn.functional.linear(xq, wq, b) - y).norm().item() / norm
                        for source, (xq, wq) in variants.items()})
            rows.append(row)
    return rows


def summarize_error_sources(rows: Sequence[dict]) -> list[dict]:
    """``error_sources`` rows averaged per group (``attention``, ``ffn``, ``head``, ...) and over all layers."""
    if not rows:
        raise ValueError("no rows to summarize: run error_sources on a model with nn.Linear layers first")
    by_group: dict[str, list[dict]] = {}
    for row in rows:
        by_group.setdefault(row["group"], []).append(row)
    by_group["all layers"] = list(rows)
    return [{"group": group, "layers": len(members),
             **{s: sum(r[s] for r in members) / len(members) for s in ERROR_SOURCES}}
            for group, members in by_group.items()]


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
