"""Reading a bench run: table rows, the target verdict and the recommendation, all computed from
the measured ``BenchRun`` (never typed in)."""

from __future__ import annotations

from .. import measure
from .schema import TARGET, BenchRun, LatencyPoint, Point, RouteResult, Target, TargetVerdict

#: Route families that run the model in another runtime (exported), not in PyTorch.
EXPORTED_FAMILIES = ("onnxruntime", "openvino")


def latency_at(row: RouteResult, batch: int, seq: int, threads: int) -> LatencyPoint | None:
    return next((p for p in row.latency if p.point == Point(batch, seq, threads)), None)


def summary_point(run: BenchRun) -> tuple[int, int, int]:
    """The target point if the grid has it, else the grid's first point."""
    point = TARGET.point if TARGET.point in run.grid else run.grid[0]
    return point.batch, point.seq, point.threads


def roofline_fraction(run: BenchRun, route: str, point: Point) -> float | None:
    """The route's achieved performance over the lower of its ceilings at ``point`` (the peak of its precision,
    or the memory roof when the run measured bandwidth), from ``run.roofline`` (None when the run has no roofline
    or the route no latency there)."""
    entry = ((run.roofline or {}).get("routes", {}).get(route) or {}).get(point.label)
    return entry["fraction"] if entry else None


def summary_rows(run: BenchRun) -> list[dict]:
    """One table row per route at the summary point (the target point b32 s128 t1 when measured): size, the
    protocol's fidelity (agreement and accuracy with 95% intervals, McNemar's p), the target rule, latency, the two
    speedups (vs fp32 eager and vs the best fp32 route of this run) and the fraction of the roofline."""
    b, s, t = summary_point(run)
    out = []
    for r in run.routes:
        p = latency_at(r, b, s, t)
        out.append({"route": r.route, "precision": r.precision, "status": r.status,
                    "size MB": measure.mb(r.size_bytes) if r.size_bytes else None, "size ×fp32": r.size_ratio,
                    "accuracy": r.accuracy, "agreement": r.agreement,
                    "agreement 95% CI": _interval(r.agreement_low, r.agreement_high),
                    "accuracy 95% CI": _interval(r.accuracy_low, r.accuracy_high), "McNemar p": r.mcnemar_p,
                    "target rule": None if r.target_met is None else ("pass" if r.target_met else "fail"),
                    f"ms b{b} s{s} t{t}": p.median_ms if p else None, "spread ms": p.spread_ms if p else None,
                    "speedup ×fp32": p.speedup if p else None,
                    "× best fp32": p.speedup_vs_best_fp32 if p else None,
                    "roofline fraction": roofline_fraction(run, r.route, Point(b, s, t)),
                    "first call s": r.first_call_s, "error": (r.error or "")[:140] or None})
    return out


def _interval(low: float | None, high: float | None) -> str | None:
    return None if low is None or high is None else f"{low:.3f}–{high:.3f}"


def latency_rows(run: BenchRun) -> list[dict]:
    """One table row per measured (route, grid point)."""
    return [{"route": r.route, "batch": p.batch, "seq": p.seq, "threads": p.threads, "median ms": p.median_ms,
             "p10 ms": p.p10_ms, "p90 ms": p.p90_ms, "first call ms": p.first_call_ms, "speedup ×fp32": p.speedup,
             "× best fp32": p.speedup_vs_best_fp32, "best fp32 route": run.best_fp32.get(p.point.label),
             "roofline fraction": roofline_fraction(run, r.route, p.point)}
            for r in run.routes for p in r.latency]


def _faithful(row: RouteResult, target: Target = TARGET) -> bool:
    """Agreement with fp32 on test at least the target's (the fidelity half of the rule; size is the other)."""
    return row.agreement is not None and row.agreement >= target.min_agreement


def evaluate_target(run: BenchRun, target: Target = TARGET) -> TargetVerdict:
    """Is ``target`` met? Among the int8 routes that pass the course's rule (``evaluation.meets_target``: agreement
    and size, recorded per route as ``target_met``), the fastest at the target point, and its two speedups."""
    key = (target.batch, target.seq, target.threads)
    if run.baseline is None:
        return TargetVerdict(target, reason="fp32 did not run, so there is nothing to compare with")
    if latency_at(run.baseline, *key) is None:
        return TargetVerdict(target, reason=f"the grid does not include {target.point.label}")
    candidates = []
    for r in run.routes:
        p = latency_at(r, *key)
        if r.ok and r.is_int8 and p is not None and p.speedup and r.target_met:
            candidates.append((p.speedup, r, p))
    if not candidates:
        return TargetVerdict(target, evaluated=True, reason=f"no int8 route passed the rule: {target.band} on the "
                             f"test split and a file <= {target.max_size_ratio:.2f}x fp32's")
    speedup, best, p = max(candidates, key=lambda c: c[0])
    versus_best = p.speedup_vs_best_fp32
    fast = speedup >= target.speedup and versus_best is not None and versus_best >= target.speedup_vs_best_fp32
    best_fp32 = run.best_fp32.get(target.point.label)
    versus_text = "n/a" if versus_best is None else f"{versus_best:.2f}x"
    reason = (f"{best.route}: {speedup:.2f}x fp32 eager (target {target.speedup:.1f}x), {versus_text} the best fp32 "
              f"route {best_fp32} (target {target.speedup_vs_best_fp32:.1f}x); {best.target_reason}")
    return TargetVerdict(target, True, fast, best.route, reason, speedup, best.size_ratio, best.accuracy_change,
                         versus_best, best.agreement, best_fp32)


def recommend(run: BenchRun, target: Target = TARGET) -> list[str]:
    """A short decision guide computed from the measured table (never typed in); "faithful" means agreement with
    fp32 on test of at least ``target.min_agreement``."""
    b, s, t = summary_point(run)
    ok = [r for r in run.routes if r.ok and latency_at(r, b, s, t)]
    if not any(r.route == "fp32" for r in ok):
        return ["fp32 did not run, so no route can be compared with it."]
    band = target.band
    accurate = [r for r in ok if _faithful(r, target)]

    def speed(r):
        return latency_at(r, b, s, t).speedup or 0.0

    def line(label, r):
        versus = latency_at(r, b, s, t).speedup_vs_best_fp32
        versus_text = "" if versus is None else f" ({versus:.2f}x the best fp32 route)"
        return (f"{label}: {r.route} — {speed(r):.2f}x fp32 eager{versus_text} at b{b} s{s} t{t}, agreement "
                f"{r.agreement:.3f}, {100 * r.accuracy_change:+.1f} accuracy points, {r.size_ratio:.2f}x the fp32 file")

    out = []
    if accurate:
        out.append(line(f"Fastest with {band}", max(accurate, key=speed)))
    int8 = [r for r in accurate if r.is_int8]
    if int8:
        out.append(line(f"Fastest int8 with {band}", max(int8, key=speed)))
        out.append(line(f"Smallest file with {band}", min(int8, key=lambda r: (r.size_ratio, -speed(r)))))
    eager = [r for r in accurate if not r.compiled and r.family not in EXPORTED_FAMILIES]
    if eager:
        out.append(line("Fastest plain-PyTorch eager route (no compile, no export)", max(eager, key=speed)))
    lossy = [r for r in ok if r.agreement is not None and not _faithful(r, target)]
    if lossy:
        out.append(f"Agreement below {target.min_agreement:.2f}: "
                   + ", ".join(f"{r.route} ({r.agreement:.4f})" for r in lossy))
    slow = [r for r in ok if speed(r) < 1.0]
    if slow:
        out.append("Slower than fp32 eager here: " + ", ".join(f"{r.route} ({speed(r):.2f}x)" for r in slow))
    failed = [r.route for r in run.routes if r.status == "failed"]
    if failed:
        out.append("Failed on this stack (see the error column): " + ", ".join(failed))
    skipped = [r.route for r in run.routes if r.status == "skipped"]
    if skipped:
        out.append("Skipped here (the error column says why): " + ", ".join(skipped))
    return out
