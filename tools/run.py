"""``make run``: execute every notebook headless with papermill, time it, and build ``build/index.html``.

    python -m tools.run            # smoke settings (the default, what CI uses)
    python -m tools.run --full     # full workshop settings
    python -m tools.run 01 03      # only notebooks whose name starts with these prefixes
    python -m tools.run --in-place --full [--force]   # ``make outputs FULL=1``: refresh the committed outputs

In place, each notebook is recorded only on a quiet machine (``helpers.machine_load``; ``--force`` records anyway
and says so), gets a run id in its metadata (``metadata.int8_course``) that its results JSON carries too, and its
results JSON and wall time are copied to ``notebooks/results/``, committed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

from helpers import machine_load, results, tables
from helpers.paths import atomic_write, build_dir, course_notebooks, notebooks_dir

from . import report


def execute(notebook: Path, out_dir: Path, full: bool, kernel: str | None, run_id: str | None = None) -> float:
    """Run one notebook with papermill into ``out_dir``.

    The run always injects ``SMOKE`` (``not full``), so papermill's metadata says which mode produced the outputs,
    also when an in-place smoke run follows a full one. In place (``out_dir`` is the notebook's own folder)
    ``keep_committable`` then drops the injected cell again: the committed notebook keeps its own parameters cell
    (``SMOKE = True``, so CI and a learner's first run are quick). ``run_id`` reaches the kernel as
    ``$INT8_COURSE_RUN_ID`` (``results.start`` records it); without one the variable is unset, never stale."""
    import papermill

    in_place = out_dir.resolve() == notebook.parent.resolve()
    parameters = {"SMOKE": not full}
    previous = os.environ.pop(results.RUN_ID_ENV, None)
    if run_id:
        os.environ[results.RUN_ID_ENV] = run_id
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(notebook), str(out_dir / notebook.name), parameters=parameters,
                                   kernel_name=kernel, cwd=str(notebook.parent), progress_bar=False)
    finally:
        os.environ.pop(results.RUN_ID_ENV, None)
        if previous is not None:
            os.environ[results.RUN_ID_ENV] = previous
    seconds = time.perf_counter() - start
    if in_place:
        keep_committable(out_dir / notebook.name)
    return seconds


def keep_committable(path: Path) -> None:
    """Make an executed notebook fit to commit: no injected-parameters cell (the parameters cell stays the
    notebook's own), ``metadata.papermill.parameters`` kept as the record of the run, and no machine paths in
    papermill's metadata (only the file name)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = Path(meta[key]).name
    with atomic_write(path) as tmp:
        nbformat.write(nb, str(tmp))


def stamp_run(path: Path, record: dict) -> None:
    """Record this run (run id, mode, the load reading taken before it, forced or not) in the executed notebook's
    ``metadata.int8_course``, so the committed page says how and when its outputs were made."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["int8_course"] = record
    with atomic_write(path) as tmp:
        nbformat.write(nb, str(tmp))


def commit_results(stem: str, record: dict, seconds: float) -> Path:
    """Add ``record`` to build/results/<stem>.json and copy it to notebooks/results/<stem>.json, with the wall time
    in notebooks/results/_timings.json: the committed run's figures, committed beside its notebook.

    Refuses a JSON that this run did not write (another run id: the notebook never reached ``course.setup``)."""
    source = results.results_path(stem)
    data = json.loads(source.read_text()) if source.is_file() else {}
    if data.get("run_id") != record["run_id"]:
        raise RuntimeError(f"{source} was not written by this run (run id {data.get('run_id')!r}, expected "
                           f"{record['run_id']!r}): the notebook must call course.setup(NOTEBOOK, smoke=SMOKE)")
    data["run"] = record
    target = results.committed_dir() / f"{stem}.json"
    for path in (source, target):
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(data, indent=2))
    record_timing(results.committed_dir() / "_timings.json", stem, record["mode"], seconds=seconds)
    return target


def children_cpu_seconds() -> float:
    """CPU seconds of the finished child processes (the notebooks' kernels); 0 where ``resource`` is missing."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def refusal(name: str, load: machine_load.MachineLoad) -> str:
    return (f"✗ not recording {name}: the machine is busy ({load.reason}), so its timings would be noise. Wait "
            "until the other work ends (a run of ours that just finished also counts in the 1-minute load average "
            "for a minute or two) and run again, or record anyway with --force (make outputs FORCE=1): the "
            "notebook's metadata and results JSON then say the run was forced.")


def to_html(executed: Path) -> Path:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    target = executed.with_suffix(".html")
    with atomic_write(target) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return target


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def record_timing(path: Path, stem: str, mode: str, seconds: float | None = None, failure: str | None = None) -> dict:
    """Update build/results/_timings.json: ``{stem: {mode: seconds}}``; a failure is kept as ``{mode}_failed``
    (with the error's last line) until the notebook next succeeds in that mode. Returns all timings."""
    timings = json.loads(path.read_text()) if path.is_file() else {}
    entry = timings.setdefault(stem, {})
    if failure is not None:
        entry[f"{mode}_failed"] = failure
    else:
        entry[mode] = round(float(seconds), 1)
        entry.pop(f"{mode}_failed", None)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(timings, indent=2, sort_keys=True))
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="run only notebooks whose file name starts with these")
    parser.add_argument("--full", action="store_true", help="full workshop settings instead of smoke")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's own)")
    parser.add_argument("--in-place", action="store_true",
                        help="execute the notebooks in notebooks/ themselves (to refresh their committed outputs)")
    parser.add_argument("--force", action="store_true",
                        help="with --in-place: record even on a busy machine (the run is marked forced)")
    args = parser.parse_args(argv)

    notebooks = course_notebooks(args.prefixes)
    if not notebooks:
        print(f"no notebooks match {args.prefixes} in {notebooks_dir()}", file=sys.stderr)
        return 2
    out_dir = notebooks_dir() if args.in_place else build_dir() / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    timings_path = build_dir() / "results" / "_timings.json"
    mode = "full" if args.full else "smoke"
    failed, refused, our_work = [], False, []  # our_work: (cpu s, wall s, end) of each kernel run so far
    for nb in notebooks:
        record = None
        if args.in_place:
            now = time.monotonic()
            ours = sum(machine_load.own_share(cpu, wall, now - end) for cpu, wall, end in our_work)
            load = machine_load.measure_load(own_load=ours + machine_load.own_share(time.process_time()))
            print(f"  machine {load.describe()}", flush=True)
            if load.busy and not args.force:
                print(refusal(nb.name, load), file=sys.stderr)
                refused = True
                break
            record = {"run_id": uuid.uuid4().hex, "mode": mode, "load": load.as_dict(), "forced": args.force}
        print(f"▶ {nb.name} ({mode}) ...", flush=True)
        cpu_before, started = children_cpu_seconds(), time.monotonic()
        try:
            seconds = execute(nb, out_dir, args.full, args.kernel, run_id=record and record["run_id"])
            if record:
                stamp_run(out_dir / nb.name, record)
                commit_results(nb.stem, record, seconds)
        except Exception as exc:  # papermill raises PapermillExecutionError with the failing cell
            print(f"✗ {nb.name} failed: {exc}", file=sys.stderr)
            failed.append(nb.name)
            record_timing(timings_path, nb.stem, mode, failure=first_line(exc))
            continue
        finally:
            our_work.append((children_cpu_seconds() - cpu_before, time.monotonic() - started, time.monotonic()))
            if not args.in_place and (out_dir / nb.name).is_file():
                to_html(out_dir / nb.name)
        record_timing(timings_path, nb.stem, mode, seconds=seconds)
        print(f"✓ {nb.name}: {seconds:.1f} s wall time", flush=True)
    index = report.write_index()
    print(f"report: {index}")
    print("wall time per notebook, minutes (also in build/timings.md and the report):")
    print(tables.to_markdown(report.timing_rows(report.load_timings(), [nb.stem for nb in notebooks])))
    if failed:
        print(f"failed notebooks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 3 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
