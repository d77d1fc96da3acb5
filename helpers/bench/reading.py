"""Reading a bench run: table rows, the Pareto front, the target verdict and the recommendation, all computed from
the measured ``BenchRun`` (never typed in)."""

from __future__ import annotations

from .. import measure
from .schema import TARGET, BenchRun, LatencyPoint, Point, RouteResult, Target, TargetVerdict


def latency_at(row: RouteResult, batch: int, seq: int, threads: int) -> LatencyPoint | None:
    return next((p for p in row.latency if p.point == Point(batch, seq, threads)), None)


def summary_point(run: BenchRun) -> tuple[int, int, int]:
    """The target point if the grid has it, else the grid's first point."""
    point = TARGET.point if TARGET.point in run.grid else run.grid[0]
    return point.batch, point.seq, point.threads


def summary_rows(run: BenchRun) -> list[dict]:
    """One table row per route at the summary point (the target point b32 s128 t1 when measured)."""
    b, s, t = summary_point(run)
    out = []
    for r in run.routes:
        p = latency_at(r, b, s, t)
        out.append({"route": r.route, "precision": r.precision, "status": r.status,
                    "size MB": measure.mb(r.size_bytes) if r.size_bytes else None, "size ×fp32": r.size_ratio,
                    "accuracy": r.accuracy, "agreement": r.agreement,
                    f"ms b{b} s{s} t{t}": p.median_ms if p else None, "spread ms": p.spread_ms if p else None,
                    "speedup ×fp32": p.speedup if p else None, "first call s": r.first_call_s,
                    "error": (r.error or "")[:140] or None})
    return out


def latency_rows(run: BenchRun) -> list[dict]:
    """One table row per measured (route, grid point)."""
    return [{"route": r.route, "batch": p.batch, "seq": p.seq, "threads": p.threads, "median ms": p.median_ms,
             "p10 ms": p.p10_ms, "p90 ms": p.p90_ms, "first call ms": p.first_call_ms, "speedup ×fp32": p.speedup}
            for r in run.routes for p in r.latency]


def pareto_front(run: BenchRun) -> list[str]:
    """Routes no other route beats on both speed (at the summary point) and accuracy: the ones worth choosing."""
    b, s, t = summary_point(run)
    pts = []
    for r in run.routes:
        p = latency_at(r, b, s, t)
        if r.ok and p is not None and p.speedup is not None and r.accuracy is not None:
            pts.append((r.route, p.speedup, r.accuracy))
    return [n for n, sp, acc in pts
            if not any(sp2 >= sp and acc2 >= acc and (sp2 > sp or acc2 > acc) for _, sp2, acc2 in pts)]


def _within_band(row: RouteResult, target: Target = TARGET) -> bool:
    return row.accuracy_change is not None and row.accuracy_change >= -target.max_accuracy_drop


def evaluate_target(run: BenchRun, target: Target = TARGET) -> TargetVerdict:
    """Is ``target`` met? The fastest int8 route within the accuracy band of fp32, at the target point."""
    key = (target.batch, target.seq, target.threads)
    if run.baseline is None:
        return TargetVerdict(target, reason="fp32 did not run, so there is nothing to compare with")
    if latency_at(run.baseline, *key) is None:
        return TargetVerdict(target, reason=f"the grid does not include {target.point.label}")
    candidates = []
    for r in run.routes:
        p = latency_at(r, *key)
        if r.ok and r.is_int8 and p is not None and p.speedup and _within_band(r, target):
            candidates.append((p.speedup, r))
    if not candidates:
        return TargetVerdict(target, evaluated=True, reason=f"no int8 route kept accuracy within {target.band} of fp32")
    speedup, best = max(candidates, key=lambda c: c[0])
    size_ok = best.size_ratio is not None and best.size_ratio <= target.max_size_ratio
    reason = (f"{best.route}: {speedup:.2f}x fp32 eager (target {target.speedup:.1f}x), "
              f"accuracy change {100 * best.accuracy_change:+.1f} points, size {best.size_ratio:.2f}x fp32 "
              f"(target <= {target.max_size_ratio:.2f}x)")
    return TargetVerdict(target, True, speedup >= target.speedup and size_ok, best.route, reason, speedup,
                         best.size_ratio, best.accuracy_change)


def recommend(run: BenchRun, target: Target = TARGET) -> list[str]:
    """A short decision guide computed from the measured table (never typed in); "accurate" means within
    ``target``'s accuracy band of fp32."""
    b, s, t = summary_point(run)
    ok = [r for r in run.routes if r.ok and latency_at(r, b, s, t)]
    if not any(r.route == "fp32" for r in ok):
        return ["fp32 did not run, so no route can be compared with it."]
    band = target.band
    accurate = [r for r in ok if _within_band(r, target)]

    def speed(r):
        return latency_at(r, b, s, t).speedup or 0.0

    def line(label, r):
        return (f"{label}: {r.route} — {speed(r):.2f}x fp32 at b{b} s{s} t{t}, "
                f"{100 * r.accuracy_change:+.1f} accuracy points, {r.size_ratio:.2f}x the fp32 file")

    out = []
    if accurate:
        out.append(line(f"Fastest within {band} of fp32", max(accurate, key=speed)))
    int8 = [r for r in accurate if r.is_int8]
    if int8:
        out.append(line(f"Fastest int8 within {band}", max(int8, key=speed)))
        out.append(line(f"Smallest file within {band}", min(int8, key=lambda r: (r.size_ratio, -speed(r)))))
    eager = [r for r in accurate if not r.compiled and r.family != "onnxruntime"]
    if eager:
        out.append(line("Fastest plain-PyTorch eager route (no compile, no export)", max(eager, key=speed)))
    lossy = [r for r in ok if r.accuracy_change is not None and not _within_band(r, target)]
    if lossy:
        out.append(f"Lost more than {band}: " + ", ".join(f"{r.route} ({100 * r.accuracy_change:+.1f})" for r in lossy))
    slow = [r for r in ok if speed(r) < 1.0]
    if slow:
        out.append("Slower than fp32 eager here: " + ", ".join(f"{r.route} ({speed(r):.2f}x)" for r in slow))
    failed = [r.route for r in run.routes if r.status == "failed"]
    if failed:
        out.append("Failed on this stack (see the error column): " + ", ".join(failed))
    return out
