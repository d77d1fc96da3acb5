"""Measuring honestly: size on disk, latency (median and spread), accuracy and agreement.

Timings on a shared 2-core machine are noisy. So ``latency`` warms up first, repeats, and reports the median with
the 10th-90th percentile spread and the thread count; compare ratios measured in the same run, not absolute
seconds across machines.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch


# --- size -----------------------------------------------------------------------------------------------------

def state_dict_bytes(model: torch.nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the size of the model's file on disk."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        torch.save(model.state_dict(), path)
        return path.stat().st_size


def onnx_files(path: str | os.PathLike) -> list[Path]:
    """An ONNX model file plus every external-data file it references."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}; export the model first")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not ONNX
        raise ValueError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc}); delete it and export "
                         "or quantize again") from exc
    files = {path}
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            location = next(e.value for e in tensor.external_data if e.key == "location")
            files.add(path.parent / location)
    return sorted(files)


def size_on_disk(path: str | os.PathLike) -> int:
    """Bytes on disk of a file; for an ``.onnx`` file, including its external data."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"nothing at {path}")
    if path.suffix == ".onnx":
        return sum(p.stat().st_size for p in onnx_files(path))
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def mb(n_bytes: int | float) -> float:
    """Bytes to megabytes (10^6), the unit of the course's tables."""
    return n_bytes / 1e6


# --- time -----------------------------------------------------------------------------------------------------

def available_threads() -> int:
    """CPUs this process may run on: the "all threads" setting of every timing table."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextlib.contextmanager
def num_threads(n: int | None):
    """Run a block with ``torch.set_num_threads(n)``; restore the previous count afterwards. ``None``: unchanged."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    threads: int

    @property
    def spread_ms(self) -> float:
        """Width of the 10th-90th percentile band."""
        return self.p90_ms - self.p10_ms

    def band(self, digits: int = 1) -> str:
        """The 10th-90th percentile band as table text, e.g. ``"12.3-14.1"`` (milliseconds)."""
        return f"{self.p10_ms:.{digits}f}-{self.p90_ms:.{digits}f}"

    def as_dict(self) -> dict:
        return {**asdict(self), "spread_ms": self.spread_ms}

    def __str__(self) -> str:
        return f"{self.median_ms:.2f} ms (p10-p90 {self.band(2)}, {self.runs} runs, {self.threads} threads)"


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted list."""
    pos = (len(sorted_values) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency(fn: Callable[[], object], runs: int = 10, warmup: int = 2, threads: int | None = None) -> Latency:
    """Time ``fn()``: ``warmup`` untimed calls, then ``runs`` timed ones, under ``threads`` torch threads."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    with num_threads(threads) as used, torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
    return summarize(times, used)


def summarize(times_ms: Sequence[float], threads: int) -> Latency:
    """Median and p10-p90 spread of timings taken elsewhere (in milliseconds), as a ``Latency``."""
    if not times_ms:
        raise ValueError("no timings to summarize: time at least one run")
    times = sorted(float(t) for t in times_ms)
    return Latency(statistics.median(times), _percentile(times, 0.1), _percentile(times, 0.9), len(times), threads)


# --- quality --------------------------------------------------------------------------------------------------

def _as_list(values) -> list:
    if isinstance(values, torch.Tensor):
        return values.tolist()
    return list(values)


def accuracy(predictions, labels) -> float:
    """Fraction of predictions equal to the labels."""
    p, y = _as_list(predictions), _as_list(labels)
    if len(p) != len(y):
        raise ValueError(f"{len(p)} predictions for {len(y)} labels")
    if not p:
        raise ValueError("no predictions to score")
    return sum(int(a == b) for a, b in zip(p, y)) / len(p)


def agreement(predictions_a, predictions_b) -> float:
    """Fraction of inputs on which two models predict the same class (fp32 vs int8, say)."""
    return accuracy(predictions_a, predictions_b)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()
