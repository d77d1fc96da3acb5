"""Running the bench: every route built, then timed together at each grid point (``measure.round_robin``), in one
process, in one run, then scored on the test split."""

from __future__ import annotations

import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import course, cpu, deprecations, engine, evaluation, finetune, measure, models
from . import ceiling, route_core
from . import routes as routes_mod
from .reading import evaluate_target
from .schema import TARGET, BenchRun, LatencyPoint, Point, RouteResult


def grid(quick: bool, threads: int | None = None) -> list[Point]:
    """The grid. Full: batch {1, 32} x seq {64, 128} x threads {1, all}. Quick: the target point (b32 s128 t1)
    and batch 1 at 1 and all threads (the cheap half of the thread-scaling picture)."""
    n = threads or measure.available_threads()
    thread_counts = sorted({1, n})
    if quick:
        return [TARGET.point] + [Point(1, 128, t) for t in thread_counts]
    return [Point(b, s, t) for t in thread_counts for s in (64, 128) for b in (1, 32)]


def _batch(ctx: route_core.Context, texts: Sequence[str], point: Point) -> dict[str, torch.Tensor]:
    texts = list(texts)
    reps = (point.batch // len(texts)) + 1
    return ctx.encode((texts * reps)[:point.batch], point.seq)


def _tokens(point: Point) -> int:
    return point.batch * point.seq


#: Dynamo's recompile limit while the bench runs. Every route is held at once and each compiled one recompiles per
#: grid shape, and Dynamo counts them all against the same code object (transformers' forward wrapper): at the
#: default of 8 the last compiled routes would silently fall back to eager and be timed as if compiled.
RECOMPILE_LIMIT = 64


class OverBudget(RuntimeError):
    """A route would take longer than the bench's time budget here: recorded as a skipped row with the estimate."""


def _check_budget(budget_s: float | None, seconds_per_token: float | None, tokens: int, calls: int, what: str) -> None:
    """Raise ``OverBudget`` if ``calls`` calls on ``tokens`` tokens, at the last measured speed, exceed the budget."""
    if budget_s is None or seconds_per_token is None:
        return
    predicted = seconds_per_token * tokens * calls
    if predicted > budget_s:
        raise OverBudget(f"too slow on this CPU: {what} would take about {predicted:.1f} s (extrapolated from the "
                         f"last timed call), over the bench's budget of {budget_s:g} s per stage")


def _error(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})" if frame else ""
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}{where}"


def _first_call(built: route_core.Built, batch: dict, threads: int) -> float:
    """One untimed-by-the-rounds call (``torch.compile`` compiles here; runtimes make their per-thread sessions):
    its wall time in seconds."""
    with measure.num_threads(threads), torch.inference_mode():
        start = time.perf_counter()
        built.forward(batch)
        return time.perf_counter() - start


def time_together(forwards: dict[str, Callable[[dict], object]], batch: dict, point: Point, runs: int,
                  warmup: int) -> tuple[measure.RoundRobin | None, dict[str, BaseException]]:
    """Every route's forward at one grid point, timed in the same rounds (``measure.round_robin``, fp32 eager the
    baseline when present), so a machine that slows down mid-run slows every route alike. A route that raises is
    dropped with its exception and the others are timed again; returns the timing (None if none is left) and the
    exceptions by route name."""
    failed: dict[str, BaseException] = {}
    forwards = dict(forwards)
    while forwards:
        running: list[str] = []

        def guarded(name: str, forward: Callable[[dict], object]) -> Callable[[], object]:
            def call():
                running[:] = [name]
                return forward(batch)
            return call

        try:
            return measure.round_robin({name: guarded(name, f) for name, f in forwards.items()}, runs=runs,
                                       warmup=warmup, threads=point.threads,
                                       baseline="fp32" if "fp32" in forwards else None), failed
        except Exception as exc:  # a route's own failure: record it and time the rest
            if not running:
                raise
            failed[running[0]] = exc
            del forwards[running[0]]
    return None, failed


def _fail(row: RouteResult, exc: BaseException, stage: str) -> None:
    skipped = isinstance(exc, OverBudget)
    row.status, row.error, row.stage = ("skipped", str(exc), stage) if skipped else ("failed", _error(exc), stage)


def measure_routes(rows: Sequence[RouteResult], built: dict[str, route_core.Built], ctx: route_core.Context,
                   points: Sequence[Point], test_texts, test_labels, runs: int = 5, warmup: int = 1,
                   eval_batch: int = evaluation.EVAL_BATCH_SIZE, bar=None, budget_s: float | None = None,
                   split: str = "test", probes: ceiling.RoofProbes | None = None) -> None:
    """Latency of every built route at every grid point, the routes timed together point by point (cheapest point
    first, so a slow route is caught before the costly ones); then the evaluation protocol on ``test_texts``
    (``evaluation.predict_logits`` at ``eval_batch`` sentences padded to ``ctx.max_len``, ``evaluation.compare``
    with fp32's logits, fp32 being its own reference). Fills in ``rows`` (one per name in ``built``); a route's
    own failure becomes ``status="failed"`` and, with ``budget_s``, a stage whose time, extrapolated from the
    route's fastest timed call so far, exceeds it is ``status="skipped"`` with the estimate (never fp32's).
    ``probes`` (the roofline's peak kernels and copy) are timed in the same rounds as the routes at every point."""
    by_name = {row.route: row for row in rows}
    alive, seconds_per_token = dict(built), {name: None for name in built}
    for point in sorted(points, key=_tokens):
        batch, ready, first_ms = _batch(ctx, test_texts, point), {}, {}
        for name, b in list(alive.items()):
            row = by_name[name]
            try:
                _check_budget(None if name == "fp32" else budget_s, seconds_per_token[name], _tokens(point),
                              runs + warmup + 1, f"timing {point.label}")
                first_ms[name] = _first_call(b, batch, point.threads) * 1e3
                row.first_call_s = first_ms[name] / 1e3 if row.first_call_s is None else row.first_call_s
                ready[name] = b.forward
            except Exception as exc:
                _fail(row, exc, f"latency {point.label}")
                del alive[name]
        probe_calls = {name: (lambda batch, probe=probe: probe())
                       for name, probe in (probes.callables(point.threads) if probes and ready else {}).items()}
        timing, failed = time_together({**ready, **probe_calls}, batch, point, runs, warmup)
        for name, exc in failed.items():
            if name in probe_calls:  # a probe's failure is the bench's own bug, not a route's
                raise exc
            _fail(by_name[name], exc, f"latency {point.label}")
            del alive[name]
        if timing is not None and set(timing.latencies) - set(probe_calls):
            if probe_calls:
                probes.take(timing, point.threads)
            _record_point(timing, point, first_ms, by_name, seconds_per_token)
        if bar is not None:
            bar.update(1)
    for row in rows:
        row.latency.sort(key=lambda p: list(points).index(p.point))
    reference = None
    for name, b in alive.items():  # fp32 first: every other route is scored against its logits
        row = by_name[name]
        try:
            _check_budget(None if name == "fp32" else budget_s, seconds_per_token[name], len(test_texts) * ctx.max_len,
                          1, f"scoring {len(test_texts)} {split} sentences")
            logits = evaluation.predict_logits(b.forward, ctx.tokenizer, test_texts, ctx.max_len, eval_batch)
        except Exception as exc:
            _fail(row, exc, "evaluation")
            continue
        reference = logits if name == "fp32" else reference
        row.logits, row.predictions = logits, logits.argmax(dim=1)
        row.record_comparison(evaluation.compare(logits if reference is None else reference, logits, test_labels,
                                                 split=split, batch_size=eval_batch))


def _record_point(timing: measure.RoundRobin, point: Point, first_ms: dict[str, float],
                  by_name: dict[str, RouteResult], seconds_per_token: dict[str, float | None]) -> None:
    """Each timed route's ``LatencyPoint``, with its per-round speedups over fp32 eager and over the fastest fp32
    route of the same rounds (median and p10-p90)."""
    fp32s = [name for name in timing.latencies if name in routes_mod.FP32_BASELINES]
    best = min(fp32s, key=lambda name: timing.latencies[name].median_ms) if fp32s else None
    for name, lat in timing.latencies.items():
        if name not in by_name:  # a roofline probe timed in the same rounds
            continue
        up = timing.versus(name, "fp32") if "fp32" in timing.latencies else None
        vs_best = timing.versus(name, best) if best and name != best else None  # not the best against itself
        point_row = LatencyPoint.measured(point, lat, first_call_ms=first_ms[name])
        by_name[name].latency.append(replace(
            point_row, speedup=up and up.median, speedup_p10=up and up.p10, speedup_p90=up and up.p90,
            speedup_vs_best_fp32=vs_best and vs_best.median, vs_best_fp32_p10=vs_best and vs_best.p10,
            vs_best_fp32_p90=vs_best and vs_best.p90))
        speed = lat.median_ms / 1e3 / _tokens(point)
        seconds_per_token[name] = speed if seconds_per_token[name] is None else min(seconds_per_token[name], speed)


def _ratio(reference_ms: float | None, point: LatencyPoint) -> float | None:
    return reference_ms / point.median_ms if reference_ms and point.median_ms > 0 else None


def best_fp32_routes(rows: Sequence[RouteResult]) -> dict[Point, tuple[float, str]]:
    """Per grid point, the fastest fp32 route that ran (``routes.FP32_BASELINES``: eager, torch.compile, ONNX
    Runtime, OpenVINO) as (median ms, route name)."""
    best: dict[Point, tuple[float, str]] = {}
    for row in rows:
        if row.ok and row.route in routes_mod.FP32_BASELINES:
            for p in row.latency:
                if p.point not in best or p.median_ms < best[p.point][0]:
                    best[p.point] = (p.median_ms, row.route)
    return best


def add_ratios(rows: Sequence[RouteResult]) -> dict[str, str]:
    """Fill in each row's two speedups per grid point where the timing left them out (the ratio of medians, over
    fp32 eager and over the best fp32 route of this run),
    size ratio and accuracy change against this run's fp32 row (``None`` where a number is missing), and the
    target rule (``evaluation.meets_target``) for rows scored on the test split. Returns the best fp32 route per
    grid point label."""
    base = next((r for r in rows if r.route == "fp32" and r.ok), None)
    base_lat = {p.point: p.median_ms for p in base.latency} if base else {}
    best = best_fp32_routes(rows)
    for row in rows:
        row.latency = [replace(p, speedup=_ratio(base_lat.get(p.point), p) if p.speedup is None else p.speedup,
                               speedup_vs_best_fp32=_ratio(best.get(p.point, (None, ""))[0], p)
                               if p.speedup_vs_best_fp32 is None else p.speedup_vs_best_fp32)
                       for p in row.latency]
        row.size_ratio = row.size_bytes / base.size_bytes if base and row.size_bytes and base.size_bytes else None
        row.accuracy_change = (row.accuracy - base.accuracy
                               if base and row.accuracy is not None and base.accuracy is not None else None)
        if row.comparison is not None and row.comparison.split != evaluation.VALIDATION:
            row.target_met, row.target_reason = evaluation.meets_target(row.comparison, row.size_ratio)
    return {point.label: name for point, (_, name) in best.items()}


def run_routes(ctx: route_core.Context, test_texts: Sequence[str], test_labels: Sequence[int],
               route_list: Sequence[route_core.Route], points: Sequence[Point], runs: int = 5, warmup: int = 1,
               skipped: Sequence[tuple[route_core.Route, str]] = (), progress: bool = True,
               settings: dict | None = None, features: dict | None = None, budget_s: float | None = None,
               split: str = "test", eval_batch: int = evaluation.EVAL_BATCH_SIZE,
               roofline: bool | ceiling.RoofProbes = False) -> BenchRun:
    """Measure ``route_list`` on every grid point; ``route_list`` must start with fp32 if speedups are wanted.
    ``skipped`` routes become rows with ``status="skipped"`` and the reason, and so does every route whose
    ``needs`` the CPU lacks (``route_core.missing_capability`` on ``features``, default ``helpers.cpu.features()``).
    ``budget_s`` caps each stage of a route (see ``measure_routes``), except fp32 eager's: every comparison needs it.
    ``roofline`` (True, or the ``ceiling.RoofProbes`` to use) times the roofline's probes in the routes' rounds and
    writes ``run.roofline`` from them (``ceiling.record``, with ``ctx.model.config``'s op counts)."""
    from tqdm.auto import tqdm

    if not points:
        raise ValueError("the grid is empty: give at least one Point(batch, seq, threads)")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if len(test_texts) != len(test_labels) or not test_texts:
        raise ValueError(f"need as many test labels as texts (and at least one): {len(test_texts)} texts, "
                         f"{len(test_labels)} labels")
    features = cpu.features() if features is None else features
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.perf_counter()
    rows, built = [], {}
    probes = roofline if isinstance(roofline, ceiling.RoofProbes) else ceiling.RoofProbes() if roofline else None
    with tqdm(total=len(route_list) + len(points), desc="bench", unit="step", disable=not progress) as bar, \
            torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
        for route in route_list:  # build every route first: they are timed together, point by point
            bar.set_postfix_str(f"building {route.name}")
            row = RouteResult.of(route)
            rows.append(row)
            why = route_core.missing_capability(route, features)
            if why is not None:
                row.status, row.error = "skipped", why
            else:
                try:
                    b = route.build(ctx)
                    built[route.name] = b
                    row.size_bytes, row.build_s, row.notes = b.size_bytes, b.build_seconds, b.notes
                except Exception as exc:  # failures are data: record and go on with the next route
                    _fail(row, exc, "build")
            bar.update(1)
        bar.set_postfix_str("timing the routes together")
        measure_routes(rows, built, ctx, points, test_texts, test_labels, runs, warmup, eval_batch, bar=bar,
                       budget_s=budget_s, split=split, probes=probes)
    built.clear()
    routes_mod.release()
    rows += [RouteResult.of(r, status="skipped", error=why) for r, why in skipped]
    best = add_ratios(rows)
    protocol = {"split": split, "examples": len(test_texts), "eval_batch": eval_batch, "padding": models.PADDING,
                "max_len": ctx.max_len, "reference": "fp32", "interval": "Wilson 95%", "paired_test": "exact McNemar",
                "target_rule": evaluation.target_rule_text()}
    run = BenchRun(started, time.perf_counter() - t0, course.environment(),
                   {**(settings or {}), "runs": runs, "warmup": warmup, "test_examples": len(test_texts),
                    "max_len": ctx.max_len, "budget_s": budget_s}, list(points), rows, best_fp32=best,
                   protocol=protocol)
    run.target = evaluate_target(run)
    if probes is not None and probes.peaks:
        run.roofline = ceiling.record(run, ctx.model.config, probes.peaks, bandwidth=probes.bandwidth)
    return run


# --- the bench on the course's classifier ---------------------------------------------------------------------

def settings_for(quick: bool) -> dict:
    """Runs, warm-up, the test examples (``None``: the whole test split, in both modes, as the evaluation protocol
    asks) and the time budget per stage of a route: quick keeps CI short."""
    return {"quick": quick, "runs": 3 if quick else 10, "warmup": 0 if quick else 2, "test_examples": None,
            "budget_s": 300.0 if quick else 1800.0}


def run_classifier(quick: bool = True, smoke: bool | None = None, route_names: Sequence[str] | None = None,
                   runs: int | None = None, test_examples: int | None = None, threads: int | None = None,
                   include_compiled: bool | None = None, progress: bool = True, verbose: bool = True,
                   with_roofline: bool = True, budget_s: float | None = None) -> BenchRun:
    """The bench on the shared fine-tuned classifier (``finetune.load_for_notebook``). ``smoke`` picks the smoke
    or full classifier (default: smoke when ``quick``). Every route is scored on the whole test split (or its first
    ``test_examples``) with the evaluation protocol. Compiled routes are skipped in quick mode unless
    ``include_compiled=True``; routes whose CPU capability is missing are skipped with the reason; ``budget_s``
    (default ``settings_for(quick)["budget_s"]``) caps each stage of a route. ``with_roofline`` times the peaks
    and the copy bandwidth in the same rounds as the routes and writes ``run.roofline``."""
    smoke = quick if smoke is None else smoke
    include_compiled = (not quick) if include_compiled is None else include_compiled
    settings = settings_for(quick)
    n_test = test_examples if test_examples is not None else settings["test_examples"]
    budget_s = settings["budget_s"] if budget_s is None else budget_s
    runs = runs or settings["runs"]
    engine.select_engine()
    if verbose:
        print(course.describe_environment(course.environment()), flush=True)
    clf = finetune.load_for_notebook(smoke, test_examples=n_test, progress=progress)
    ctx = route_core.Context(clf.model, clf.tokenizer, clf.max_len,
                             calibration_texts=clf.splits["train"].head(64).texts, train=clf.splits["train"])
    chosen = routes_mod.select(route_names)
    run_list = [r for r in chosen if include_compiled or not r.compiled]
    skipped = [(r, "skipped in the quick grid: torch.compile takes minutes on 2 cores; `make bench` runs it")
               for r in chosen if r not in run_list]
    points = grid(quick, threads)
    with deprecations.known_silenced():
        return run_routes(ctx, clf.test.texts, clf.test.labels, run_list, points, runs=runs,
                          warmup=settings["warmup"], skipped=skipped, progress=progress, budget_s=budget_s,
                          settings={"quick": quick, "smoke_classifier": smoke,
                                    "classifier": finetune.entry_name(clf.config)},
                          roofline=with_roofline)
