"""The ONNX route's graph optimization: ONNX Runtime's transformer optimizer, and what it fused (or why it did not)."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
from pathlib import Path

from ._cache import OnnxRouteError, artifact_meta, require_onnx, reusable, source_meta, staged, write_meta


def optimize_bert(path: str | os.PathLike, out_path: str | os.PathLike, num_heads: int, hidden_size: int,
                  reuse: bool = True) -> tuple[Path, dict[str, int]]:
    """Run ONNX Runtime's transformer optimizer (``onnxruntime.transformers.optimizer.optimize_model`` with
    ``model_type="bert"``, Python fusions only, ``opt_level=0``) and save the result at ``out_path``. Returns
    ``(out_path, fused-operator statistics)``: how many ``Attention``, ``EmbedLayerNormalization``,
    ``SkipLayerNormalization``, ``BiasGelu``... nodes the fusions made."""
    from onnxruntime.transformers.optimizer import optimize_model

    path, out_path = require_onnx(path), Path(out_path)
    meta = {"kind": "optimize", "source": source_meta(path), "num_heads": num_heads, "hidden_size": hidden_size}
    if reuse and reusable(out_path, meta):
        return out_path, artifact_meta(out_path)["stats"]
    if hidden_size % num_heads:
        raise OnnxRouteError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
    with _attention_debug() as misses:
        optimized = optimize_model(str(path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                   opt_level=0, use_gpu=False)
    stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items()}
    with staged(out_path) as tmp:
        optimized.save_model_to_file(str(tmp))
    write_meta(out_path, {**meta, "stats": stats, "attention_misses": dict(misses)})
    return out_path, stats


@contextlib.contextmanager
def _attention_debug():
    """Collect the attention fusion's debug messages (why a candidate was not fused), counted by message."""
    misses: collections.Counter = collections.Counter()

    class _Collect(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("fuse_attention:"):
                misses[msg.split(" %", 1)[0]] += 1

    handler = _Collect(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("fusion_attention", "onnxruntime.transformers.fusion_attention")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.propagate = False
        lg.addHandler(handler)
    try:
        yield misses
    finally:
        for lg, (level, propagate) in zip(loggers, saved):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def attention_fusion_misses(out_path: str | os.PathLike) -> dict[str, int]:
    """Why the optimizer that wrote ``out_path`` left attention unfused: its debug messages with counts
    (e.g. ``{"fuse_attention: failed to match mask path": 6}``); empty if every attention was fused."""
    return (artifact_meta(out_path) or {}).get("attention_misses", {})
