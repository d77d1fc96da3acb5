"""The roofline of a bench run: how close each route came to this machine's ceilings for its own precision.

``RoofProbes`` holds the ceilings' probes (``helpers.peaks``: per precision every GEMM form the model runs,
``peaks.PEAK_KERNELS``, and a DRAM copy) as callables that the bench times *in the same rounds as the routes* at
every grid point; a precision's peak at a thread count is its fastest form's median, the best over the grid points
with that thread count, and the bandwidth is the copy's best median over the grid. ``peaks_at(run, threads)``
reads the peaks back as ``Peak`` objects. ``record(run, config, peaks, bandwidth)`` builds the results JSON's
``roofline`` object (``helpers.roofline.roofline_record``: peaks by precision and threads, the model's GOPs per
grid point, per route and point the compute and memory roofs, which binds, the fraction and, above 1, why) and
adds which kernel set each peak. ``rows(run)`` is the table at the summary point. ``isa_record`` measures what int8
gains under ``ONEDNN_MAX_CPU_ISA`` caps (``helpers.bench.isa``), for ``make bench``'s ``isa_sensitivity`` object.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from .. import measure as measuring
from .. import peaks as peak_probe
from .. import roofline
from .reading import EXPORTED_FAMILIES, latency_at, summary_point
from .schema import BenchRun, Point

PRECISIONS = ("fp32", "bf16", "int8")
#: The name the copy probe is timed under, beside the routes and the ``peak <precision> <form>`` kernels.
COPY = "memory copy"


class RoofProbes:
    """The roofline's probes, to time in the bench's rounds: ``callables(threads)`` gives them as zero-argument
    callables by name (built on first use, once per thread count; the copy's two buffers too), ``take(timing,
    threads)`` keeps what one round robin measured.
    Afterwards ``peaks`` is the ``Peak`` list (each marked ``same_rounds_as_routes``) and ``bandwidth`` the copy's
    bytes/s (None without the copy probe)."""

    def __init__(self, precisions: Iterable[str] = PRECISIONS, bandwidth: bool = True, copy_bytes: int | None = None,
                 shape: tuple[int, int, int] | None = None, max_call_s: float | None = 0.1):
        self.precisions, self.shape, self.max_call_s = tuple(precisions), shape, max_call_s
        self._with_copy, self._copy_bytes, self._copy = bandwidth, copy_bytes, None
        self._kernels: dict[int, dict[str, peak_probe.PeakKernel]] = {}
        self._best: dict[tuple[str, int], peak_probe.Peak] = {}
        self.bandwidth: float | None = None

    def callables(self, threads: int) -> dict[str, Callable[[], object]]:
        if threads not in self._kernels:
            self._kernels[threads] = peak_probe.peak_kernels(self.precisions, threads, self.shape, self.max_call_s)
        if self._with_copy and self._copy is None:
            self._copy = peak_probe.copy_kernel(self._copy_bytes)
        return {**self._kernels[threads], **({COPY: self._copy} if self._copy else {})}

    def take(self, timing: measuring.RoundRobin, threads: int) -> None:
        for precision, peak in peak_probe.peaks_from_latencies(self._kernels[threads], timing).items():
            key = (precision, threads)
            if key not in self._best or peak.gops > self._best[key].gops:
                self._best[key] = peak
        if self._copy is not None and COPY in timing.latencies:
            bandwidth = self._copy.bandwidth(timing.latencies[COPY].median_ms / 1e3)
            self.bandwidth = max(self.bandwidth or 0.0, bandwidth)

    @property
    def peaks(self) -> list[peak_probe.Peak]:
        return [self._best[key] for key in sorted(self._best, key=lambda k: (k[1], self.precisions.index(k[0])))]


def peaks_at(run: BenchRun, threads: int) -> dict[str, peak_probe.Peak]:
    """``{precision: Peak}`` of ``run``'s roofline at ``threads`` threads (empty without a roofline)."""
    measured = (run.roofline or {}).get("peak_measurements", [])
    return {p["precision"]: peak_probe.Peak.from_dict(p) for p in measured if p["threads"] == threads}


def record(run: BenchRun, config, peaks: Sequence[peak_probe.Peak], bandwidth: float | None = None) -> dict:
    """The ``roofline`` object for ``run``: ``roofline.roofline_record`` over every route that ran, with the op
    counts of ``config`` (the classifier's ``transformers`` config) at each (batch, seq) of the grid, the memory
    roof when ``bandwidth`` (bytes/s, ``peaks.measure_bandwidth()``) is given, and ``kernels``:
    ``{precision: {threads: the kernel that set the peak}}``. Routes of ``EXPORTED_FAMILIES`` are marked as
    running another library's kernels."""
    ops = {(p.batch, p.seq): roofline.model_ops(config, p.batch, p.seq) for p in run.grid}
    measured = {(p.precision, p.threads) for p in peaks}
    latencies = {}
    for row in run.routes:
        if not (row.ok and row.latency) or row.precision not in roofline.ROUTE_PEAK_PRECISION:
            continue
        which = roofline.peak_precision_for(row.precision)
        latencies[row.route] = roofline.RouteLatencies(row.precision, {
            (p.batch, p.seq, p.threads): p.median_ms for p in row.latency if (which, p.threads) in measured},
            row.family in EXPORTED_FAMILIES)
    cache = peak_probe.last_level_cache_bytes() if bandwidth is not None else None
    out = roofline.roofline_record(peaks, ops, latencies, bandwidth, cache)
    kernels: dict[str, dict[str, str]] = {}
    for peak in peaks:
        kernels.setdefault(peak.precision, {})[str(peak.threads)] = peak.kernel
    return {**out, "kernels": kernels}


def rows(run: BenchRun) -> list[dict]:
    """One row per route at the summary point: its peak precision and GOP/s, achieved GOP/s, which roof binds,
    the fraction of the lower ceiling (and why, above 1), and the latency split into the GEMMs at peak and
    everything else (empty when the run has no roofline)."""
    if not run.roofline:
        return []
    b, s, t = summary_point(run)
    label = Point(b, s, t).label
    out = []
    for row in run.routes:
        entry = run.roofline["routes"].get(row.route, {}).get(label)
        if entry is None or latency_at(row, b, s, t) is None:
            continue
        out.append({"route": row.route, "peak": entry["peak_precision"], "peak GOP/s": entry["precision_peak"],
                    "achieved GOP/s": entry["achieved_gops"], "binds": entry.get("binds", "compute"),
                    "fraction of roof": entry["fraction"], "above 1 because": entry.get("above_one_reason"),
                    "GEMMs at peak ms": entry["gemm_ms_at_peak"], "everything else ms": entry["other_ms"]})
    return out


def isa_record(runs: int) -> dict:
    """``isa.isa_sensitivity()`` (subprocesses under ``ONEDNN_MAX_CPU_ISA`` caps) as the results JSON's
    ``isa_sensitivity`` object: ``{"rows": [...]}``, or ``{"error": ...}`` when it cannot run here."""
    from . import isa

    try:
        rows = isa.isa_sensitivity(runs=runs, timeout_s=600.0)
    except (RuntimeError, ValueError) as exc:  # isa.IsaProbeError is a RuntimeError
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
    if rows.skipped:  # not an x86 CPU: the caps do not apply
        return {"error": rows.skipped}
    return {"rows": [row.as_dict() for row in rows]}
