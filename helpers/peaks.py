"""Peak matmul throughput of this machine, per precision and thread count: the ceiling of ``helpers.roofline``.

- ``fp32``: ``torch.mm`` on float32 (MKL on x86);
- ``bf16``: ``torch.mm`` on bfloat16;
- ``int8``: the faster of two int8 GEMMs, both timed (``INT8_KERNELS``): ``torch._int_mm`` (int8 x int8 -> int32,
  what torchao's dynamic int8 calls; fast only with VNNI or AMX) and the quantized engine's own GEMM,
  ``torch.ops.quantized.linear_dynamic`` on an fbgemm-packed int8 weight (what ``quantize_dynamic`` calls; it has
  AVX2 kernels, and its time includes quantizing the fp32 input and dequantizing the output). ``Peak.kernel``
  names the faster, ``Peak.alternatives`` gives both.

The peak shape. ``DEFAULT_SHAPE`` is MiniLM's FFN-in GEMM at batch 32 x seq 128: (4096 tokens x 384) @ (384 x 1536).
On the course machine (2 cores, MKL fp32) it reached the same median GFLOP/s as 1024^3, 2048^3 and the FFN-out
shape, within run-to-run noise, at a quarter of the cost of 2048^3, and it is the model's own largest GEMM. Where a
kernel has no fast path (bf16 without AVX512-BF16, ``torch._int_mm`` without VNNI can run below 1 GOP/s), timing
that shape would take seconds per call; ``measure_peak`` grows the row count from 16, doubling while one call stays
under ``max_call_s``, up to the full shape. The shape actually timed is recorded in the result.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

import torch

from . import engine, measure

#: Precisions ``measure_peak`` can time, and the call it times for each.
PEAK_KERNELS = {
    "fp32": "torch.mm, float32 x float32 -> float32",
    "bf16": "torch.mm, bfloat16 x bfloat16 -> bfloat16",
    "int8": "the faster of INT8_KERNELS",
}
#: The int8 GEMMs ``measure_peak("int8")`` times; the peak is the faster one.
INT8_KERNELS = {
    "int_mm": "torch._int_mm, int8 x int8 -> int32",
    "fbgemm": "torch.ops.quantized.linear_dynamic, fbgemm-packed int8 weight (fp32 in and out)",
}

#: (m, k, n) of the peak GEMM: MiniLM's FFN-in at batch 32 x seq 128 (4096 tokens, hidden 384, intermediate 1536).
DEFAULT_SHAPE = (4096, 384, 1536)


# --- peak -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Peak:
    """Peak matmul throughput of one precision at one thread count (GOP/s: 1 MAC = 2 operations)."""
    precision: str
    threads: int
    gops: float          # median over the timed runs
    gops_p10: float      # from the 90th-percentile (slow) time
    gops_p90: float      # from the 10th-percentile (fast) time
    shape: tuple[int, int, int]  # (m, k, n) actually timed: (m x k) @ (k x n)
    runs: int
    kernel: str
    alternatives: dict = field(default_factory=dict)  # int8: GOP/s of every kernel timed, by INT8_KERNELS key

    @property
    def spread_gops(self) -> float:
        """Width of the p10-p90 band, in GOP/s."""
        return self.gops_p90 - self.gops_p10

    def as_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape), "spread_gops": self.spread_gops}

    def __str__(self) -> str:
        m, k, n = self.shape
        return (f"{self.precision} peak {self.gops:.1f} GOP/s (p10-p90 {self.gops_p10:.1f}-{self.gops_p90:.1f}, "
                f"{self.runs} runs, {self.threads} threads, {m}x{k} @ {k}x{n}, {self.kernel})")


def _check_precision(precision: str) -> None:
    if precision not in PEAK_KERNELS:
        raise ValueError(f"unknown precision {precision!r} for a peak; measure_peak knows {sorted(PEAK_KERNELS)}. "
                         f"For a route's precision string (e.g. 'int8 dynamic') use peak_precision_for() first.")


def _gemm(precision: str, m: int, k: int, n: int):
    """A zero-argument callable running one (m x k) @ (k x n) GEMM of ``precision`` on fixed random operands
    (``precision`` "fp32", "bf16", or an ``INT8_KERNELS`` key: "int_mm", "fbgemm")."""
    gen = torch.Generator().manual_seed(0)
    if precision == "fbgemm":
        x, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
        with warnings.catch_warnings():  # torch 2.13 deprecates quantized tensors; fbgemm's GEMM still takes them
            warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
            weight = torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8)
        with engine.using("fbgemm"):
            packed = torch.ops.quantized.linear_prepack(weight, None)

        def run():  # reduce_range=True, as torch.ao's dynamic Linear calls it (7-bit activations, no int16 overflow)
            with engine.using("fbgemm"):
                return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=True)
        return run
    if precision in ("int8", "int_mm"):
        a = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=gen)
        b = torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=gen)
        return lambda: torch._int_mm(a, b)
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    return lambda: torch.mm(a, b)


def _time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _fit_rows(precision: str, shape: tuple[int, int, int], max_call_s: float, start_rows: int = 16) -> int:
    """The most rows m (up to shape's m) for which one GEMM should stay under ``max_call_s``.

    Starts at ``start_rows`` and doubles m while the last measured call, scaled to the doubled size, fits:
    a few cheap calls (about four times the final one) instead of one possibly very slow call at full size."""
    m, k, n = shape
    rows = min(m, start_rows)
    gemm = _gemm(precision, rows, k, n)
    gemm()  # first call: kernel selection, allocation
    while rows < m:
        seconds = min(_time_once(gemm) for _ in range(2))  # the faster of two: one descheduled call must not stop it
        bigger = min(m, 2 * rows)
        if seconds * bigger / rows > max_call_s:
            break
        rows = bigger
        gemm = _gemm(precision, rows, k, n)
    return rows


def _measure_kernel(kernel: str, threads: int, shape: tuple[int, int, int], runs: int, warmup: int,
                    max_call_s: float | None) -> tuple[float, float, float, tuple[int, int, int], int, int]:
    """(median, p10-time, p90-time GOP/s, shape timed, runs, threads) of one kernel."""
    with measure.num_threads(threads), torch.inference_mode():
        m = shape[0] if max_call_s is None else _fit_rows(kernel, shape, max_call_s)
        _, k, n = shape
        lat = measure.latency(_gemm(kernel, m, k, n), runs=runs, warmup=warmup, threads=threads)
    giga_ops = 2 * m * k * n / 1e9
    return (giga_ops / (lat.median_ms / 1e3), giga_ops / (lat.p90_ms / 1e3), giga_ops / (lat.p10_ms / 1e3),
            (m, k, n), lat.runs, lat.threads)


def measure_peak(precision: str, threads: int, shape: tuple[int, int, int] | None = None, runs: int = 5,
                 warmup: int = 1, max_call_s: float | None = 0.1) -> Peak:
    """This machine's peak matmul throughput for ``precision`` ("fp32", "bf16" or "int8") on ``threads`` threads.

    Times ``torch.mm`` (fp32, bf16) or, for int8, each of ``INT8_KERNELS`` (``torch._int_mm`` and fbgemm's
    ``quantized.linear_dynamic``), keeping the faster, on a (m x k) @ (k x n) GEMM, ``shape`` = (m, k, n), default
    ``DEFAULT_SHAPE``: ``warmup`` untimed calls, then the median of ``runs`` timed ones
    (``helpers.measure.latency``), under ``torch.set_num_threads(threads)``; torch's previous thread count is
    restored afterwards. If one call would take longer than ``max_call_s`` (a kernel without a fast path on this
    CPU), m is reduced to fit (doubling from 16 rows while a call fits); ``max_call_s=None`` times the shape as given.
    """
    _check_precision(precision)
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    shape = tuple(DEFAULT_SHAPE if shape is None else shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"shape must be three positive integers (m, k, n), got {shape!r}")
    kernels = [precision]
    if precision == "int8":  # fbgemm exists on x86 builds only
        kernels = [k for k in INT8_KERNELS if k != "fbgemm" or k in torch.backends.quantized.supported_engines]
    timed = {kernel: _measure_kernel(kernel, threads, shape, runs, warmup, max_call_s) for kernel in kernels}
    best = max(timed, key=lambda kernel: timed[kernel][0])
    gops, gops_p10, gops_p90, used, n_runs, n_threads = timed[best]
    kernel = INT8_KERNELS[best] if precision == "int8" else PEAK_KERNELS[precision]
    alternatives = {k: t[0] for k, t in timed.items()} if precision == "int8" else {}
    return Peak(precision, n_threads, gops, gops_p10, gops_p90, used, n_runs, kernel, alternatives)


def measure_peaks(precisions: Iterable[str] = ("fp32", "bf16", "int8"), threads: Iterable[int | None] = (1, None),
                  **kwargs) -> list[Peak]:
    """``measure_peak`` for every precision at every thread count (``None``: all available threads, deduplicated).

    Keyword arguments (``shape``, ``runs``, ``warmup``, ``max_call_s``) go to ``measure_peak``."""
    precisions = list(precisions)
    for precision in precisions:
        _check_precision(precision)
    counts = sorted({measure.available_threads() if t is None else t for t in threads})
    return [measure_peak(p, t, **kwargs) for t in counts for p in precisions]


def peaks_table(peaks: Iterable[Peak] | Mapping) -> dict[str, dict[str, float]]:
    """Peaks as ``{precision: {threads: GOP/s}}`` with the thread count as a string (as JSON stores it).

    Accepts a list of ``Peak`` or an already nested mapping (from a results JSON), which is normalized."""
    if isinstance(peaks, Mapping):
        return {p: {str(t): float(g) for t, g in by_threads.items()} for p, by_threads in peaks.items()}
    table: dict[str, dict[str, float]] = {}
    for peak in peaks:
        table.setdefault(peak.precision, {})[str(peak.threads)] = peak.gops
    return table
