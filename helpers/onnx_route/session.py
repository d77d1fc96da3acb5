"""Step 7 of the ONNX route: ONNX Runtime sessions with explicit ``SessionOptions``, and what they are measured by.

- ``make_session``: an ``onnxruntime.InferenceSession`` on the CPU with every option that matters set explicitly;
- ``run_logits`` / ``evaluate`` / ``check_equivalence``: logits, accuracy and agreement with fp32 or PyTorch;
- ``session_latency``: one ``session.run`` timed by ``helpers.measure.latency``;
- ``score_variant``: build one quantized variant, then score it into a table row (notebook 04's comparison tables).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .. import finetune, measure
from ._cache import OnnxRouteError, require_onnx
from .export import OUTPUT_NAMES, graph_summary

#: ``SessionOptions.graph_optimization_level`` by name.
OPT_LEVELS = ("disable", "basic", "extended", "all")


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

    path = require_onnx(path)
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


def score_variant(label: str, build: Callable[[], str | os.PathLike], tokenizer, split, max_len: int,
                  reference_predictions, fp32_bytes: int, ops: Sequence[str] = (), **details) -> tuple[Path, dict]:
    """Build one quantized variant and score it: the loop body of notebook 04's comparison tables.

    ``build()`` runs one of the ``quantize_*_variant`` calls and returns the ``.onnx`` path; it is timed (a file
    reused from the cache builds in milliseconds). The model is then scored on ``split`` with ``evaluate``. Returns
    ``(path, row)``, the row holding ``variant`` (= ``label``), the ``details`` given, ``size MB``, ``x fp32 size``
    (against ``fp32_bytes``), the count of each operator type in ``ops``, ``accuracy``, ``agreement`` with
    ``reference_predictions`` and ``build s``."""
    start = time.perf_counter()
    path = Path(build())
    built = time.perf_counter() - start
    scores = evaluate(make_session(path), tokenizer, split, max_len, reference_predictions=reference_predictions)
    size = measure.size_on_disk(path)
    counted = graph_summary(path)["ops"] if ops else {}
    return path, {"variant": label, **details, "size MB": measure.mb(size), "x fp32 size": size / fp32_bytes,
                  **{op: counted.get(op, 0) for op in ops}, "accuracy": scores["accuracy"],
                  "agreement": scores["agreement"], "build s": built}
