"""The ONNX route's quantization: pre-process for quantization, then quantize with ONNX Runtime.

- ``preprocess``: ``quant_pre_process`` (shape inference and graph clean-up before quantization);
- ``quantize_dynamic_variant``: ``quantize_dynamic``, one activation scale per batch, computed at run time;
- ``quantize_blockwise_variant``: ``quantize_dynamic`` plus ``MatMulNBitsQuantizer`` (8-bit, one scale per block of
  input features) on the chosen ``MatMul`` nodes;
- ``quantize_static_variant``: ``quantize_static``, activation ranges from calibration data (a
  ``CalibrationDataReader`` the caller writes, as notebook 04 does);
- ``matmul_nodes`` and ``matmul_node_name``: the ``MatMul`` node names to include or exclude.

Each writes its file atomically with a settings sidecar, and reuses a file written with the same settings.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from ._cache import (
    OnnxRouteError,
    artifact_meta,
    private_input,
    require_onnx,
    reusable,
    source_meta,
    staged,
    write_meta,
)


@contextlib.contextmanager
def _quiet_quantizer():
    """The quantizer logs a pre-processing reminder and per-node notes at WARNING/INFO through the root logger;
    keep them out of notebook output (the route pre-processes first, with ``preprocess``)."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(before)


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    try:
        return {"QInt8": QuantType.QInt8, "QUInt8": QuantType.QUInt8}[name]
    except KeyError:
        raise OnnxRouteError(f"weight/activation type must be 'QInt8' or 'QUInt8', got {name!r}") from None


# --- 4. pre-process -------------------------------------------------------------------------------------------

def preprocess(path: str | os.PathLike, out_path: str | os.PathLike, skip_optimization: bool = False,
               skip_symbolic_shape: bool | None = None, reuse: bool = True) -> Path:
    """``onnxruntime.quantization.quant_pre_process``: symbolic shape inference, ORT's basic graph optimizations
    and ONNX shape inference, so the quantizer knows every tensor's type and shape (contrib operators such as the
    fused ``Attention`` included). Saved at ``out_path``.

    ``skip_symbolic_shape=None`` tries symbolic shape inference and, if it cannot finish (it gives up on some
    unfused TorchScript graphs), falls back to ONNX shape inference only. ``artifact_meta(out_path)["symbolic_shape"]``
    says which one ran."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path, out_path = require_onnx(path), Path(out_path)
    meta = {"kind": "preprocess", "source": source_meta(path), "skip_optimization": skip_optimization,
            "skip_symbolic_shape": skip_symbolic_shape}
    old = artifact_meta(out_path) or {}
    if reuse and reusable(out_path, {**meta, "symbolic_shape": old.get("symbolic_shape")}):
        return out_path
    attempts = [False, True] if skip_symbolic_shape is None else [skip_symbolic_shape]
    for skip in attempts:
        try:
            with staged(out_path) as tmp, _quiet_quantizer(), _scratch_cwd():
                quant_pre_process(str(path.resolve()), str(tmp.resolve()), skip_optimization=skip_optimization,
                                  skip_symbolic_shape=skip)
            break
        # SymbolicShapeInference raises a bare Exception("Incomplete symbolic shape inference")
        except Exception as exc:
            if skip or "symbolic shape" not in str(exc):
                raise
    write_meta(out_path, {**meta, "symbolic_shape": not skip})
    return out_path


@contextlib.contextmanager
def _scratch_cwd():
    """Run in a throwaway working directory: when symbolic shape inference gives up, onnxruntime dumps the model
    (``sym_shape_infer_temp.onnx`` plus an external-data file named by a uuid) into the current directory, which
    would litter the notebook's folder with ~90 MB files."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="onnx_route.") as scratch:
        os.chdir(scratch)
        try:
            yield Path(scratch)
        finally:
            os.chdir(before)


# --- 5. dynamic quantization, and block-wise scales -------------------------------------------------------------

def quantize_dynamic_variant(path: str | os.PathLike, out_path: str | os.PathLike, weight_type: str = "QInt8",
                             per_channel: bool = False, reduce_range: bool = False,
                             op_types: Sequence[str] | None = None, reuse: bool = True) -> Path:
    """``onnxruntime.quantization.quantize_dynamic`` with the knobs named: int8 weights stored once, activations
    quantized to uint8 at run time per batch. Always the QOperator format (``MatMulInteger``, ``QAttention``,
    ``DynamicQuantizeLinear``); dynamic quantization has no QDQ form in ORT. Saved at ``out_path``.

    - ``weight_type``: ``"QInt8"`` (signed weights) or ``"QUInt8"``.
    - ``per_channel``: one scale per output channel of each weight instead of one per tensor.
    - ``reduce_range``: 7-bit weights, which avoids overflow in the u8 x s8 multiply-add of CPUs without VNNI.
    - ``op_types``: operators to quantize (``None``: every supported one: MatMul, Attention, Gather, ...).
    """
    from onnxruntime.quantization import quantize_dynamic

    path, out_path = require_onnx(path), Path(out_path)
    wt = _quant_type(weight_type)
    meta = {"kind": "dynamic", "source": source_meta(path), "weight_type": weight_type,
            "per_channel": per_channel, "reduce_range": reduce_range, "op_types": list(op_types or [])}
    if reuse and reusable(out_path, meta):
        return out_path
    with staged(out_path) as tmp, private_input(path) as source, _quiet_quantizer():
        quantize_dynamic(str(source), str(tmp), op_types_to_quantize=list(op_types) if op_types else None,
                         per_channel=per_channel, reduce_range=reduce_range, weight_type=wt)
    write_meta(out_path, meta)
    return out_path


#: Block sizes ``MatMulNBits`` accepts (a power of two, at least 16).
BLOCK_SIZES = (16, 32, 64, 128, 256)

#: Which ``MatMul`` nodes ``quantize_blockwise_variant`` gives block-wise scales: every one, or only the
#: feed-forward pair of each layer (``intermediate.dense`` and ``output.dense``, two thirds of the linear FLOPs).
BLOCKWISE_LAYERS = ("all", "ffn")


def _matmul_nbits_quantizer():
    """``MatMulNBitsQuantizer``, imported without its side effect: the module calls ``logging.basicConfig(level=
    INFO)`` at import, which would send every library's INFO messages to stderr for the rest of the session."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return MatMulNBitsQuantizer


def is_ffn_matmul(node_name: str) -> bool:
    """True for the feed-forward ``MatMul`` nodes of a BERT export (``.../layer.N/intermediate/dense/MatMul`` and
    ``.../layer.N/output/dense/MatMul``), false for the attention output projection and everything else."""
    return "/intermediate/dense/" in node_name or is_ffn_output_matmul(node_name)


def is_ffn_output_matmul(node_name: str) -> bool:
    """True for the second feed-forward ``MatMul`` of a layer (``.../layer.N/output/dense/MatMul``), the one that
    reads the GELU output, whose inputs have the widest range in BERT models."""
    return "/output/dense/" in node_name and "/attention/" not in node_name


def matmul_node_name(module_name: str, wrapper: str = "model") -> str:
    """The ONNX node name the TorchScript exporter gives the ``MatMul`` of a PyTorch ``nn.Linear``, e.g.
    ``bert.encoder.layer.0.output.dense`` -> ``/model/bert/encoder/layer.0/output/dense/MatMul`` (``wrapper``: the
    attribute holding the classifier in the exported module). Numbered children keep their dot (``layer.0``)."""
    if not module_name or module_name.startswith(".") or module_name.endswith("."):
        raise OnnxRouteError(f"expected a dotted module name such as 'bert.encoder.layer.0.output.dense', got "
                             f"{module_name!r}")
    return f"/{wrapper}/" + re.sub(r"\.(?!\d+(?:\.|$))", "/", module_name) + "/MatMul"


def matmul_nodes(path: str | os.PathLike, select: Callable[[str], bool] | None = None) -> list[str]:
    """The names of the ``MatMul`` nodes of an ONNX file whose name passes ``select`` (all of them if None), in
    graph order: what ``nodes_to_exclude`` and ``nodes_to_include`` take."""
    import onnx

    graph = onnx.load(str(require_onnx(path)), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and (select is None or select(n.name))]


def quantize_blockwise_variant(path: str | os.PathLike, out_path: str | os.PathLike, layers: str = "all",
                               block_size: int = 64, reuse: bool = True) -> Path:
    """Int8 with *fine-grained* scales where they matter, in two passes over the pre-processed fused graph, saved
    at ``out_path``:

    1. ``quantize_dynamic`` (per-channel QInt8) on everything except the ``MatMul`` nodes chosen by ``layers``
       (``"all"``: every ``MatMul``, so pass 1 only turns ``Attention`` and ``EmbedLayerNormalization`` into
       ``QAttention`` and ``QEmbedLayerNormalization``; ``"ffn"``: the feed-forward ``MatMul`` nodes);
    2. ``MatMulNBitsQuantizer(bits=8, accuracy_level=4)`` on the chosen ``MatMul`` nodes: int8 weights with one
       symmetric scale per block of ``block_size`` input features, and at run time the activations are quantized
       to int8 per row and per block (``accuracy_level=4`` selects the int8 kernel). One sentence's scales then
       do not depend on the other sentences in its batch, and an outlier feature only coarsens its own block,
       where ``quantize_dynamic`` uses one activation scale for the whole batch.
    """
    from onnxruntime.quantization import quantize_dynamic

    path, out_path = require_onnx(path), Path(out_path)
    if block_size not in BLOCK_SIZES:
        raise OnnxRouteError(f"block_size must be one of {BLOCK_SIZES}, got {block_size!r}")
    if layers not in BLOCKWISE_LAYERS:
        raise OnnxRouteError(f"layers must be one of {BLOCKWISE_LAYERS}, got {layers!r}")
    meta = {"kind": "blockwise", "source": source_meta(path), "layers": layers,
            "block_size": block_size, "bits": 8, "accuracy_level": 4}
    if reuse and reusable(out_path, meta):
        return out_path
    chosen = matmul_nodes(path, None if layers == "all" else is_ffn_matmul)
    if not chosen:
        raise OnnxRouteError(f"{path} has no {'MatMul' if layers == 'all' else 'feed-forward MatMul'} nodes to "
                             "quantize block-wise; pass the pre-processed optimized graph (onnx_route.prepare)")
    quantizer_cls = _matmul_nbits_quantizer()
    with staged(out_path) as tmp, private_input(path) as source, _quiet_quantizer():
        stage1 = tmp.with_name("stage1-" + tmp.name)
        quantize_dynamic(str(source), str(stage1), nodes_to_exclude=chosen, per_channel=True,
                         weight_type=_quant_type("QInt8"))
        quantizer = quantizer_cls(str(stage1), bits=8, block_size=block_size, is_symmetric=True, accuracy_level=4,
                                  op_types_to_quantize=("MatMul",))
        quantizer.process()
        stage1.unlink()
        quantizer.model.save_model_to_file(str(tmp), use_external_data_format=False)
    write_meta(out_path, meta)
    return out_path


# --- 6. static quantization -------------------------------------------------------------------------------------

CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile", "Distribution")


def quantize_static_variant(path: str | os.PathLike, out_path: str | os.PathLike, reader,
                            method: str = "MinMax", quant_format: str = "QDQ", per_channel: bool = True,
                            weight_type: str = "QInt8", activation_type: str = "QUInt8", reduce_range: bool = False,
                            op_types: Sequence[str] | None = ("MatMul",), nodes_to_exclude: Sequence[str] = (),
                            reuse_key: str | None = None, extra_options: dict | None = None) -> Path:
    """``onnxruntime.quantization.quantize_static``: activation ranges fixed ahead of time from ``reader``'s
    calibration batches, weights and activations both int8. Saved at ``out_path``.

    - ``reader``: an ``onnxruntime.quantization.CalibrationDataReader`` (notebook 04 writes one): ``get_next()``
      returns one feed dict per call and ``None`` at the end. If it has ``rewind()``, it is rewound first, so one
      reader serves several calls.

    - ``method``: how a range is read from the calibration activations, one of ``CALIBRATION_METHODS``
      (``MinMax``: the extremes; ``Entropy``: the range minimizing KL divergence; ``Percentile``: clip at the
      99.999th percentile by default).
    - ``quant_format``: ``"QDQ"`` (QuantizeLinear/DequantizeLinear pairs around float ops; ORT fuses them into
      int8 kernels) or ``"QOperator"`` (dedicated ``QLinearMatMul``-style operators).
    - ``op_types``: operators to quantize; ``("MatMul",)`` by default (the linear layers, where the weights are).
    - ``nodes_to_exclude``: node names left in float (``matmul_nodes`` lists them), e.g. the layers whose inputs
      have the widest range.
    - ``reuse_key``: if given (for example ``f"{method}-{n_sentences}"``), an existing ``out_path`` written with the
      same key and settings is reused instead of calibrating again.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    path, out_path = require_onnx(path), Path(out_path)
    if method not in CALIBRATION_METHODS:
        raise OnnxRouteError(f"method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if quant_format not in ("QDQ", "QOperator"):
        raise OnnxRouteError(f"quant_format must be 'QDQ' or 'QOperator', got {quant_format!r}")
    meta = {"kind": "static", "source": source_meta(path), "method": method,
            "format": quant_format, "per_channel": per_channel, "weight_type": weight_type,
            "activation_type": activation_type, "reduce_range": reduce_range, "op_types": list(op_types or []),
            "exclude": sorted(nodes_to_exclude), "extra": extra_options or {}, "key": reuse_key}
    if not callable(getattr(reader, "get_next", None)):
        raise OnnxRouteError(f"reader must be a CalibrationDataReader (an object with get_next()), got "
                             f"{type(reader).__name__}")
    if reuse_key is not None and reusable(out_path, meta):
        return out_path
    if callable(getattr(reader, "rewind", None)):
        reader.rewind()
    # the histogram calibrators print progress with print(); keep it out of notebook output
    with (staged(out_path) as tmp, private_input(path) as source, _quiet_quantizer(),
          contextlib.redirect_stdout(io.StringIO())):
        quantize_static(str(source), str(tmp), reader, quant_format=getattr(QuantFormat, quant_format),
                        op_types_to_quantize=list(op_types) if op_types else None, per_channel=per_channel,
                        nodes_to_exclude=list(nodes_to_exclude),
                        reduce_range=reduce_range, activation_type=_quant_type(activation_type),
                        weight_type=_quant_type(weight_type), calibrate_method=getattr(CalibrationMethod, method),
                        extra_options=extra_options)
    write_meta(out_path, meta)
    return out_path
