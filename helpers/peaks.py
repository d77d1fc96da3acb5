"""The ceilings of ``helpers.roofline`` on this machine: peak matmul throughput per precision, and memory bandwidth.

**Compute peaks.** A precision's peak is the fastest of the GEMM forms the course's models actually run
(``PEAK_KERNELS``), each timed alone on the same shape: for fp32 and bf16 ``torch.mm``, ``torch.addmm`` with a bias
and ``F.linear`` (weight stored out x in, as ``nn.Linear`` calls it); for int8 ``torch._int_mm`` on ``w.t()`` (as
torchao calls it: int8 x int8 with AMX or as fallback, uint8 x int8 on VNNI without AMX) and the quantized engine's
``quantized.linear_dynamic`` (what ``quantize_dynamic`` runs; fp32 in and out, so its time *includes* quantizing
the activations: ``Peak.includes_activation_quantization``). Layout and dtype change the speed (``_int_mm`` on a
transposed weight is not as fast as on a contiguous one), so each form is timed as the model calls it.

**Timed with the routes.** A peak timed minutes apart from the routes can sit below them (load, clock speed).
``peak_kernels`` returns the kernels as named zero-argument callables, to time in the same rounds as the routes
(``measure.round_robin`` or any loop); ``peaks_from_latencies`` turns their timings into ``Peak`` objects.
``measure_peak`` / ``measure_peaks`` do both alone, interleaving the kernels round by round.

**Shape.** ``DEFAULT_SHAPE`` is MiniLM's FFN-in GEMM at batch 32 x seq 128: (4096 x 384) @ (384 x 1536), the
model's largest GEMM; on the course machine it reached the GOP/s of 1024^3 and 2048^3 at a fraction of the cost.
A kernel without a fast path (bf16 without AVX512-BF16, ``_int_mm`` without VNNI) would take seconds there, so its
row count grows from 16, doubling while one call stays under ``max_call_s``; the shape timed is recorded.

**Bandwidth.** ``copy_kernel`` is a copy far larger than the last-level cache (``last_level_cache_bytes``), a
callable like the GEMM kernels, to time with the routes; ``measure_bandwidth`` times it alone. It is the roof a
batch-1 forward, or a decoder's token, runs into.
"""

from __future__ import annotations

import platform
import re
import subprocess
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F

from . import engine, measure

#: The GEMM forms timed for each precision's peak (form -> what is called, as labelled in results).
PEAK_KERNELS = {
    "fp32": {"mm": "torch.mm(a, b), float32", "addmm": "torch.addmm(bias, a, b), float32",
             "linear": "F.linear(x, w, bias), float32 (w out x in, as nn.Linear)"},
    "bf16": {"mm": "torch.mm(a, b), bfloat16", "addmm": "torch.addmm(bias, a, b), bfloat16",
             "linear": "F.linear(x, w, bias), bfloat16 (w out x in, as nn.Linear)"},
    "int8": {"int_mm": "torch._int_mm(a, w.t()), int8 x int8 -> int32 (kernel alone)",
             "int_mm_u8s8": "torch._int_mm(a, w.t()), uint8 x int8 -> int32 (kernel alone; torchao's VNNI path)",
             "linear_dynamic": "quantized.linear_dynamic (incl. activation quantization), fbgemm, fp32 in and out"},
}
#: The int8 forms (kept for ``helpers.roofline``'s re-export).
INT8_KERNELS = PEAK_KERNELS["int8"]
#: Forms whose time includes quantizing the fp32 input: a split must not count that cost again.
INCLUDES_ACTIVATION_QUANTIZATION = frozenset({("int8", "linear_dynamic")})

#: (m, k, n) of the peak GEMM: MiniLM's FFN-in at batch 32 x seq 128 (4096 tokens, hidden 384, intermediate 1536).
DEFAULT_SHAPE = (4096, 384, 1536)


@dataclass(frozen=True)
class Peak:
    """Peak matmul throughput of one precision at one thread count (GOP/s: 1 MAC = 2 operations)."""
    precision: str
    threads: int
    gops: float          # median over the timed runs, of the fastest form
    gops_p10: float      # from the 90th-percentile (slow) time
    gops_p90: float      # from the 10th-percentile (fast) time
    shape: tuple[int, int, int]  # (m, k, n) actually timed: (m x k) @ (k x n)
    runs: int
    kernel: str          # PEAK_KERNELS label of the fastest form
    alternatives: dict = field(default_factory=dict)  # median GOP/s of every form timed, by PEAK_KERNELS key
    includes_activation_quantization: bool = False  # the fastest form quantizes its fp32 input itself
    same_rounds_as_routes: bool = False  # timed in the same rounds as the routes it is compared with

    @property
    def spread_gops(self) -> float:
        """Width of the p10-p90 band, in GOP/s."""
        return self.gops_p90 - self.gops_p10

    def as_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape), "spread_gops": self.spread_gops}

    @classmethod
    def from_dict(cls, data: Mapping) -> Peak:
        """The ``Peak`` that ``as_dict`` wrote (as the bench's results JSON holds it)."""
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in names}, "shape": tuple(data["shape"])})

    def __str__(self) -> str:
        m, k, n = self.shape
        return (f"{self.precision} peak {self.gops:.1f} GOP/s (p10-p90 {self.gops_p10:.1f}-{self.gops_p90:.1f}, "
                f"{self.runs} runs, {self.threads} threads, {m}x{k} @ {k}x{n}, {self.kernel})")


@dataclass(frozen=True)
class PeakKernel:
    """One GEMM form on fixed operands: call it with no arguments; ``ops`` operations per call."""
    precision: str
    form: str
    shape: tuple[int, int, int]
    fn: Callable[[], object] = field(repr=False, compare=False)

    def __call__(self):
        return self.fn()

    @property
    def ops(self) -> int:
        m, k, n = self.shape
        return 2 * m * k * n


def _check_precision(precision: str) -> None:
    if precision not in PEAK_KERNELS:
        raise ValueError(f"unknown precision {precision!r} for a peak; measure_peak knows {sorted(PEAK_KERNELS)}. "
                         f"For a route's precision string (e.g. 'int8 dynamic') use peak_precision_for() first.")


def forms_for(precision: str) -> list[str]:
    """The ``PEAK_KERNELS`` forms of ``precision`` this torch build can run (fbgemm exists on x86 builds only)."""
    _check_precision(precision)
    has_fbgemm = "fbgemm" in torch.backends.quantized.supported_engines
    return [f for f in PEAK_KERNELS[precision] if f != "linear_dynamic" or has_fbgemm]


def _gemm(precision: str, form: str, m: int, k: int, n: int) -> Callable[[], object]:
    """A zero-argument callable running ``form`` of ``precision`` on (m x k) inputs and an n x k weight."""
    gen = torch.Generator().manual_seed(0)
    x, w, bias = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen), torch.randn(n, generator=gen)
    if form == "linear_dynamic":
        with warnings.catch_warnings():  # torch 2.13 deprecates quantized tensors; fbgemm's GEMM still takes them
            warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
            weight = torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8)
        with engine.using("fbgemm"):
            packed = torch.ops.quantized.linear_prepack(weight, bias)
        # reduce_range=True, as torch.ao's dynamic Linear calls it (7-bit activations, no int16 overflow)
        return lambda: torch.ops.quantized.linear_dynamic(x, packed, reduce_range=True)
    if precision == "int8":
        a = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=gen)
        w8 = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=gen)
        if form == "int_mm_u8s8":  # torchao shifts activations by +128 to uint8 (and corrects with w's column sums)
            a = (a.to(torch.int32) + 128).to(torch.uint8)
        return lambda: torch._int_mm(a, w8.t())
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    x, w, bias = x.to(dtype), w.to(dtype), bias.to(dtype)
    b = w.t().contiguous()
    if form == "mm":
        return lambda: torch.mm(x, b)
    if form == "addmm":
        return lambda: torch.addmm(bias, x, b)
    return lambda: F.linear(x, w, bias)


def _time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _fit_rows(precision: str, form: str, shape: tuple[int, int, int], max_call_s: float, start_rows: int = 16) -> int:
    """The most rows m (up to shape's m) for which one GEMM should stay under ``max_call_s``.

    Starts at ``start_rows`` and doubles m while the last measured call, scaled to the doubled size, fits:
    a few cheap calls (about four times the final one) instead of one possibly very slow call at full size."""
    m, k, n = shape
    rows = min(m, start_rows)
    gemm = _gemm(precision, form, rows, k, n)
    gemm()  # first call: kernel selection, allocation
    while rows < m:
        seconds = min(_time_once(gemm) for _ in range(2))  # the faster of two: one descheduled call must not stop it
        bigger = min(m, 2 * rows)
        if seconds * bigger / rows > max_call_s:
            break
        rows = bigger
        gemm = _gemm(precision, form, rows, k, n)
    return rows


def _check_shape(shape) -> tuple[int, int, int]:
    shape = tuple(DEFAULT_SHAPE if shape is None else shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"shape must be three positive integers (m, k, n), got {shape!r}")
    return shape


def peak_kernels(precisions: Iterable[str] = tuple(PEAK_KERNELS), threads: int | None = None,
                 shape: tuple[int, int, int] | None = None, max_call_s: float | None = 0.1) -> dict[str, PeakKernel]:
    """Every peak form of ``precisions`` as ``{"peak <precision> <form>": PeakKernel}``, ready to be timed.

    A ``PeakKernel`` is a zero-argument callable, so the dict can be merged with route callables and timed in the
    same rounds (``measure.round_robin(fns, ...)``); ``kernel.ops`` is the operations of one call. Rows are fitted
    to ``max_call_s`` (see the module notes) under ``threads`` torch threads: time them on that count too."""
    shape = _check_shape(shape)
    precisions = list(precisions)
    for precision in precisions:
        _check_precision(precision)
    out = {}
    with measure.num_threads(threads), torch.inference_mode():
        for precision in precisions:
            for form in forms_for(precision):
                m = shape[0] if max_call_s is None else _fit_rows(precision, form, shape, max_call_s)
                fitted = (m, shape[1], shape[2])
                out[f"peak {precision} {form}"] = PeakKernel(precision, form, fitted, _gemm(precision, form, *fitted))
    return out


def peaks_from_latencies(kernels: Mapping[str, PeakKernel], latencies) -> dict[str, Peak]:
    """``{precision: Peak}``, the fastest form per precision, from timings of ``peak_kernels``' callables.

    ``latencies`` maps names to ``measure.Latency`` (median_ms, p10_ms, p90_ms, runs, threads), or is a
    ``measure.RoundRobin`` (its ``latencies`` are used). Names that are not peak kernels (the routes timed in the
    same rounds) are ignored, and their presence marks every peak as ``same_rounds_as_routes``."""
    latencies = getattr(latencies, "latencies", latencies)
    missing = [name for name in kernels if name not in latencies]
    if missing:
        raise KeyError(f"no timing for peak kernels {missing}; time every callable peak_kernels() returned")
    with_routes = any(name not in kernels for name in latencies)
    by_precision: dict[str, list[str]] = {}
    for name, kernel in kernels.items():
        by_precision.setdefault(kernel.precision, []).append(name)

    def gops(name, ms):
        return kernels[name].ops / 1e9 / (ms / 1e3)

    peaks = {}
    for precision, names in by_precision.items():
        best = max(names, key=lambda name: gops(name, latencies[name].median_ms))
        kernel, lat = kernels[best], latencies[best]
        peaks[precision] = Peak(
            precision, lat.threads, gops(best, lat.median_ms), gops(best, lat.p90_ms), gops(best, lat.p10_ms),
            kernel.shape, lat.runs, PEAK_KERNELS[precision][kernel.form],
            {kernels[n].form: gops(n, latencies[n].median_ms) for n in names},
            (precision, kernel.form) in INCLUDES_ACTIVATION_QUANTIZATION, with_routes)
    return peaks


def _check_threads(threads) -> None:
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")


def measure_peaks(precisions: Iterable[str] = ("fp32", "bf16", "int8"), threads: Iterable[int | None] = (1, None),
                  shape: tuple[int, int, int] | None = None, runs: int = 5, warmup: int = 1,
                  max_call_s: float | None = 0.1) -> list[Peak]:
    """The peak of every precision at every thread count (``None``: all available threads, deduplicated).

    At each thread count, every form of every precision (``peak_kernels``) is timed in the same rounds:
    ``warmup`` untimed rounds, then ``runs`` timed ones; the median of the fastest form is the peak. torch's
    thread count is restored afterwards. Peaks come thread count by thread count, precisions in the given order."""
    precisions = list(precisions)
    for precision in precisions:
        _check_precision(precision)
    counts = sorted({measure.available_threads() if t is None else t for t in threads})
    for count in counts:
        _check_threads(count)
    out = []
    for count in counts:
        kernels = peak_kernels(precisions, count, shape, max_call_s)
        peaks = peaks_from_latencies(kernels, measure.round_robin(kernels, runs, warmup, count))
        out += [peaks[p] for p in precisions]
    return out


def measure_peak(precision: str, threads: int, shape: tuple[int, int, int] | None = None, runs: int = 5,
                 warmup: int = 1, max_call_s: float | None = 0.1) -> Peak:
    """This machine's peak for ``precision`` ("fp32", "bf16" or "int8") on ``threads`` threads: ``measure_peaks``
    of one precision and one thread count (``max_call_s=None`` times ``shape`` as given)."""
    _check_precision(precision)
    _check_threads(threads)
    return measure_peaks((precision,), (threads,), shape, runs, warmup, max_call_s)[0]


def peaks_table(peaks: Iterable[Peak] | Mapping) -> dict[str, dict[str, float]]:
    """Peaks as ``{precision: {threads: GOP/s}}`` with the thread count as a string (as JSON stores it).

    Accepts a list of ``Peak`` or an already nested mapping (from a results JSON), which is normalized."""
    if isinstance(peaks, Mapping):
        return {p: {str(t): float(g) for t, g in by_threads.items()} for p, by_threads in peaks.items()}
    table: dict[str, dict[str, float]] = {}
    for peak in peaks:
        table.setdefault(peak.precision, {})[str(peak.threads)] = peak.gops
    return table


# --- memory bandwidth -----------------------------------------------------------------------------------------

_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}


def last_level_cache_bytes(sys_cache: str | Path = "/sys/devices/system/cpu/cpu0/cache",
                           sysctl: Callable[[str], str | None] | None = None, system: str | None = None) -> int | None:
    """The largest data (or unified) cache of CPU 0 in bytes, read from the OS; None where it cannot be read.

    Linux: ``index*/{level,type,size}`` under ``sys_cache`` (size like "32768K"); macOS: ``sysctl -n
    hw.l3cachesize``, else ``hw.l2cachesize``; elsewhere None. ``sysctl`` (name -> text) and ``system``
    (``platform.system()``) are injectable for tests."""
    system = platform.system() if system is None else system
    if system == "Darwin":
        sysctl = sysctl or _sysctl
        for name in ("hw.l3cachesize", "hw.l2cachesize"):
            text = (sysctl(name) or "").strip()
            if text.isdigit() and int(text) > 0:
                return int(text)
        return None
    if system != "Linux":
        return None
    best: tuple[int, int] | None = None
    for index in sorted(Path(sys_cache).glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = re.fullmatch(r"(\d+)\s*([KMG]?)B?", (index / "size").read_text().strip().upper())
        except (OSError, ValueError):
            continue
        if kind != "Instruction" and size:
            best = max(best or (0, 0), (level, int(size[1]) * _SIZE_UNITS[size[2]]))
    return best[1] if best else None


def _sysctl(name: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass(frozen=True)
class CopyKernel:
    """``dst.copy_(src)`` on two buffers of ``nbytes``: call it with no arguments, like a ``PeakKernel``, so it can
    be timed in the same rounds as the routes; ``bytes_moved`` per call is read + write (the write-allocate read
    some CPUs add is not counted)."""
    nbytes: int
    fn: Callable[[], object] = field(repr=False, compare=False)

    def __call__(self):
        return self.fn()

    @property
    def bytes_moved(self) -> int:
        return 2 * self.nbytes

    def bandwidth(self, seconds: float) -> float:
        """Bytes per second for one call that took ``seconds``."""
        if not seconds > 0:
            raise RuntimeError(f"a copy of {self.nbytes} bytes took {seconds!r} s, too short to time: pass a larger "
                               f"nbytes")
        return self.bytes_moved / seconds


def copy_kernel(nbytes: int | None = None) -> CopyKernel:
    """The bandwidth probe: ``nbytes`` per buffer (default the larger of 256 MiB and 8 x the last-level cache) must
    dwarf the cache, or the copy measures the cache instead of DRAM. Both buffers are written once here, so page
    faults are not timed."""
    if nbytes is None:
        nbytes = max(256 * 1024 ** 2, 8 * (last_level_cache_bytes() or 0))
    if not isinstance(nbytes, int) or nbytes < 1:
        raise ValueError(f"need a positive integer nbytes, got nbytes={nbytes!r}")
    src = torch.ones(nbytes, dtype=torch.uint8)
    dst = torch.zeros_like(src)
    dst.copy_(src)
    return CopyKernel(nbytes, lambda: dst.copy_(src))


def measure_bandwidth(threads: int | None = None, nbytes: int | None = None, runs: int = 5) -> float:
    """Main-memory copy bandwidth in bytes per second: the fastest of ``runs`` calls of ``copy_kernel(nbytes)``,
    under ``threads`` torch threads (None: torch's current count; one core rarely saturates DRAM)."""
    if runs < 1:
        raise ValueError(f"need runs >= 1, got runs={runs!r}")
    kernel = copy_kernel(nbytes)
    with measure.num_threads(threads):
        kernel()
        return kernel.bandwidth(min(_time_once(kernel) for _ in range(runs)))
