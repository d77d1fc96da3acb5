"""Running the bench: every route measured on one grid, in one process, in one run."""

from __future__ import annotations

import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from .. import course, data, deprecations, engine, evaluation, finetune, measure, routes as routes_mod
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


def _batch(ctx: routes_mod.Context, texts: Sequence[str], point: Point) -> dict[str, torch.Tensor]:
    texts = list(texts)
    reps = (point.batch // len(texts)) + 1
    return ctx.encode((texts * reps)[:point.batch], point.seq)


def _predict(built: routes_mod.Built, ctx: routes_mod.Context, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            out.append(built.forward(ctx.encode(texts[i:i + batch_size], ctx.max_len)).argmax(dim=1))
    return torch.cat(out)


def _error(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})" if frame else ""
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}{where}"


def bench_route(route: routes_mod.Route, ctx: routes_mod.Context, points: Sequence[Point], test_texts, test_labels,
                reference=None, runs: int = 5, warmup: int = 1, eval_batch: int = evaluation.EVAL_BATCH_SIZE,
                bar=None) -> RouteResult:
    """Measure one route; never raises for the route's own failures: they become ``status="failed"``."""
    row = RouteResult.of(route)
    stage = "build"
    try:
        built = route.build(ctx)
        row.size_bytes, row.build_s, row.notes = built.size_bytes, built.build_seconds, built.notes
        for point in points:
            stage = f"latency {point.label}"
            batch = _batch(ctx, test_texts, point)
            with measure.num_threads(point.threads), torch.inference_mode():
                start = time.perf_counter()
                built.forward(batch)
                first = time.perf_counter() - start
            if row.first_call_s is None:
                row.first_call_s = first
            lat = measure.latency(lambda: built.forward(batch), runs=runs, warmup=warmup, threads=point.threads)
            row.latency.append(LatencyPoint.measured(point, lat, first_call_ms=first * 1e3))
            if bar is not None:
                bar.update(1)
        stage = "accuracy"
        row.predictions = _predict(built, ctx, test_texts, eval_batch)
        row.accuracy = measure.accuracy(row.predictions, test_labels)
        row.agreement = measure.agreement(row.predictions, reference) if reference is not None else 1.0
    except Exception as exc:  # failures are data: record and go on with the next route
        row.status, row.error, row.stage = "failed", _error(exc), stage
        if bar is not None:
            bar.update(len(points) - len(row.latency))
    finally:
        built = None
        routes_mod.release()
    return row


def add_ratios(rows: Sequence[RouteResult]) -> None:
    """Fill in each row's speedup per grid point, size ratio and accuracy change, all against this run's fp32
    row (left ``None`` where fp32 or the row lacks the number)."""
    base = next((r for r in rows if r.route == "fp32" and r.ok), None)
    base_lat = {p.point: p.median_ms for p in base.latency} if base else {}
    def speedup(p: LatencyPoint) -> float | None:
        ref = base_lat.get(p.point)
        return ref / p.median_ms if ref and p.median_ms > 0 else None

    for row in rows:
        row.latency = [replace(p, speedup=speedup(p)) for p in row.latency]
        row.size_ratio = row.size_bytes / base.size_bytes if base and row.size_bytes and base.size_bytes else None
        row.accuracy_change = (row.accuracy - base.accuracy
                               if base and row.accuracy is not None and base.accuracy is not None else None)


def run_routes(ctx: routes_mod.Context, test_texts: Sequence[str], test_labels: Sequence[int],
               route_list: Sequence[routes_mod.Route], points: Sequence[Point], runs: int = 5, warmup: int = 1,
               skipped: Sequence[tuple[routes_mod.Route, str]] = (), progress: bool = True,
               settings: dict | None = None) -> BenchRun:
    """Measure ``route_list`` on every grid point; ``route_list`` must start with fp32 if speedups are wanted.
    ``skipped`` routes become rows with ``status="skipped"`` and the reason."""
    from tqdm.auto import tqdm

    if not points:
        raise ValueError("the grid is empty: give at least one Point(batch, seq, threads)")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if len(test_texts) != len(test_labels) or not test_texts:
        raise ValueError(f"need as many test labels as texts (and at least one): {len(test_texts)} texts, "
                         f"{len(test_labels)} labels")
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.perf_counter()
    rows, reference = [], None
    with tqdm(total=len(route_list) * len(points), desc="bench", unit="point", disable=not progress) as bar:
        for route in route_list:
            bar.set_postfix_str(route.name)
            row = bench_route(route, ctx, points, test_texts, test_labels, reference, runs, warmup, bar=bar)
            if route.name == "fp32" and row.predictions is not None:
                reference = row.predictions
            rows.append(row)
    rows += [RouteResult.of(r, status="skipped", error=why) for r, why in skipped]
    add_ratios(rows)
    run = BenchRun(started, time.perf_counter() - t0, course.environment(),
                   {**(settings or {}), "runs": runs, "warmup": warmup, "test_examples": len(test_texts),
                    "max_len": ctx.max_len}, list(points), rows)
    run.target = evaluate_target(run)
    return run


def profile_ops(route: routes_mod.Route, ctx: routes_mod.Context, texts: Sequence[str], point: Point,
                top: int = 8) -> list[dict]:
    """Where one call's time goes: the operators with the most self CPU time (``torch.profiler``), after a warm-up
    call. Kernel names show which int8/bf16 paths actually ran."""
    from torch.profiler import ProfilerActivity, profile

    built = route.build(ctx)
    batch = _batch(ctx, texts, point)
    with measure.num_threads(point.threads), torch.inference_mode():
        built.forward(batch)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            built.forward(batch)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    routes_mod.release()
    return [{"route": route.name, "operator": e.key, "calls": e.count, "self ms": e.self_cpu_time_total / 1e3,
             "share": e.self_cpu_time_total / total} for e in events[:top]]


# --- the bench on the course's classifier ---------------------------------------------------------------------

def settings_for(quick: bool) -> dict:
    """Runs, warm-up and the test subset: quick keeps CI short, full uses the whole test split."""
    return {"quick": quick, "runs": 3 if quick else 10, "warmup": 0 if quick else 2,
            "test_examples": 96 if quick else None}


def run_classifier(quick: bool = True, smoke: bool | None = None, route_names: Sequence[str] | None = None,
                   runs: int | None = None, test_examples: int | None = None, threads: int | None = None,
                   include_compiled: bool | None = None, progress: bool = True, verbose: bool = True) -> BenchRun:
    """The bench on the shared fine-tuned classifier (``finetune.get_classifier``). ``smoke`` picks the smoke or
    full classifier (default: smoke when ``quick``). Compiled routes are skipped in quick mode unless
    ``include_compiled=True``."""
    smoke = quick if smoke is None else smoke
    include_compiled = (not quick) if include_compiled is None else include_compiled
    settings = settings_for(quick)
    n_test = test_examples if test_examples is not None else settings["test_examples"]
    engine.select_engine()
    deprecations.silence_known()
    if verbose:
        print(course.describe_environment(course.environment()), flush=True)
    config = finetune.config_for(smoke)
    model, tokenizer, _ = finetune.get_classifier(config, progress=progress)
    splits = data.load_rotten_tomatoes()
    test = splits["test"] if n_test is None else splits["test"].head(n_test)
    ctx = routes_mod.Context(model, tokenizer, config.max_len, calibration_texts=splits["train"].head(64).texts)
    chosen = routes_mod.select(route_names)
    run_list = [r for r in chosen if include_compiled or not r.compiled]
    skipped = [(r, "skipped in the quick grid: torch.compile takes minutes on 2 cores; `make bench` runs it")
               for r in chosen if r not in run_list]
    return run_routes(ctx, test.texts, test.labels, run_list, grid(quick, threads), runs=runs or settings["runs"],
                      warmup=settings["warmup"], skipped=skipped, progress=progress,
                      settings={"quick": quick, "smoke_classifier": smoke, "classifier": finetune.entry_dir(config).name})
