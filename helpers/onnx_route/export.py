"""The ONNX route's first step: export a transformers sequence classifier to ONNX, and look inside the file.

Why the TorchScript exporter by default: ONNX Runtime's transformer optimizer fuses BERT attention into its
``Attention`` operator (where ORT's CPU speed on BERT comes from) by matching the graph the TorchScript exporter
writes for transformers' *eager* attention. The dynamo exporter (torch 2.13's default) writes the attention mask
with ``GatherND`` instead of ``Flatten``/``Gather``; the optimizer's mask pattern does not match it and attention is
left unfused (``optimize.attention_fusion_misses`` shows the optimizer's reason). ``transformers``' default ``sdpa``
attention leaves it unfused under both exporters: its decomposition puts a NaN guard (``IsNaN``, ``Where``) between
the ``Softmax`` and the value ``MatMul`` (``consumers_of_first`` shows it).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch

from .. import cache, measure, models
from ..models import INPUT_NAMES, LogitsOnly
from ..paths import cache_dir
from ._cache import OnnxRouteError, require_onnx, reusable, staged, write_meta

OUTPUT_NAMES = ("logits",)
EXPORTERS = ("torchscript", "dynamo")
#: The opset for the TorchScript exporter (the dynamo exporter picks its own, 18 or newer).
TORCHSCRIPT_OPSET = 17

#: The torch warning the legacy exporter emits on every call; the notebook shows it once, then filters it by message.
LEGACY_EXPORTER_WARNING = r"You are using the legacy TorchScript-based ONNX export"


def _check_exporter(exporter: str) -> None:
    if exporter not in EXPORTERS:
        raise OnnxRouteError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")


def artifact_dir(model: torch.nn.Module, max_len: int, exporter: str = "torchscript", root: Path | None = None) -> Path:
    """``cache_dir()/onnx/<fingerprint>-L<max_len>-<exporter>/``: the folder for one classifier's ONNX files.

    The key hashes the classifier's weights and the export settings: a rerun with the same classifier reuses the
    files, a different classifier never overwrites them."""
    _check_exporter(exporter)
    return Path(root or cache_dir() / "onnx") / f"{cache.fingerprint(model)}-L{max_len}-{exporter}"


@contextlib.contextmanager
def _attention(model, implementation: str | None):
    """Temporarily switch a transformers model's attention implementation (``eager``, ``sdpa``)."""
    if implementation is None or not hasattr(model, "config"):
        yield
        return
    before = model.config._attn_implementation
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def model_input_names(tokenizer) -> tuple[str, ...]:
    """The inputs the exported graph takes: the tokenizer's outputs, in the order of ``INPUT_NAMES``."""
    names = tuple(n for n in INPUT_NAMES if n in tokenizer.model_input_names)
    if "input_ids" not in names:
        raise OnnxRouteError(f"tokenizer outputs {tokenizer.model_input_names}, expected input_ids among them")
    return names


def export_classifier(model: torch.nn.Module, tokenizer, path: str | os.PathLike, max_len: int, *,
                      exporter: str = "torchscript", opset: int | None = None,
                      attn_implementation: str | None = "eager", reuse: bool = True, sample_batch: int = 2) -> Path:
    """Export a transformers sequence classifier to ONNX at ``path`` with ``torch.onnx.export`` and return ``path``.

    - Inputs ``input_ids``, ``attention_mask`` (and ``token_type_ids`` if the tokenizer makes them), int64
      ``[batch, seq]``; output ``logits`` ``[batch, num_labels]``. Batch and sequence axes are dynamic.
    - ``exporter="torchscript"`` (default): the legacy exporter (``dynamo=False``, opset ``TORCHSCRIPT_OPSET``), one
      ``.onnx`` file. Its graph is the one ORT's transformer optimizer fuses (see the module docstring).
    - ``exporter="dynamo"``: torch 2.13's default exporter; it writes the weights to ``<path>.data`` beside the
      ``.onnx`` file (``helpers.measure.size_on_disk`` counts both).
    - ``attn_implementation``: transformers attention used while exporting (``"eager"`` by default, restored after);
      ``None`` keeps the model's own (``sdpa`` by default).
    - ``reuse``: if ``path`` already holds an export with the same weights and settings, return it as is.
      Otherwise the files are replaced atomically.
    """
    _check_exporter(exporter)
    if max_len < 2:
        raise OnnxRouteError(f"max_len must be at least 2, got {max_len}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise OnnxRouteError(f"the export path must end in .onnx, got {path}")
    names = model_input_names(tokenizer)
    opset = opset or (TORCHSCRIPT_OPSET if exporter == "torchscript" else None)
    meta = {"kind": "export", "weights": cache.fingerprint(model), "max_len": max_len, "exporter": exporter,
            "opset": opset, "attn_implementation": attn_implementation, "inputs": list(names),
            "torch": torch.__version__}
    if reuse and reusable(path, meta):
        return path

    model = model.eval()
    sample = models.encode(tokenizer, ["an example sentence"] * sample_batch, max_len)
    args = tuple(sample[n] for n in names)
    wrapped = LogitsOnly(model).eval()
    with _attention(model, attn_implementation), torch.no_grad(), staged(path) as tmp:
        if exporter == "torchscript":
            axes = {n: {0: "batch", 1: "seq"} for n in names}
            axes["logits"] = {0: "batch"}
            torch.onnx.export(wrapped, args, str(tmp), input_names=list(names), output_names=list(OUTPUT_NAMES),
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
        else:
            # torch logs one warning per torchvision operator it cannot register; torchvision is not needed here
            logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
            batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("seq", min=2, max=4096)
            shapes = {n: {0: batch, 1: seq} for n in names}
            kwargs = {"opset_version": opset} if opset else {}
            torch.onnx.export(wrapped, args, str(tmp), input_names=list(names), output_names=list(OUTPUT_NAMES),
                              dynamic_shapes=shapes, dynamo=True, external_data=True, verbose=False, **kwargs)
    write_meta(path, meta)
    return path


def graph_summary(path: str | os.PathLike) -> dict:
    """Opset, node count, most common operators, inputs with their (symbolic) shapes, files and size of an ONNX file."""
    import collections

    import onnx

    files = measure.onnx_files(path)
    model = onnx.load(str(path), load_external_data=False)
    ops = collections.Counter(n.op_type for n in model.graph.node)

    def shape(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return {"opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
            "nodes": len(model.graph.node), "ops": dict(ops.most_common()),
            "inputs": {i.name: shape(i) for i in model.graph.input},
            "outputs": {o.name: shape(o) for o in model.graph.output},
            "files": [f.name for f in files], "size_mb": measure.mb(measure.size_on_disk(path))}


def consumers_of_first(path: str | os.PathLike, op_type: str = "Softmax") -> list[str]:
    """Operator types that read the output of the first ``op_type`` node: a quick look at what an exporter put
    where ORT's attention pattern expects the value ``MatMul`` right after the ``Softmax``."""
    import onnx

    graph = onnx.load(str(require_onnx(path)), load_external_data=False).graph
    first = next((n for n in graph.node if n.op_type == op_type), None)
    if first is None:
        raise OnnxRouteError(f"{path} has no {op_type} node")
    return [n.op_type for n in graph.node if any(o in n.input for o in first.output)]


def initializers(path: str | os.PathLike) -> list[dict]:
    """Every weight (initializer) of an ONNX file, largest first: ``name``, ``used by`` (the operator that reads
    it; through a ``DequantizeLinear``, the operator after it, as ``"MatMul (via DequantizeLinear)"``), ``dtype``,
    ``shape`` and ``bytes``. Where a model's megabytes are: sum ``bytes`` by ``used by`` or ``dtype``."""
    import onnx
    from onnx import helper

    model = onnx.load(str(require_onnx(path)))
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def used_by(name: str) -> str:
        nodes = readers.get(name, [])
        if not nodes:
            return "(unused)"
        node = nodes[0]
        if node.op_type == "DequantizeLinear" and readers.get(node.output[0]):
            return f"{readers[node.output[0]][0].op_type} (via DequantizeLinear)"
        return node.op_type

    rows = []
    for init in model.graph.initializer:
        dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
        count = 1
        for d in init.dims:
            count *= d
        rows.append({"name": init.name, "used by": used_by(init.name), "dtype": dtype.name,
                     "shape": tuple(init.dims), "bytes": count * dtype.itemsize})
    return sorted(rows, key=lambda r: -r["bytes"])
