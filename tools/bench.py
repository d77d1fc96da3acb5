"""``make bench``: measure every inference route of the fine-tuned MiniLM classifier in one process, in one run.

    python -m tools.bench                 # the full grid, every route (compiled ones too)
    python -m tools.bench --quick         # the reduced grid for CI; routes that need torch.compile are skipped
    python -m tools.bench --routes fp32,ort-fp32,openvino-int8 --runs 5

The measuring is ``helpers.bench.run_classifier`` (what notebook 06 runs in-process); this command adds the
command line, writes ``build/bench/results.json`` and ``build/bench/results.md`` (both atomically) and prints the
markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from helpers import bench, course, deprecations, results, tables
from helpers.bench import routes
from helpers.paths import atomic_write, build_dir


def to_markdown(run: bench.BenchRun) -> str:
    """The run as a markdown report: environment, one row per route, latency per grid point, target, advice."""
    tgt = run.target
    verdict = ("MET" if tgt.met else "NOT MET") if tgt.evaluated else "NOT EVALUATED"
    lines = [f"# make bench — {run.started} ({'quick' if run.settings.get('quick') else 'full'} grid, "
             f"{run.seconds:.0f} s)", "", "```", course.describe_environment(run.environment), "```", ""]
    if run.protocol:
        pr = run.protocol
        lines += [f"Fidelity: every route scored on {pr['examples']} {pr['split']} sentences, {pr['eval_batch']} per "
                  f"batch padded to {pr['max_len']} tokens, against fp32 ({pr['interval']} intervals, "
                  f"{pr['paired_test']} test). Target rule: {pr['target_rule']}.", ""]
    b, s, t = bench.summary_point(run)
    best = run.best_fp32.get(bench.Point(b, s, t).label)
    lines += ["## Routes", "", f"Speedups at b{b} s{s} t{t}: `speedup ×fp32` against fp32 eager, `× best fp32` "
              f"against the fastest fp32 route of this run ({best or 'none ran'}).", "",
              tables.to_markdown(bench.summary_rows(run)), ""]
    lat = bench.latency_rows(run)
    if lat:
        lines += ["## Latency per grid point", "", tables.to_markdown(lat), ""]
    roof = bench.ceiling.rows(run)
    if roof:
        measured = run.roofline.get("peak_measurements", [])
        peaks = [f"{p['precision']} {p['threads']} thread(s): {p['gops']:.1f} GOP/s ({p['kernel']})" for p in measured]
        same_rounds = measured and all(p.get("same_rounds_as_routes") for p in measured)
        when = "timed in the same rounds as the routes" if same_rounds else "measured in this run"
        bandwidth = run.roofline.get("bandwidth_bytes_s")
        copy = f" Copy bandwidth: {bandwidth / 1e9:.1f} GB/s." if bandwidth else ""
        lines += [f"## Roofline at b{b} s{s} t{t}", "", f"Peaks {when}: " + "; ".join(peaks) + "." + copy, "",
                  tables.to_markdown(roof), ""]
    isa_rows = (run.isa_sensitivity or {}).get("rows")
    if isa_rows:
        lines += ["## int8 over fp32 under ONEDNN_MAX_CPU_ISA caps (one dynamic int8 Linear, onednn engine)", "",
                  tables.to_markdown([{"ONEDNN_MAX_CPU_ISA": r["isa_requested"], "oneDNN reported": r["isa_reported"],
                                       "capped": r["capped"], "int8 kernel": r["int8_kernel"],
                                       "fp32 (MKL) ISA": r.get("fp32_isa"), "fp32 ms": r["fp32_ms"],
                                       "int8 ms": r["int8_ms"], "speedup": r["speedup"]} for r in isa_rows]), ""]
    elif run.isa_sensitivity:
        lines += ["## ONEDNN_MAX_CPU_ISA caps", "", f"Not measured: {run.isa_sensitivity['error']}", ""]
    lines += [f"## Target: {verdict}", "", tgt.reason, "", "## Recommendation", ""]
    lines += [f"- {x}" for x in bench.recommend(run)]
    return "\n".join(lines) + "\n"


def write(run: bench.BenchRun, out_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` atomically into ``out_dir`` (default ``build/bench``)."""
    out = Path(out_dir) if out_dir is not None else build_dir() / "bench"
    json_path, md_path = out / "results.json", out / "results.md"
    with atomic_write(json_path) as tmp:
        tmp.write_text(json.dumps(results.jsonable(run), indent=2))
    with atomic_write(md_path) as tmp:
        tmp.write_text(to_markdown(run))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced grid for CI (compiled routes skipped)")
    parser.add_argument("--routes", default=None,
                        help="comma-separated routes (fp32 is always added); "
                             f"default all: {','.join(routes.registry())}")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per grid point (default 3 quick, 10 full)")
    parser.add_argument("--test-examples", type=int, default=None, help="test examples scored with the evaluation "
                        "protocol (default: the whole test split)")
    parser.add_argument("--budget", type=float, default=None, help="seconds a route's stage may take before it is "
                        "skipped as too slow here (default 300 quick, 1800 full; fp32 eager always runs)")
    parser.add_argument("--no-roofline", dest="with_roofline", action="store_false",
                        help="do not measure the peaks (no roofline object)")
    parser.add_argument("--no-isa", dest="with_isa", action="store_false",
                        help="do not measure int8 under ONEDNN_MAX_CPU_ISA caps (no isa_sensitivity object)")
    parser.add_argument("--threads", type=int, default=None, help="the 'all threads' setting (default: every CPU)")
    parser.add_argument("--compile", dest="include_compiled", action="store_true", default=None,
                        help="run the torch.compile routes even with --quick")
    parser.add_argument("--smoke-classifier", action="store_true", help="use the smoke fine-tune (default: "
                        "smoke with --quick, full otherwise)")
    parser.add_argument("--out", default=None, help="output folder (default build/bench)")
    parser.add_argument("--list", action="store_true", help="list the routes and exit")
    args = parser.parse_args(argv)
    deprecations.silence_import_noise()
    if args.list:
        for r in routes.all_routes():
            print(f"{r.name:27s} {r.precision:17s} {'compiled' if r.compiled else 'eager':9s} {r.description}")
        return 0
    names = [n.strip() for n in args.routes.split(",") if n.strip()] if args.routes is not None else None
    if names is not None:
        if not names:
            parser.error("--routes is empty; give route names separated by commas (see --list)")
        unknown = [n for n in names if n not in routes.registry()]
        if unknown:
            parser.error(f"unknown route(s) {unknown}; see --list for the names")
    for flag, value, low in (("--runs", args.runs, 1), ("--test-examples", args.test_examples, 1),
                             ("--threads", args.threads, 1), ("--budget", args.budget, 1)):
        if value is not None and value < low:
            parser.error(f"{flag} must be >= {low}, got {value}")
    run = bench.run_classifier(quick=args.quick, smoke=True if args.smoke_classifier else None, route_names=names,
                               runs=args.runs, test_examples=args.test_examples, threads=args.threads,
                               include_compiled=args.include_compiled, with_roofline=args.with_roofline,
                               budget_s=args.budget)
    if args.with_isa:
        run.isa_sensitivity = bench.ceiling.isa_record(runs=run.settings["runs"])
    json_path, md_path = write(run, args.out)
    print(to_markdown(run))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
