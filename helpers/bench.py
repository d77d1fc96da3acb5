"""``make bench``: measure every inference route of the fine-tuned MiniLM classifier in one process, in one run.

    python -m helpers.bench                 # the full grid, every route (compiled ones too)
    python -m helpers.bench --quick         # the reduced grid for CI; routes that need torch.compile are skipped
    python -m helpers.bench --routes fp32,bf16,dynamic-int8-x86 --runs 5

For each route (``helpers.routes``): size on disk, latency (median and p10-p90 spread) per grid point (batch,
sequence length, threads), the first call at each grid point timed separately (compilation happens there), test
accuracy, agreement with fp32 and the speedup over fp32 eager *measured in the same run*. A route that fails is a
row with its error message; it never stops the run. The results go to ``build/bench/results.json`` and
``build/bench/results.md`` (both written atomically) and the markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from . import engine, measure, routes as routes_mod, tables
from .paths import atomic_write, build_dir

SCHEMA_VERSION = 1

#: The performance target of issue 7: the fastest int8 route within 0.5 point of fp32 accuracy reaches 3x fp32
#: eager throughput at batch 32, seq 128, 1 thread, with a file at most 0.30x fp32's.
TARGET = {"batch": 32, "seq": 128, "threads": 1, "speedup": 3.0, "max_accuracy_drop": 0.005, "max_size_ratio": 0.30}


@dataclass(frozen=True)
class Point:
    """One grid point: batch size, sequence length (padded), torch/ORT threads."""
    batch: int
    seq: int
    threads: int

    @property
    def label(self) -> str:
        return f"b{self.batch} s{self.seq} t{self.threads}"


def grid(quick: bool, threads: int | None = None) -> list[Point]:
    """The grid. Full: batch {1, 32} x seq {64, 128} x threads {1, all}. Quick: the target point (b32 s128 t1)
    and batch 1 at 1 and all threads (the cheap half of the thread-scaling picture)."""
    n = threads or measure.available_threads()
    thread_counts = sorted({1, n})
    if quick:
        points = [Point(32, 128, 1)] + [Point(1, 128, t) for t in thread_counts]
    else:
        points = [Point(b, s, t) for t in thread_counts for s in (64, 128) for b in (1, 32)]
    return points


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("torchao", "onnxruntime", "transformers"):
        try:
            out[name] = __import__(name).__version__
        except Exception as exc:  # a broken optional package is itself worth reporting
            out[name] = f"unavailable ({type(exc).__name__})"
    return out


def environment() -> dict:
    """What the numbers depend on: versions, CPU features, thread settings, quantized engine."""
    return {"versions": versions(), "cpu": engine.cpu_features(),
            "threads": {"torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads(),
                        "available_cpus": measure.available_threads(), "cpu_count": os.cpu_count(),
                        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
            "quantized_engine": torch.backends.quantized.engine, "platform": platform.platform()}


def describe_environment(env: dict) -> str:
    v, cpu, th = env["versions"], env["cpu"], env["threads"]
    flags = [k for k in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "neon/asimd") if cpu.get(k)]
    return "\n".join([
        " | ".join(f"{k} {val}" for k, val in v.items()),
        f"CPU: {cpu.get('machine')}, torch capability {cpu.get('torch_cpu_capability')}; "
        f"features: {', '.join(flags) or 'none of note'}",
        f"threads: torch intra-op {th['torch_intra_op']}, inter-op {th['torch_inter_op']}, "
        f"{th['available_cpus']} CPUs available, OMP_NUM_THREADS={th['OMP_NUM_THREADS']}",
    ])


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
                reference=None, runs: int = 5, warmup: int = 1, eval_batch: int = 32, bar=None) -> dict:
    """Measure one route; never raises for the route's own failures: they become ``status="failed"`` with
    ``error`` (the exception type, message and where it was raised) and ``stage`` (where the run was)."""
    row = {"route": route.name, "family": route.family, "precision": route.precision, "compiled": route.compiled,
           "description": route.description, "status": "ok", "error": None, "stage": None, "size_bytes": None,
           "build_s": None, "first_call_s": None, "accuracy": None, "agreement": None, "latency": [], "notes": ""}
    stage = "build"
    try:
        built = route.build(ctx)
        row.update(size_bytes=built.size_bytes, build_s=built.build_seconds, notes=built.notes)
        for point in points:
            stage = f"latency {point.label}"
            batch = _batch(ctx, test_texts, point)
            with measure.num_threads(point.threads), torch.inference_mode():
                start = time.perf_counter()
                built.forward(batch)
                first = time.perf_counter() - start
            if row["first_call_s"] is None:
                row["first_call_s"] = first
            lat = measure.latency(lambda: built.forward(batch), runs=runs, warmup=warmup, threads=point.threads)
            row["latency"].append({"batch": point.batch, "seq": point.seq, "threads": point.threads,
                                   "first_call_ms": first * 1e3, **lat.as_dict()})
            if bar is not None:
                bar.update(1)
        stage = "accuracy"
        preds = _predict(built, ctx, test_texts, eval_batch)
        row["accuracy"] = measure.accuracy(preds, test_labels)
        row["agreement"] = measure.agreement(preds, reference) if reference is not None else 1.0
        row["_predictions"] = preds
    except Exception as exc:  # failures are data: record and go on with the next route
        row.update(status="failed", error=_error(exc), stage=stage)
        if bar is not None:
            bar.update(len(points) - len(row["latency"]))
    finally:
        built = None
        routes_mod.release()
    return row


def skipped_row(route: routes_mod.Route, reason: str) -> dict:
    return {"route": route.name, "family": route.family, "precision": route.precision, "compiled": route.compiled,
            "description": route.description, "status": "skipped", "error": reason, "stage": None,
            "size_bytes": None, "build_s": None, "first_call_s": None, "accuracy": None, "agreement": None,
            "latency": [], "notes": ""}


def _add_ratios(rows: list[dict]) -> None:
    """Speedup vs fp32 at each grid point, size ratio and accuracy change, all against this run's fp32 row."""
    base = next((r for r in rows if r["route"] == "fp32" and r["status"] == "ok"), None)
    base_lat = {(p["batch"], p["seq"], p["threads"]): p["median_ms"] for p in base["latency"]} if base else {}
    for row in rows:
        for p in row["latency"]:
            ref = base_lat.get((p["batch"], p["seq"], p["threads"]))
            p["speedup"] = ref / p["median_ms"] if ref and p["median_ms"] > 0 else None
        row["size_ratio"] = (row["size_bytes"] / base["size_bytes"]
                             if base and row["size_bytes"] and base["size_bytes"] else None)
        row["accuracy_change"] = (row["accuracy"] - base["accuracy"]
                                  if base and row["accuracy"] is not None and base["accuracy"] is not None else None)


def run(ctx: routes_mod.Context, test_texts: Sequence[str], test_labels: Sequence[int],
        route_list: Sequence[routes_mod.Route], points: Sequence[Point], runs: int = 5, warmup: int = 1,
        skipped: Sequence[tuple[routes_mod.Route, str]] = (), progress: bool = True, settings: dict | None = None) -> dict:
    """Run the bench; return the results document (see ``SCHEMA_VERSION``). ``route_list`` must start with fp32
    if speedups are wanted. ``skipped`` routes become rows with ``status="skipped"`` and the reason."""
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
            preds = row.pop("_predictions", None)
            if route.name == "fp32" and preds is not None:
                reference = preds
            rows.append(row)
    rows += [skipped_row(r, why) for r, why in skipped]
    _add_ratios(rows)
    doc = {"schema": SCHEMA_VERSION, "started": started, "seconds": time.perf_counter() - t0,
           "environment": environment(), "settings": {**(settings or {}), "runs": runs, "warmup": warmup,
                                                      "test_examples": len(test_texts), "max_len": ctx.max_len},
           "grid": [p.__dict__ for p in points], "routes": rows}
    doc["target"] = evaluate_target(doc)
    return doc


# --- reading the results --------------------------------------------------------------------------------------

def latency_at(row: dict, batch: int, seq: int, threads: int) -> dict | None:
    return next((p for p in row["latency"] if (p["batch"], p["seq"], p["threads"]) == (batch, seq, threads)), None)


def summary_point(doc: dict) -> tuple[int, int, int]:
    """The target point if the grid has it, else the grid's first point."""
    g = [(p["batch"], p["seq"], p["threads"]) for p in doc["grid"]]
    want = (TARGET["batch"], TARGET["seq"], TARGET["threads"])
    return want if want in g else g[0]


def summary_rows(doc: dict) -> list[dict]:
    """One row per route at the summary point (the target point b32 s128 t1 when measured)."""
    b, s, t = summary_point(doc)
    out = []
    for r in doc["routes"]:
        p = latency_at(r, b, s, t) or {}
        out.append({"route": r["route"], "precision": r["precision"], "status": r["status"],
                    "size MB": measure.mb(r["size_bytes"]) if r["size_bytes"] else None,
                    "size ×fp32": r.get("size_ratio"),
                    "accuracy": r["accuracy"], "agreement": r["agreement"],
                    f"ms b{b} s{s} t{t}": p.get("median_ms"), "spread ms": p.get("spread_ms"),
                    "speedup ×fp32": p.get("speedup"),
                    "first call s": r["first_call_s"],
                    "error": (r["error"] or "")[:140] or None})
    return out


def latency_rows(doc: dict) -> list[dict]:
    """One row per measured (route, grid point)."""
    return [{"route": r["route"], "batch": p["batch"], "seq": p["seq"], "threads": p["threads"],
             "median ms": p["median_ms"], "p10 ms": p["p10_ms"], "p90 ms": p["p90_ms"],
             "first call ms": p["first_call_ms"], "speedup ×fp32": p.get("speedup")}
            for r in doc["routes"] for p in r["latency"]]


def pareto_front(doc: dict) -> list[str]:
    """Routes no other route beats on both speed (at the summary point) and accuracy: the ones worth choosing."""
    b, s, t = summary_point(doc)
    pts = [(r["route"], (latency_at(r, b, s, t) or {}).get("speedup"), r["accuracy"])
           for r in doc["routes"] if r["status"] == "ok"]
    pts = [(n, sp, acc) for n, sp, acc in pts if sp is not None and acc is not None]
    return [n for n, sp, acc in pts
            if not any(sp2 >= sp and acc2 >= acc and (sp2 > sp or acc2 > acc) for _, sp2, acc2 in pts)]


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


def evaluate_target(doc: dict) -> dict:
    """Is the target met? The fastest int8 route within 0.5 point of fp32 accuracy, at b32 s128 t1."""
    key = (TARGET["batch"], TARGET["seq"], TARGET["threads"])
    out = {**TARGET, "evaluated": False, "met": False, "route": None, "reason": ""}
    base = next((r for r in doc["routes"] if r["route"] == "fp32" and r["status"] == "ok"), None)
    if base is None:
        return {**out, "reason": "fp32 did not run, so there is nothing to compare with"}
    if latency_at(base, *key) is None:
        return {**out, "reason": f"the grid does not include b{key[0]} s{key[1]} t{key[2]}"}
    candidates = []
    for r in doc["routes"]:
        p = latency_at(r, *key)
        if r["status"] == "ok" and r["precision"].startswith("int8") and p and p.get("speedup") \
                and r["accuracy_change"] is not None and r["accuracy_change"] >= -TARGET["max_accuracy_drop"]:
            candidates.append((p["speedup"], r))
    out["evaluated"] = True
    if not candidates:
        return {**out, "reason": "no int8 route kept accuracy within 0.5 point of fp32"}
    speedup, best = max(candidates, key=lambda c: c[0])
    size_ok = best["size_ratio"] is not None and best["size_ratio"] <= TARGET["max_size_ratio"]
    met = speedup >= TARGET["speedup"] and size_ok
    reason = (f"{best['route']}: {speedup:.2f}x fp32 eager (target {TARGET['speedup']:.1f}x), "
              f"accuracy change {100 * best['accuracy_change']:+.1f} points, size {best['size_ratio']:.2f}x fp32 "
              f"(target <= {TARGET['max_size_ratio']:.2f}x)")
    return {**out, "met": met, "route": best["route"], "speedup": speedup, "size_ratio": best["size_ratio"],
            "accuracy_change": best["accuracy_change"], "reason": reason,
            "target_speedup": TARGET["speedup"]}


def recommend(doc: dict) -> list[str]:
    """A short decision guide computed from the measured table (never typed in)."""
    b, s, t = summary_point(doc)
    ok = [r for r in doc["routes"] if r["status"] == "ok" and latency_at(r, b, s, t)]
    base = next((r for r in ok if r["route"] == "fp32"), None)
    if base is None:
        return ["fp32 did not run, so no route can be compared with it."]
    tol = TARGET["max_accuracy_drop"]
    accurate = [r for r in ok if r["accuracy_change"] is not None and r["accuracy_change"] >= -tol]

    def speed(r):
        return latency_at(r, b, s, t)["speedup"] or 0.0

    def line(label, r):
        return (f"{label}: {r['route']} — {speed(r):.2f}x fp32 at b{b} s{s} t{t}, "
                f"{100 * r['accuracy_change']:+.1f} accuracy points, {r['size_ratio']:.2f}x the fp32 file")

    out = []
    if accurate:
        out.append(line("Fastest within 0.5 point of fp32", max(accurate, key=speed)))
    int8 = [r for r in accurate if r["precision"].startswith("int8")]
    if int8:
        out.append(line("Fastest int8 within 0.5 point", max(int8, key=speed)))
        out.append(line("Smallest file within 0.5 point", min(int8, key=lambda r: (r["size_ratio"], -speed(r)))))
    eager = [r for r in accurate if not r["compiled"] and r["family"] != "onnxruntime"]
    if eager:
        out.append(line("Fastest plain-PyTorch eager route (no compile, no export)", max(eager, key=speed)))
    lossy = [r for r in ok if r["accuracy_change"] is not None and r["accuracy_change"] < -tol]
    if lossy:
        out.append("Lost more than 0.5 point: " + ", ".join(
            f"{r['route']} ({100 * r['accuracy_change']:+.1f})" for r in lossy))
    slow = [r for r in ok if speed(r) < 1.0]
    if slow:
        out.append("Slower than fp32 eager here: " + ", ".join(f"{r['route']} ({speed(r):.2f}x)" for r in slow))
    failed = [r for r in doc["routes"] if r["status"] == "failed"]
    if failed:
        out.append("Failed on this stack (see the error column): " + ", ".join(r["route"] for r in failed))
    return out


# --- writing --------------------------------------------------------------------------------------------------

def to_markdown(doc: dict) -> str:
    tgt = doc["target"]
    verdict = ("MET" if tgt["met"] else "NOT MET") if tgt["evaluated"] else "NOT EVALUATED"
    lines = [f"# make bench — {doc['started']} ({'quick' if doc['settings'].get('quick') else 'full'} grid, "
             f"{doc['seconds']:.0f} s)", "", "```", describe_environment(doc["environment"]), "```", "",
             "## Routes", "", tables.to_markdown(summary_rows(doc)), ""]
    lat = latency_rows(doc)
    if lat:
        lines += ["## Latency per grid point", "", tables.to_markdown(lat), ""]
    lines += [f"## Target: {verdict}", "", tgt["reason"], "", "## Recommendation", ""]
    lines += [f"- {x}" for x in recommend(doc)]
    return "\n".join(lines) + "\n"


def write(doc: dict, out_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` atomically into ``out_dir`` (default ``build/bench``)."""
    out = Path(out_dir) if out_dir is not None else build_dir() / "bench"
    json_path, md_path = out / "results.json", out / "results.md"
    from .results import _jsonable

    with atomic_write(json_path) as tmp:
        tmp.write_text(json.dumps(_jsonable(doc), indent=2))
    with atomic_write(md_path) as tmp:
        tmp.write_text(to_markdown(doc))
    return json_path, md_path


def load(path: str | os.PathLike | None = None) -> dict:
    path = Path(path) if path is not None else build_dir() / "bench" / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no bench results at {path}; run `make bench` (or `make bench QUICK=1`) first")
    doc = json.loads(path.read_text())
    if doc.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema {doc.get('schema')}, this code reads {SCHEMA_VERSION}; rerun make bench")
    return doc


# --- the whole thing ------------------------------------------------------------------------------------------

def settings_for(quick: bool) -> dict:
    """Runs, warm-up and the test subset: quick keeps CI short, full uses the whole test split."""
    return {"quick": quick, "runs": 3 if quick else 10, "warmup": 0 if quick else 2,
            "test_examples": 96 if quick else None}


def run_classifier(quick: bool = True, smoke: bool | None = None, route_names: Sequence[str] | None = None,
                   runs: int | None = None, test_examples: int | None = None, threads: int | None = None,
                   include_compiled: bool | None = None, progress: bool = True, verbose: bool = True) -> dict:
    """The bench on the shared fine-tuned classifier (``finetune.get_classifier``). ``smoke`` picks the smoke or
    full classifier (default: smoke when ``quick``). Compiled routes are skipped in quick mode unless
    ``include_compiled=True``."""
    from . import data, deprecations, finetune

    smoke = quick if smoke is None else smoke
    include_compiled = (not quick) if include_compiled is None else include_compiled
    settings = settings_for(quick)
    runs = runs or settings["runs"]
    n_test = test_examples if test_examples is not None else settings["test_examples"]
    engine.select_engine()
    deprecations.silence_known()
    env = environment()
    if verbose:
        print(describe_environment(env), flush=True)
    model, tokenizer, _ = finetune.get_classifier(finetune.config_for(smoke), progress=progress)
    config = finetune.config_for(smoke)
    splits = data.load_rotten_tomatoes()
    test = splits["test"] if n_test is None else splits["test"].head(n_test)
    ctx = routes_mod.Context(model, tokenizer, config.max_len, calibration_texts=splits["train"].head(64).texts)
    chosen = routes_mod.select(route_names)
    run_list = [r for r in chosen if include_compiled or not r.compiled]
    skipped = [(r, "skipped in the quick grid: torch.compile takes minutes on 2 cores; `make bench` runs it")
               for r in chosen if r not in run_list]
    points = grid(quick, threads)
    doc = run(ctx, test.texts, test.labels, run_list, points, runs=runs, warmup=settings["warmup"],
              skipped=skipped, progress=progress,
              settings={"quick": quick, "smoke_classifier": smoke, "classifier": finetune.entry_dir(config).name})
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced grid for CI (compiled routes skipped)")
    parser.add_argument("--routes", default=None,
                        help=f"comma-separated routes (fp32 is always added); default all: {','.join(routes_mod.registry())}")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per grid point (default 3 quick, 10 full)")
    parser.add_argument("--test-examples", type=int, default=None, help="test examples for accuracy (default 96 "
                        "quick, the whole test split full)")
    parser.add_argument("--threads", type=int, default=None, help="the 'all threads' setting (default: every CPU)")
    parser.add_argument("--compile", dest="include_compiled", action="store_true", default=None,
                        help="run the torch.compile routes even with --quick")
    parser.add_argument("--smoke-classifier", action="store_true", help="use the smoke fine-tune (default: "
                        "smoke with --quick, full otherwise)")
    parser.add_argument("--out", default=None, help="output folder (default build/bench)")
    parser.add_argument("--list", action="store_true", help="list the routes and exit")
    args = parser.parse_args(argv)
    from . import deprecations

    deprecations.silence_import_noise()
    if args.list:
        for r in routes_mod.all_routes():
            print(f"{r.name:27s} {r.precision:17s} {'compiled' if r.compiled else 'eager':9s} {r.description}")
        return 0
    names = [n.strip() for n in args.routes.split(",") if n.strip()] if args.routes is not None else None
    if names is not None:
        if not names:
            parser.error("--routes is empty; give route names separated by commas (see --list)")
        unknown = [n for n in names if n not in routes_mod.registry()]
        if unknown:
            parser.error(f"unknown route(s) {unknown}; see --list for the names")
    for flag, value, low in (("--runs", args.runs, 1), ("--test-examples", args.test_examples, 1),
                             ("--threads", args.threads, 1)):
        if value is not None and value < low:
            parser.error(f"{flag} must be >= {low}, got {value}")
    doc = run_classifier(quick=args.quick, smoke=True if args.smoke_classifier else None, route_names=names,
                         runs=args.runs, test_examples=args.test_examples, threads=args.threads,
                         include_compiled=args.include_compiled)
    json_path, md_path = write(doc, args.out)
    print(to_markdown(doc))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
