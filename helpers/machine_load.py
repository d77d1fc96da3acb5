"""How busy the machine is right now, so a timing is never recorded on a busy machine without saying so.

Two readings, because each misses something the other sees:

- the **1-minute load average** (``os.getloadavg``: runnable tasks, averaged), set against the CPUs torch uses.
  It sees another job that runs all the time, but lags a minute behind. Windows has no load average: the reading
  is then "unknown", never guessed.
- the **spread of a calibration kernel**: a fixed fp32 ``torch.mm`` timed ``CALIBRATION_REPEATS`` times (about
  0.2-0.5 s), the interquartile range over the median. It sees contention right now, whoever causes it.

Our own work is in the load average too: the setup cell's kernel has just imported torch, and ``make outputs``
has just run the previous notebook on every thread. ``measure_load`` therefore subtracts an estimate of our own
share (``own_load``, see ``own_share``) before comparing, and reads the load average before it runs the
calibration kernel, so the kernel does not count itself.

    reading = machine_load.measure_load()
    if reading.busy:
        print(reading.reason)
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from . import measure

#: Busy above this many runnable tasks per CPU torch uses, besides our own. An idle desktop or CI machine sits
#: below about 0.1 per CPU; one other job that keeps a core busy is 0.25 per CPU on 4 CPUs and 0.5 on 2, and it
#: already takes a whole core from a timing that runs on all threads (the slowest thread sets the pace).
LOAD_PER_CPU_LIMIT = 0.25
#: Busy above this relative spread (interquartile range / median) of the calibration kernel. On a quiet 2-vCPU VM
#: a fixed 6-10 ms matmul's quartiles sit within about 5-16% of the median (the p10-p90 band is wider, up to ~40%,
#: from single descheduled repeats, which is why quartiles are used); when another job shares the cores most repeats
#: wait for a time slice and the quartiles spread to several times that.
SPREAD_LIMIT = 0.25
#: The time constant, in seconds, of the kernel's 1-minute load average (an exponentially damped average).
LOAD_TIME_CONSTANT_S = 60.0
#: The calibration kernel: one fixed fp32 matmul (about 0.9 GFLOP, ~10 ms on a laptop core), repeated.
CALIBRATION_SIZE = 768
CALIBRATION_REPEATS = 15


@dataclass(frozen=True)
class MachineLoad:
    """One reading of how busy the machine is; ``busy`` and ``reason`` say whether a timing taken now is trustworthy."""

    load_1min: float | None      # the raw 1-minute load average; None where the OS has none (Windows)
    own_load: float              # our own estimated share of it, subtracted before comparing
    threads: int                 # the CPUs torch uses, the denominator of ``load_per_cpu``
    load_per_cpu: float | None   # (load_1min - own_load) / threads, at least 0; None when the load is unknown
    kernel_median_ms: float      # the calibration kernel's median time
    spread: float                # its interquartile range / median
    busy: bool
    reason: str                  # which reading crossed which limit, with the numbers (or why it counts as quiet)

    def describe(self) -> str:
        """One line: both readings and the verdict."""
        load = ("load average unknown (this OS has none)" if self.load_1min is None else
                f"load {self.load_per_cpu:.2f} per CPU ({self.load_1min:.2f} over {self.threads} CPUs, "
                f"{self.own_load:.2f} of it ours)")
        return (f"{'busy' if self.busy else 'quiet'}: {load}, calibration spread {self.spread:.0%} of "
                f"{self.kernel_median_ms:.1f} ms")

    def as_dict(self) -> dict:
        return asdict(self)


def own_share(cpu_seconds: float, wall_seconds: float | None = None, ended_ago: float = 0.0) -> float:
    """Our own work's share of the 1-minute load average now: ``cpu_seconds`` of CPU time spent over
    ``wall_seconds`` that ended ``ended_ago`` seconds ago.

    The load average damps each moment's runnable tasks by ``exp(-age / 60 s)``, so work at a constant rate
    ``r = cpu_seconds / wall_seconds`` adds ``r * (exp(-ended_ago / 60) - exp(-(ended_ago + wall_seconds) / 60))``.
    Without ``wall_seconds`` (the work's timing is unknown) this is the upper bound ``cpu_seconds / 60``: lenient
    for a long-lived process, which then leans on the calibration spread."""
    tau = LOAD_TIME_CONSTANT_S
    if cpu_seconds <= 0:
        return 0.0
    if not wall_seconds:
        return cpu_seconds / tau
    rate = cpu_seconds / wall_seconds
    return rate * (math.exp(-ended_ago / tau) - math.exp(-(ended_ago + wall_seconds) / tau))


def calibration_kernel(size: int = CALIBRATION_SIZE) -> Callable[[], object]:
    """A fixed fp32 ``torch.mm`` of two ``size`` x ``size`` matrices (fixed seed, so every run times the same work)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=gen), torch.randn(size, size, generator=gen)
    return lambda: torch.mm(a, b)


def _system_load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no getloadavg; some sandboxes refuse to read it
        return None


def measure_load(threads: int | None = None, own_load: float | None = None, *,
                 read_load: Callable[[], float | None] = _system_load, kernel: Callable[[], object] | None = None,
                 clock: Callable[[], float] = time.perf_counter, repeats: int = CALIBRATION_REPEATS) -> MachineLoad:
    """Read the 1-minute load average against ``threads`` (default: torch's thread count), then time the
    calibration kernel on those threads.

    ``own_load`` is our own share of the load average (default: this process's CPU time so far, through
    ``own_share``); ``make outputs`` passes the share of the notebooks it has just run. ``read_load`` (returns the
    1-minute load or None), ``kernel`` and ``clock`` are the outside world, replaceable in tests."""
    threads = threads or torch.get_num_threads()
    if threads < 1 or repeats < 3:
        raise ValueError(f"need threads >= 1 and repeats >= 3 for a spread, got threads={threads}, repeats={repeats}")
    load_1min = read_load()  # before the kernel runs, so the kernel does not count itself
    own = min(float(threads), own_share(time.process_time()) if own_load is None else max(0.0, own_load))
    kernel = kernel or calibration_kernel()
    times_ms = []
    with measure.num_threads(threads):
        kernel()  # warm-up: first-call allocations and thread-pool start
        for _ in range(repeats):
            start = clock()
            kernel()
            times_ms.append((clock() - start) * 1e3)
    q1, median_ms, q3 = statistics.quantiles(times_ms, n=4, method="inclusive")
    spread = (q3 - q1) / median_ms if median_ms > 0 else 0.0
    per_cpu = None if load_1min is None else max(0.0, load_1min - own) / threads
    crossed = []
    if per_cpu is not None and per_cpu > LOAD_PER_CPU_LIMIT:
        crossed.append(f"load average {per_cpu:.2f} per CPU besides ours ({load_1min:.2f} over {threads} CPUs, "
                       f"{own:.2f} ours) > {LOAD_PER_CPU_LIMIT}")
    if spread > SPREAD_LIMIT:
        crossed.append(f"calibration matmul spread {spread:.0%} of its {median_ms:.1f} ms median "
                       f"> {SPREAD_LIMIT:.0%}")
    reason = "; ".join(crossed) or (
        f"load {'unknown' if per_cpu is None else f'{per_cpu:.2f} per CPU'} <= {LOAD_PER_CPU_LIMIT}, "
        f"calibration spread {spread:.0%} <= {SPREAD_LIMIT:.0%}")
    return MachineLoad(load_1min, own, threads, per_cpu, median_ms, spread, bool(crossed), reason)

