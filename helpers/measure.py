"""Measuring honestly: size on disk, and latency (median and spread), alone or side by side (``round_robin``).

Timings on a shared 2-core machine are noisy. So ``latency`` warms up first, repeats, and reports the median with
the 10th-90th percentile spread and the thread count; compare ratios measured in the same run, not absolute
seconds across machines. To compare models, time them side by side with ``round_robin``: the load of a shared
machine drifts over minutes, so two models timed in different cells can differ by the drift alone.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

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
        threads = f"{self.threads} thread" + ("s" if self.threads != 1 else "")
        return f"{self.median_ms:.2f} ms (p10-p90 {self.band(2)}, {self.runs} runs, {threads})"


def _median_band(values: Sequence[float]) -> tuple[float, float, float]:
    """Median, 10th and 90th percentile of ``values`` (percentiles interpolated linearly between sorted values)."""
    ordered = sorted(float(v) for v in values)

    def percentile(q: float) -> float:
        pos = (len(ordered) - 1) * q
        lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return statistics.median(ordered), percentile(0.1), percentile(0.9)


def _timed_rounds(fns: Sequence[Callable[[], object]], runs: int, warmup: int, threads: int | None,
                  clock: Callable[[], float]) -> tuple[list[list[float]], int]:
    """The one timing loop: ``warmup`` untimed calls of each fn, then ``runs`` rounds timing each fn once (in
    milliseconds), round ``r`` starting at fn ``r mod k`` so each fn takes every position in turn and none always
    runs first. Returns each fn's times, in round order, and the thread count used."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    times: list[list[float]] = [[] for _ in fns]
    with num_threads(threads) as used, torch.inference_mode():
        for _ in range(warmup):
            for fn in fns:
                fn()
        for r in range(runs):
            for j in range(len(fns)):
                i = (r + j) % len(fns)
                start = clock()
                fns[i]()
                times[i].append((clock() - start) * 1e3)
    return times, used


def latency(fn: Callable[[], object], runs: int = 10, warmup: int = 2, threads: int | None = None,
            clock: Callable[[], float] = time.perf_counter) -> Latency:
    """Time ``fn()``: ``warmup`` untimed calls, then ``runs`` timed ones, under ``threads`` torch threads. To compare
    two models, time them together with ``round_robin`` instead of calling this twice."""
    times, used = _timed_rounds([fn], runs, warmup, threads, clock)
    return summarize(times[0], used)


def summarize(times_ms: Sequence[float], threads: int) -> Latency:
    """Median and p10-p90 spread of timings taken elsewhere (in milliseconds), as a ``Latency``."""
    times = list(times_ms)
    if not times:
        raise ValueError("no timings to summarize: time at least one run")
    return Latency(*_median_band(times), len(times), threads)


#: The verdict when a per-round ratio's p10-p90 band contains 1: too close to call either way.
SPANS_ONE = "band spans 1"


def ratio_verdict(p10: float, p90: float) -> str:
    """"faster" when even the slow decile of per-round ratios is above 1, "slower" when even the fast one is below
    1, else ``SPANS_ONE``."""
    return "faster" if p10 > 1 else "slower" if p90 < 1 else SPANS_ONE


@dataclass(frozen=True)
class Speedup:
    """Baseline time / this model's time, one ratio per round (both timed in the same round): > 1 is faster."""
    ratios: tuple[float, ...]
    median: float
    p10: float
    p90: float

    def band(self, digits: int = 2) -> str:
        return f"{self.p10:.{digits}f}-{self.p90:.{digits}f}"

    @property
    def verdict(self) -> str:
        """Says "faster" or "slower" only when the ratio's whole p10-p90 band is on one side of 1 (a median alone
        can land on either side of 1 by noise), else ``SPANS_ONE``."""
        return ratio_verdict(self.p10, self.p90)


@dataclass(frozen=True)
class RoundRobin:
    """Models timed side by side (``round_robin``): each one's ``Latency`` and each one's ``Speedup`` over
    ``baseline``. Per-round ratios cancel the drift of a shared machine, which hits both models of a round alike."""
    latencies: dict[str, Latency]
    baseline: str
    speedups: dict[str, Speedup]

    def verdict(self, name: str) -> str:
        """Says "faster" / "slower" than the baseline when the ratio's p10-p90 band excludes 1, else
        ``SPANS_ONE``; "baseline" for the baseline itself."""
        if name not in self.latencies:
            raise KeyError(f"{name!r} was not timed; the names are {list(self.latencies)}")
        return "baseline" if name == self.baseline else self.speedups[name].verdict

    def versus(self, name: str, other: str) -> Speedup:
        """``name``'s speedup over ``other``, round by round (``other``'s time / ``name``'s in the same round), for a
        comparison between two models neither of which is the baseline (an int8 file against the fastest fp32)."""
        for n in (name, other):
            if n not in self.latencies:
                raise KeyError(f"{n!r} was not timed; the names are {list(self.latencies)}")
        ones = (1.0,) * self.latencies[name].runs
        up, over = self.speedups.get(name), self.speedups.get(other)
        ratios = tuple(a / b for a, b in zip(up.ratios if up else ones, over.ratios if over else ones))
        return Speedup(ratios, *_median_band(ratios))

    def rows(self) -> list[dict]:
        """Rows for ``helpers.tables.show``: latency, speedup over the baseline with its band, verdict, threads."""
        out = []
        for name, lat in self.latencies.items():
            up = self.speedups.get(name)
            out.append({"model": name, "median ms": lat.median_ms, "p10-p90 ms": lat.band(),
                        f"x {self.baseline}": up.median if up else 1.0, "p10-p90 of x": up.band() if up else None,
                        "verdict": self.verdict(name), "threads": lat.threads})
        return out

    def as_dict(self) -> dict:
        return {"baseline": self.baseline, "latency": {name: lat.as_dict() for name, lat in self.latencies.items()},
                "speedup": {name: asdict(up) for name, up in self.speedups.items()}}

    def describe(self) -> str:
        """One line per model against the baseline, computed from the numbers."""
        base = self.latencies[self.baseline]
        lines = [f"{self.baseline} (baseline): {base}"]
        for name, up in self.speedups.items():
            threads = f"{base.threads} thread{'s' if base.threads != 1 else ''}"
            lines.append(f"{name}: {up.median:.2f}x the speed of {self.baseline} (p10-p90 {up.band()}x over "
                         f"{len(up.ratios)} rounds, {threads}): {up.verdict}")
        return "\n".join(lines)


def round_robin(fns: Mapping[str, Callable[[], object]], runs: int = 10, warmup: int = 2, threads: int | None = None,
                baseline: str | None = None, clock: Callable[[], float] = time.perf_counter) -> RoundRobin:
    """Time several zero-argument callables side by side: each round times every one once, in a rotating order.

    Each other model's speedup is the baseline's time divided by its time *in the same round* (``baseline``:
    default the first name), so a load that drifts over the run cancels out. ``clock`` is injectable so tests can
    run on a fake clock."""
    if not fns:
        raise ValueError("nothing to time: pass {name: zero-argument callable}, e.g. {'fp32': lambda: model(x)}")
    names = list(fns)
    baseline = names[0] if baseline is None else baseline
    if baseline not in fns:
        raise ValueError(f"baseline {baseline!r} is not one of the names timed {names}; pass one of them")
    times, used = _timed_rounds([fns[name] for name in names], runs, warmup, threads, clock)
    if min(min(t) for t in times) <= 0:
        raise ValueError("the clock did not advance during a call; pass a clock that ticks (time.perf_counter)")
    by_name = dict(zip(names, times))
    speedups = {}
    for name in names:
        if name != baseline:
            ratios = tuple(b / t for b, t in zip(by_name[baseline], by_name[name]))
            speedups[name] = Speedup(ratios, *_median_band(ratios))
    return RoundRobin({name: summarize(by_name[name], used) for name in names}, baseline, speedups)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()
