"""The whole ONNX route in one call, and the int8 recipes ``make bench`` and notebook 06 use.

``prepare`` exports, optimizes and pre-processes a classifier into its ``artifact_dir`` (reusing what is there);
``build_recipe`` quantizes the pre-processed graph the way a recipe describes. The recommended int8 recipe
(``BEST_INT8_RECIPE``, built by ``build_recipe``) quantizes the fused, pre-processed graph with ``quantize_dynamic``
except for the feed-forward MatMuls, which get 8-bit block-wise scales (``quantize_blockwise_variant``); notebook 04
measures it against every other variant.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ._cache import OnnxRouteError
from .export import artifact_dir, export_classifier
from .optimize import optimize_bert
from .quantize import preprocess, quantize_blockwise_variant, quantize_dynamic_variant

#: File names inside ``artifact_dir``: the fp32 export, its transformer-optimized twin, and that one pre-processed.
FP32_FILE, OPTIMIZED_FILE, PREPROCESSED_FILE = "model.onnx", "model.opt.onnx", "model.opt.pre.onnx"

#: The ORT int8 recipe notebook 04 recommends: of the variants that stay at most 0.30x fp32 and no slower than ORT
#: fp32 at batch 32, the one that agrees best with fp32 on the validation split in a full-mode run (the notebook
#: re-checks this every run). Export (TorchScript, eager attention) -> transformer optimizer (fused Attention) ->
#: quant_pre_process -> ``quantize_blockwise_variant(layers="ffn")``: the feed-forward MatMuls get 8-bit
#: block-wise scales (64 input features per block) with int8 compute, everything else ``quantize_dynamic``.
BEST_INT8_RECIPE = {"kind": "blockwise", "layers": "ffn", "block_size": 64}
#: The plain ``quantize_dynamic`` recipe (signed int8 weights, one scale per output channel, one activation scale
#: per batch): the fastest ORT int8 model, and a less faithful one (notebook 04 measures both).
DYNAMIC_INT8_RECIPE = {"kind": "dynamic", "weight_type": "QInt8", "per_channel": True, "reduce_range": False}


def prepare(model: torch.nn.Module, tokenizer, max_len: int, root: Path | None = None) -> dict[str, Path]:
    """Export, optimize and pre-process ``model`` into ``artifact_dir(model, max_len)`` (reusing what is there).
    Returns the paths ``{"fp32", "optimized", "preprocessed"}``."""
    folder = artifact_dir(model, max_len, root=root)
    fp32 = export_classifier(model, tokenizer, folder / FP32_FILE, max_len)
    cfg = model.config
    optimized, _ = optimize_bert(fp32, folder / OPTIMIZED_FILE, cfg.num_attention_heads, cfg.hidden_size)
    return {"fp32": fp32, "optimized": optimized, "preprocessed": preprocess(optimized, folder / PREPROCESSED_FILE)}


def variant_name(weight_type: str = "QInt8", per_channel: bool = False, reduce_range: bool = False) -> str:
    """The file name of a dynamic int8 variant, e.g. ``int8-dyn-QInt8-pc-rr.onnx``."""
    return f"int8-dyn-{weight_type}{'-pc' if per_channel else ''}{'-rr' if reduce_range else ''}.onnx"


def blockwise_variant_name(layers: str = "all", block_size: int = 64) -> str:
    """The file name of a block-wise int8 variant, e.g. ``int8-bw-ffn-64.onnx``."""
    return f"int8-bw-{layers}-{block_size}.onnx"


def build_recipe(recipe: dict, model: torch.nn.Module, tokenizer, max_len: int, root: Path | None = None) -> Path:
    """The ORT int8 model a recipe (``BEST_INT8_RECIPE``, ``DYNAMIC_INT8_RECIPE`` or the like) describes, built
    from ``model`` on first use and then reused. Returns the ``.onnx`` path; open it with ``make_session``."""
    knobs = {k: v for k, v in recipe.items() if k != "kind"}
    kinds = {"dynamic": (quantize_dynamic_variant, variant_name),
             "blockwise": (quantize_blockwise_variant, blockwise_variant_name)}
    if recipe.get("kind") not in kinds:
        raise OnnxRouteError(f"recipe kind must be one of {list(kinds)}, got {recipe.get('kind')!r}")
    quantize, name = kinds[recipe["kind"]]
    pre = prepare(model, tokenizer, max_len, root)["preprocessed"]
    return quantize(pre, pre.parent / name(**knobs), **knobs)
