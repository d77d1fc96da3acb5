"""The ONNX Runtime route: export a classifier to ONNX, optimize, quantize, and run it with ONNX Runtime.

The steps, each one function (notebook 04 walks them; notebooks 05 and 06 reuse them):

1. ``export_classifier``: a Hugging Face sequence classifier to ONNX with dynamic batch and sequence axes.
2. ``check_equivalence``: ORT fp32 logits against PyTorch (max abs diff, agreement of predictions).
3. ``optimize_bert``: ONNX Runtime's transformer optimizer; returns the fused-operator statistics.
4. ``preprocess``: ``quant_pre_process`` (shape inference and graph clean-up before quantization).
5. ``quantize_dynamic_variant`` / ``quantize_static_variant`` (with ``CalibrationReader``).
6. ``make_session``, ``run_logits``, ``evaluate`` and ``benchmark``: ORT sessions with explicit ``SessionOptions``,
   and latency in ``helpers.measure.Latency`` form, accuracy and agreement with fp32.

Files live under ``cache_dir()/onnx/<key>/`` (``artifact_dir``), where the key hashes the classifier's weights and
the export settings: a rerun with the same classifier reuses the files, a different classifier never overwrites
them. Every file is written into a private temporary directory and moved into place, so two runs at once never
read a half-written model.

Why the TorchScript exporter by default: ONNX Runtime's transformer optimizer fuses BERT attention into its
``Attention`` operator (where ORT's CPU speed on BERT comes from) by matching the graph the TorchScript exporter
writes for transformers' *eager* attention. The dynamo exporter (torch 2.13's default) writes the attention mask
with ``GatherND`` instead of ``Flatten``/``Gather``; the optimizer's mask pattern does not match it and attention is
left unfused (``attention_fusion_misses`` shows the optimizer's reason). ``transformers``' default ``sdpa``
attention leaves it unfused under both exporters: its decomposition puts a NaN guard (``IsNaN``, ``Where``) between
the ``Softmax`` and the value ``MatMul`` (``consumers_of_first`` shows it).

The recommended int8 recipe (``BEST_INT8_RECIPE``, built by ``best_int8``) quantizes the fused, pre-processed graph
with ``quantize_dynamic`` except for the feed-forward MatMuls, which get 8-bit block-wise scales
(``quantize_blockwise_variant``); notebook 04 measures it against every other variant.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from . import finetune, measure
from .paths import atomic_write, cache_dir

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("logits",)
EXPORTERS = ("torchscript", "dynamo")
#: The opset for the TorchScript exporter (the dynamo exporter picks its own, 18 or newer).
TORCHSCRIPT_OPSET = 17
#: ``SessionOptions.graph_optimization_level`` by name.
OPT_LEVELS = ("disable", "basic", "extended", "all")

#: The torch warning the legacy exporter emits on every call; the notebook shows it once, then filters it by message.
LEGACY_EXPORTER_WARNING = r"You are using the legacy TorchScript-based ONNX export"


class OnnxRouteError(ValueError):
    """Bad input to an ONNX route helper (an unknown option, a model without the expected inputs, ...)."""


# --- where files go -------------------------------------------------------------------------------------------

def model_fingerprint(model: torch.nn.Module) -> str:
    """A short sha256 of a model's weights (names, shapes and values): the same weights give the same key."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def artifact_dir(model: torch.nn.Module, max_len: int, exporter: str = "torchscript", root: Path | None = None) -> Path:
    """``cache_dir()/onnx/<fingerprint>-L<max_len>-<exporter>/``: the folder for one classifier's ONNX files."""
    _check_exporter(exporter)
    return Path(root or cache_dir() / "onnx") / f"{model_fingerprint(model)}-L{max_len}-{exporter}"


@contextlib.contextmanager
def _staged(path: Path):
    """Yield a path with ``path``'s file name inside a private temporary folder beside it; on success move every
    file written there into ``path.parent`` (external data first, the ``.onnx`` last), then drop the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = path.parent / f".stage-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        yield stage / path.name
        files = sorted(stage.iterdir(), key=lambda p: p.name == path.name)
        if not any(p.name == path.name for p in files):
            raise OnnxRouteError(f"nothing was written to {path.name}")
        for p in files:
            os.replace(p, path.parent / p.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _meta_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".json")


def _read_meta(path: Path) -> dict | None:
    try:
        return json.loads(_meta_path(path).read_text())
    except (OSError, ValueError):
        return None


def _write_meta(path: Path, meta: dict) -> None:
    with atomic_write(_meta_path(path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))


def _reusable(path: Path, meta: dict) -> bool:
    """True if ``path`` exists, is readable ONNX, and was written with exactly these settings."""
    if not Path(path).is_file() or _read_meta(path) != meta:
        return False
    try:
        measure.onnx_files(path)
    except (FileNotFoundError, ValueError):
        return False
    return True


def _check_exporter(exporter: str) -> None:
    if exporter not in EXPORTERS:
        raise OnnxRouteError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")


# --- 1. export ------------------------------------------------------------------------------------------------

class _LogitsOnly(torch.nn.Module):
    """Positional inputs in, logits out: the form both exporters take (keyword inputs and a ModelOutput are not)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        kwargs = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, **{k: v for k, v in kwargs.items() if v is not None}).logits


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
                      exporter: str = "torchscript", opset: int | None = None, attn_implementation: str | None = "eager",
                      reuse: bool = True, sample_batch: int = 2) -> Path:
    """Export a transformers sequence classifier to ONNX at ``path`` and return ``path``.

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
    meta = {"kind": "export", "weights": model_fingerprint(model), "max_len": max_len, "exporter": exporter,
            "opset": opset, "attn_implementation": attn_implementation, "inputs": list(names),
            "torch": torch.__version__}
    if reuse and _reusable(path, meta):
        return path

    model = model.eval()
    sample = finetune.encode(tokenizer, ["an example sentence"] * sample_batch, max_len)
    args = tuple(sample[n] for n in names)
    wrapped = _LogitsOnly(model).eval()
    with _attention(model, attn_implementation), torch.no_grad(), _staged(path) as tmp:
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
    _write_meta(path, meta)
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

    measure.onnx_files(path)
    graph = onnx.load(str(path), load_external_data=False).graph
    first = next((n for n in graph.node if n.op_type == op_type), None)
    if first is None:
        raise OnnxRouteError(f"{path} has no {op_type} node")
    return [n.op_type for n in graph.node if any(o in n.input for o in first.output)]


# --- sessions and inference -----------------------------------------------------------------------------------

def make_session(path: str | os.PathLike, threads: int | None = None, opt_level: str = "all",
                 inter_op_threads: int = 1, optimized_model_path: str | os.PathLike | None = None):
    """An ``onnxruntime.InferenceSession`` on the CPU with explicit ``SessionOptions``.

    - ``threads``: ``intra_op_num_threads`` (the threads one operator uses); ``None`` means every CPU this
      process may use (``measure.available_threads()``), never ORT's implicit default.
    - ``opt_level``: ``graph_optimization_level``, one of ``OPT_LEVELS`` (``"all"`` adds layout and CPU-specific
      fusions on top of ``"extended"``).
    - ``inter_op_threads`` with sequential execution: operators run one after another.
    - ``optimized_model_path``: if given, ORT writes the graph it actually runs there (to inspect it).

    A missing file raises ``FileNotFoundError``; a file that is not ONNX raises ``ValueError``, both saying how to fix it.
    """
    import onnxruntime as ort

    measure.onnx_files(path)  # clear errors for a missing or unreadable file, before ORT's terse ones
    if opt_level not in OPT_LEVELS:
        raise OnnxRouteError(f"opt_level must be one of {OPT_LEVELS}, got {opt_level!r}")
    threads = measure.available_threads() if threads is None else threads
    if threads < 1:
        raise OnnxRouteError(f"threads must be >= 1 (or None for all {measure.available_threads()} CPUs), got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[opt_level]
    options.log_severity_level = 3  # errors only: the shape-merge notices of quantized graphs teach nothing here
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own pybind exception types (Fail, InvalidGraph, ...)
        raise OnnxRouteError(f"ONNX Runtime could not load {path}: {type(exc).__name__}: {exc}. "
                             "Re-export or re-quantize the model (delete the file to force it).") from exc


def session_threads(session) -> int:
    """The ``intra_op_num_threads`` a session was created with."""
    return session.get_session_options().intra_op_num_threads


def make_feeds(session, tokenizer, texts: Sequence[str], max_len: int) -> dict[str, np.ndarray]:
    """Tokenize ``texts`` (padded to ``max_len``) into the int64 arrays ``session`` takes, keyed by its input names."""
    wanted = [i.name for i in session.get_inputs()]
    enc = finetune.encode(tokenizer, texts, max_len, return_tensors="np")
    missing = [n for n in wanted if n not in enc]
    if missing:
        raise OnnxRouteError(f"the model wants inputs {missing} that the tokenizer does not make ({list(enc)})")
    return {n: np.asarray(enc[n], dtype=np.int64) for n in wanted}


def run_logits(session, tokenizer, texts: Sequence[str], max_len: int, batch_size: int = 64,
               progress: bool = False) -> torch.Tensor:
    """Logits of ``texts`` from an ORT session, batch by batch, as an ``[n, num_labels]`` float tensor
    (the ONNX twin of ``finetune.predict_logits``)."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise OnnxRouteError(f"batch_size must be >= 1, got {batch_size}")
    texts = list(texts)
    if not texts:
        raise OnnxRouteError("no texts to run")
    out = []
    for i in tqdm(range(0, len(texts), batch_size), desc="ORT predict", disable=not progress, leave=False):
        (logits,) = session.run(list(OUTPUT_NAMES), make_feeds(session, tokenizer, texts[i:i + batch_size], max_len))
        out.append(torch.from_numpy(np.asarray(logits, dtype=np.float32)))
    return torch.cat(out)


def evaluate(session, tokenizer, split, max_len: int, batch_size: int = 64, reference_predictions=None,
             progress: bool = False) -> dict:
    """Accuracy (and agreement with ``reference_predictions``, e.g. fp32's) of a session on a ``data.Split``."""
    logits = run_logits(session, tokenizer, split.texts, max_len, batch_size, progress)
    preds = logits.argmax(dim=1)
    out = {"accuracy": measure.accuracy(preds, split.labels), "predictions": preds, "logits": logits}
    if reference_predictions is not None:
        out["agreement"] = measure.agreement(preds, reference_predictions)
    return out


def check_equivalence(model: torch.nn.Module, session, tokenizer, texts: Sequence[str], max_len: int,
                      batch_size: int = 32) -> dict:
    """ORT logits against PyTorch logits on the same texts: max abs diff, agreement of argmax, and the count."""
    ref = finetune.predict_logits(model, tokenizer, list(texts), max_len, batch_size)
    got = run_logits(session, tokenizer, texts, max_len, batch_size)
    return {"n": len(ref), "max_abs_diff": measure.max_abs_diff(ref, got),
            "agreement": measure.agreement(ref.argmax(1), got.argmax(1))}


def session_latency(session, tokenizer, texts: Sequence[str], max_len: int, batch_size: int, runs: int = 10,
                    warmup: int = 2) -> measure.Latency:
    """Latency of one ``session.run`` on a batch of ``batch_size`` texts (tokenized once, outside the timing).

    Uses ``measure.latency``; its ``threads`` is set to the session's intra-op threads so the ``Latency`` reports
    them (torch's own thread count does not affect ORT)."""
    texts = list(texts)
    if not texts:
        raise OnnxRouteError("no texts to time")
    batch = (texts * (batch_size // len(texts) + 1))[:batch_size]
    feeds = make_feeds(session, tokenizer, batch, max_len)
    return measure.latency(lambda: session.run(list(OUTPUT_NAMES), feeds), runs=runs, warmup=warmup,
                           threads=session_threads(session))


def benchmark(session, tokenizer, split, max_len: int, batch_sizes: Iterable[int] = (1, 32), runs: int = 10,
              warmup: int = 2, reference_predictions=None, eval_batch_size: int = 64) -> dict:
    """The ORT benchmark runner: latency per batch size (``Latency``), accuracy on ``split``, agreement with
    ``reference_predictions``. Keys: ``latency`` ({batch: Latency}), ``threads``, ``accuracy``, ``agreement``,
    ``predictions``."""
    ev = evaluate(session, tokenizer, split, max_len, eval_batch_size, reference_predictions)
    lat = {b: session_latency(session, tokenizer, split.texts, max_len, b, runs, warmup) for b in batch_sizes}
    return {"latency": lat, "threads": session_threads(session), "accuracy": ev["accuracy"],
            "agreement": ev.get("agreement"), "predictions": ev["predictions"]}


# --- 3. optimize ----------------------------------------------------------------------------------------------

def optimize_bert(path: str | os.PathLike, out_path: str | os.PathLike, num_heads: int, hidden_size: int,
                  reuse: bool = True) -> tuple[Path, dict[str, int]]:
    """Run ONNX Runtime's transformer optimizer (``model_type="bert"``, Python fusions only, ``opt_level=0``) and
    save the result at ``out_path``. Returns ``(out_path, fused-operator statistics)``: how many ``Attention``,
    ``EmbedLayerNormalization``, ``SkipLayerNormalization``, ``BiasGelu``... nodes the fusions made."""
    from onnxruntime.transformers.optimizer import optimize_model

    measure.onnx_files(path)
    out_path = Path(out_path)
    meta = {"kind": "optimize", "source": _read_meta(Path(path)) or str(path), "num_heads": num_heads,
            "hidden_size": hidden_size}
    if reuse and _reusable(out_path, meta):
        return out_path, _read_meta(out_path)["stats"]
    if hidden_size % num_heads:
        raise OnnxRouteError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
    with _attention_debug() as misses:
        optimized = optimize_model(str(path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                   opt_level=0, use_gpu=False)
    stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items()}
    with _staged(out_path) as tmp:
        optimized.save_model_to_file(str(tmp))
    _write_meta(out_path, {**meta, "stats": stats, "attention_misses": dict(misses)})
    return out_path, stats


@contextlib.contextmanager
def _attention_debug():
    """Collect the attention fusion's debug messages (why a candidate was not fused), counted by message."""
    import collections
    import logging

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


def fusion_summary(stats: dict[str, int]) -> dict[str, int]:
    """Only the fusions that fired (non-zero counts)."""
    return {k: v for k, v in stats.items() if v}


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

    measure.onnx_files(path)
    out_path = Path(out_path)
    meta = {"kind": "preprocess", "source": _read_meta(Path(path)) or str(path), "skip_optimization": skip_optimization,
            "skip_symbolic_shape": skip_symbolic_shape}
    old = _read_meta(out_path) or {}
    if reuse and _reusable(out_path, {**meta, "symbolic_shape": old.get("symbolic_shape")}):
        return out_path
    attempts = [False, True] if skip_symbolic_shape is None else [skip_symbolic_shape]
    for skip in attempts:
        try:
            with _staged(out_path) as tmp, _quiet_quantizer(), _scratch_cwd():
                quant_pre_process(str(Path(path).resolve()), str(tmp.resolve()), skip_optimization=skip_optimization,
                                  skip_symbolic_shape=skip)
            break
        except Exception as exc:  # SymbolicShapeInference raises a bare Exception("Incomplete symbolic shape inference")
            if skip or "symbolic shape" not in str(exc):
                raise
    _write_meta(out_path, {**meta, "symbolic_shape": not skip})
    return out_path


@contextlib.contextmanager
def _scratch_cwd():
    """Run in a throwaway working directory: when symbolic shape inference gives up, onnxruntime dumps the model
    (``sym_shape_infer_temp.onnx`` plus an external-data file named by a uuid) into the current directory, which
    would litter the notebook's folder with ~90 MB files."""
    import tempfile

    before = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="onnx_route.") as scratch:
        os.chdir(scratch)
        try:
            yield Path(scratch)
        finally:
            os.chdir(before)


def artifact_meta(path: str | os.PathLike) -> dict | None:
    """The settings a helper wrote ``path`` with (the JSON sidecar ``<path>.json``), or None."""
    return _read_meta(Path(path))


# --- 5. quantize ----------------------------------------------------------------------------------------------

def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    try:
        return {"QInt8": QuantType.QInt8, "QUInt8": QuantType.QUInt8}[name]
    except KeyError:
        raise OnnxRouteError(f"weight/activation type must be 'QInt8' or 'QUInt8', got {name!r}") from None


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

    measure.onnx_files(path)
    out_path = Path(out_path)
    wt = _quant_type(weight_type)
    meta = {"kind": "dynamic", "source": _read_meta(Path(path)) or str(path), "weight_type": weight_type,
            "per_channel": per_channel, "reduce_range": reduce_range, "op_types": list(op_types or [])}
    if reuse and _reusable(out_path, meta):
        return out_path
    with _staged(out_path) as tmp, _quiet_quantizer():
        quantize_dynamic(str(path), str(tmp), op_types_to_quantize=list(op_types) if op_types else None,
                         per_channel=per_channel, reduce_range=reduce_range, weight_type=wt)
    _write_meta(out_path, meta)
    return out_path


#: Block sizes ``MatMulNBits`` accepts (a power of two, at least 16).
BLOCK_SIZES = (16, 32, 64, 128, 256)


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


#: Which ``MatMul`` nodes ``quantize_blockwise_variant`` gives block-wise scales: every one, or only the
#: feed-forward pair of each layer (``intermediate.dense`` and ``output.dense``, two thirds of the linear FLOPs).
BLOCKWISE_LAYERS = ("all", "ffn")


def is_ffn_matmul(node_name: str) -> bool:
    """True for the feed-forward ``MatMul`` nodes of a BERT export (``.../layer.N/intermediate/dense/MatMul`` and
    ``.../layer.N/output/dense/MatMul``), false for the attention output projection and everything else."""
    return "/intermediate/dense/" in node_name or ("/output/dense/" in node_name and "/attention/" not in node_name)


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
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    measure.onnx_files(path)
    if block_size not in BLOCK_SIZES:
        raise OnnxRouteError(f"block_size must be one of {BLOCK_SIZES}, got {block_size!r}")
    if layers not in BLOCKWISE_LAYERS:
        raise OnnxRouteError(f"layers must be one of {BLOCKWISE_LAYERS}, got {layers!r}")
    out_path = Path(out_path)
    meta = {"kind": "blockwise", "source": _read_meta(Path(path)) or str(path), "layers": layers,
            "block_size": block_size, "bits": 8, "accuracy_level": 4}
    if reuse and _reusable(out_path, meta):
        return out_path
    matmuls = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "MatMul"]
    chosen = matmuls if layers == "all" else [n for n in matmuls if is_ffn_matmul(n)]
    if not chosen:
        raise OnnxRouteError(f"{path} has no {'MatMul' if layers == 'all' else 'feed-forward MatMul'} nodes to "
                             "quantize block-wise; pass the pre-processed optimized graph (onnx_route.prepare)")
    quantizer_cls = _matmul_nbits_quantizer()
    with _staged(out_path) as tmp, _quiet_quantizer():
        stage1 = tmp.with_name("stage1-" + tmp.name)
        quantize_dynamic(str(path), str(stage1), nodes_to_exclude=chosen, per_channel=True,
                         weight_type=_quant_type("QInt8"))
        quantizer = quantizer_cls(str(stage1), bits=8, block_size=block_size, is_symmetric=True, accuracy_level=4,
                                  op_types_to_quantize=("MatMul",))
        quantizer.process()
        stage1.unlink()
        quantizer.model.save_model_to_file(str(tmp), use_external_data_format=False)
    _write_meta(out_path, meta)
    return out_path


@contextlib.contextmanager
def _quiet_quantizer():
    """The quantizer logs a pre-processing reminder and per-node notes at WARNING/INFO through the root logger;
    keep them out of notebook output (we do pre-process, in step 4)."""
    import logging

    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(before)


from onnxruntime.quantization import CalibrationDataReader as _CalibrationDataReader  # noqa: E402


class CalibrationReader(_CalibrationDataReader):
    """A ``CalibrationDataReader`` for ``quantize_static``: training sentences, tokenized once, fed in batches.

    ``get_next()`` returns one feed dict (``{input name: int64 array [batch, max_len]}``) per call and ``None`` when
    the sentences run out; ``rewind()`` starts again (ORT calls it between calibration passes). Iterating it
    rewinds first and yields every batch.
    """

    def __init__(self, tokenizer, texts: Sequence[str], max_len: int, batch_size: int = 16,
                 input_names: Sequence[str] | None = None):
        texts = list(texts)
        if not texts:
            raise OnnxRouteError("the calibration reader needs at least one sentence")
        if batch_size < 1:
            raise OnnxRouteError(f"batch_size must be >= 1, got {batch_size}")
        names = tuple(input_names or model_input_names(tokenizer))
        enc = finetune.encode(tokenizer, texts, max_len, return_tensors="np")
        missing = [n for n in names if n not in enc]
        if missing:
            raise OnnxRouteError(f"the tokenizer does not make inputs {missing}")
        self.input_names = names
        self.batch_size = batch_size
        self.n_sentences = len(texts)
        self._arrays = {n: np.asarray(enc[n], dtype=np.int64) for n in names}
        self._pos = 0

    def __len__(self) -> int:
        """Number of batches in one pass."""
        return (self.n_sentences + self.batch_size - 1) // self.batch_size

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self.n_sentences:
            return None
        sl = slice(self._pos, self._pos + self.batch_size)
        self._pos += self.batch_size
        return {n: a[sl] for n, a in self._arrays.items()}

    def rewind(self) -> None:
        self._pos = 0

    def __iter__(self):
        self.rewind()
        return self


CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile", "Distribution")


def quantize_static_variant(path: str | os.PathLike, out_path: str | os.PathLike, reader: CalibrationReader,
                            method: str = "MinMax", quant_format: str = "QDQ", per_channel: bool = True,
                            weight_type: str = "QInt8", activation_type: str = "QUInt8", reduce_range: bool = False,
                            op_types: Sequence[str] | None = ("MatMul",), reuse_key: str | None = None,
                            extra_options: dict | None = None) -> Path:
    """``onnxruntime.quantization.quantize_static``: activation ranges fixed ahead of time from ``reader``'s
    calibration batches, weights and activations both int8. Saved at ``out_path``.

    - ``method``: how a range is read from the calibration activations, one of ``CALIBRATION_METHODS``
      (``MinMax``: the extremes; ``Entropy``: the range minimizing KL divergence; ``Percentile``: clip at the
      99.999th percentile by default).
    - ``quant_format``: ``"QDQ"`` (QuantizeLinear/DequantizeLinear pairs around float ops; ORT fuses them into
      int8 kernels) or ``"QOperator"`` (dedicated ``QLinearMatMul``-style operators).
    - ``op_types``: operators to quantize; ``("MatMul",)`` by default (the linear layers, where the weights are).
    - ``reuse_key``: if given (for example ``f"{method}-{n_sentences}"``), an existing ``out_path`` written with the
      same key and settings is reused instead of calibrating again.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    measure.onnx_files(path)
    if method not in CALIBRATION_METHODS:
        raise OnnxRouteError(f"method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if quant_format not in ("QDQ", "QOperator"):
        raise OnnxRouteError(f"quant_format must be 'QDQ' or 'QOperator', got {quant_format!r}")
    out_path = Path(out_path)
    meta = {"kind": "static", "source": _read_meta(Path(path)) or str(path), "method": method,
            "format": quant_format, "per_channel": per_channel, "weight_type": weight_type,
            "activation_type": activation_type, "reduce_range": reduce_range, "op_types": list(op_types or []),
            "extra": extra_options or {}, "key": reuse_key}
    if reuse_key is not None and _reusable(out_path, meta):
        return out_path
    reader.rewind()
    # the histogram calibrators print progress with print(); keep it out of notebook output
    with _staged(out_path) as tmp, _quiet_quantizer(), contextlib.redirect_stdout(io.StringIO()):
        quantize_static(str(path), str(tmp), reader, quant_format=getattr(QuantFormat, quant_format),
                        op_types_to_quantize=list(op_types) if op_types else None, per_channel=per_channel,
                        reduce_range=reduce_range, activation_type=_quant_type(activation_type),
                        weight_type=_quant_type(weight_type), calibrate_method=getattr(CalibrationMethod, method), extra_options=extra_options)
    _write_meta(out_path, meta)
    return out_path


# --- the whole route, and the recommended int8 recipe -----------------------------------------------------------

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


def best_int8(model: torch.nn.Module, tokenizer, max_len: int, root: Path | None = None) -> Path:
    """The recommended ORT int8 model (``BEST_INT8_RECIPE``) for ``model``: built on first use, then reused."""
    return build_recipe(BEST_INT8_RECIPE, model, tokenizer, max_len, root)
