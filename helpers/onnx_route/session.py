"""The ONNX route's last step: ONNX Runtime sessions with explicit ``SessionOptions``, and what they are measured by.

- ``make_session``: an ``onnxruntime.InferenceSession`` on the CPU with every option that matters set explicitly;
- ``forward``: ``session.run`` as the forward function ``helpers.evaluation`` scores;
- ``run_logits`` / ``score``: logits, and the evaluation protocol's comparison with fp32;
- ``session_latency``: one ``session.run`` timed by ``helpers.measure.latency``;
- ``score_variant``: build one quantized variant, then score it into a table row (notebook 04's sweeps).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .. import evaluation, measure, models
from ._cache import OnnxRouteError, require_onnx
from .export import OUTPUT_NAMES, graph_summary

#: ``SessionOptions.graph_optimization_level`` by name.
OPT_LEVELS = ("disable", "basic", "extended", "all")


def make_session(path: str | os.PathLike, threads: int | None = None, opt_level: str = "all",
                 inter_op_threads: int = 1, optimized_model_path: str | os.PathLike | None = None,
                 spinning: bool = True):
    """An ``onnxruntime.InferenceSession`` on the CPU with explicit ``SessionOptions``.

    - ``threads``: ``intra_op_num_threads`` (the threads one operator uses); ``None`` means every CPU this
      process may use (``measure.available_threads()``), never ORT's implicit default.
    - ``opt_level``: ``graph_optimization_level``, one of ``OPT_LEVELS`` (``"all"`` adds layout and CPU-specific
      fusions on top of ``"extended"``).
    - ``inter_op_threads`` with sequential execution: operators run one after another.
    - ``optimized_model_path``: if given, ORT writes the graph it actually runs there (to inspect it).
    - ``spinning=False`` sets ``session.intra_op.allow_spinning`` to ``"0"``: idle worker threads sleep instead of
      spinning, so a session timed in turn with other models does not take CPU from the next one.

    A missing file raises ``FileNotFoundError``; a file that is not ONNX raises ``ValueError``, both saying how to
    fix it.
    """
    import onnxruntime as ort

    path = require_onnx(path)
    if opt_level not in OPT_LEVELS:
        raise OnnxRouteError(f"opt_level must be one of {OPT_LEVELS}, got {opt_level!r}")
    threads = measure.available_threads() if threads is None else threads
    if threads < 1:
        raise OnnxRouteError(f"threads must be >= 1 (or None for all {measure.available_threads()} CPUs), "
                             f"got {threads}")
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
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
    enc = models.encode(tokenizer, texts, max_len, return_tensors="np")
    missing = [n for n in wanted if n not in enc]
    if missing:
        raise OnnxRouteError(f"the model wants inputs {missing} that the tokenizer does not make ({list(enc)})")
    return {n: np.asarray(enc[n], dtype=np.int64) for n in wanted}


def forward(session) -> Callable[[dict], np.ndarray]:
    """``session.run(["logits"], feeds)`` as a function of the tokenizer's tensors: the form
    ``helpers.evaluation.predict_logits`` and ``evaluate`` take. Inputs the session does not declare are dropped."""
    names = [i.name for i in session.get_inputs()]

    def run(batch: dict) -> np.ndarray:
        missing = [n for n in names if n not in batch]
        if missing:
            raise OnnxRouteError(f"the model wants inputs {missing} that the tokenizer did not make ({list(batch)})")
        feeds = {n: np.asarray(batch[n], dtype=np.int64) for n in names}
        return session.run(list(OUTPUT_NAMES), feeds)[0]

    return run


def run_logits(session, tokenizer, texts: Sequence[str], max_len: int,
               batch_size: int = evaluation.EVAL_BATCH_SIZE, progress: bool = False) -> torch.Tensor:
    """Logits of ``texts`` from an ORT session as an ``[n, num_labels]`` float tensor, in batches of
    ``batch_size`` padded to ``max_len`` (``helpers.evaluation.predict_logits`` with ``forward(session)``)."""
    if batch_size < 1:
        raise OnnxRouteError(f"batch_size must be >= 1, got {batch_size}")
    if not list(texts):
        raise OnnxRouteError("no texts to run")
    return evaluation.predict_logits(forward(session), tokenizer, texts, max_len, batch_size, progress)


def score(session_or_path, reference_logits: torch.Tensor, tokenizer, split, max_len: int,
          threads: int | None = None) -> evaluation.Comparison:
    """A session (or an ``.onnx`` file, opened with ``make_session``) scored on a whole ``data.Split`` against
    fp32's logits on it, the protocol's way (``helpers.evaluation.evaluate``: batch ``EVAL_BATCH_SIZE`` padded to
    ``max_len``, agreement with its interval, accuracy and McNemar)."""
    session = session_or_path
    if isinstance(session_or_path, (str, os.PathLike)):
        session = make_session(session_or_path, threads=threads)
    return evaluation.evaluate(forward(session), reference_logits, tokenizer, split, max_len)


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
                  reference_logits: torch.Tensor, fp32_bytes: int, ops: Sequence[str] = (),
                  **details) -> tuple[Path, evaluation.Comparison, dict]:
    """Build one quantized variant and score it: the loop body of notebook 04's sweeps.

    ``build()`` runs one of the ``quantize_*_variant`` calls and returns the ``.onnx`` path; it is timed (a file
    reused from the cache builds in milliseconds). The model is then scored on ``split`` with ``score`` against
    ``reference_logits`` (fp32's on the same split). Returns ``(path, comparison, row)``, the row holding
    ``variant`` (= ``label``), the ``details`` given, ``size MB``, ``x fp32 size`` (against ``fp32_bytes``), the
    count of each operator type in ``ops``, ``agreement`` with its 95% interval, ``flips`` and ``build s``."""
    start = time.perf_counter()
    path = Path(build())
    built = time.perf_counter() - start
    comparison = score(path, reference_logits, tokenizer, split, max_len)
    size = measure.size_on_disk(path)
    counted = graph_summary(path)["ops"] if ops else {}
    agreement = comparison.row()
    row = {"variant": label, **details, "size MB": measure.mb(size), "x fp32 size": size / fp32_bytes,
           **{op: counted.get(op, 0) for op in ops}, "agreement": comparison.agreement,
           "agreement 95% CI": agreement["agreement 95% CI"], "flips": agreement["flips"], "build s": built}
    return path, comparison, row
