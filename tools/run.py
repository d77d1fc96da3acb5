"""``make run``: execute every notebook headless with papermill, time it, and build ``build/index.html``.

    python -m tools.run            # smoke settings (the default, what CI uses)
    python -m tools.run --full     # full workshop settings
    python -m tools.run 01 03      # only notebooks whose name starts with these prefixes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from helpers import tables
from helpers.paths import atomic_write, build_dir, course_notebooks, notebooks_dir

from . import report


def execute(notebook: Path, out_dir: Path, full: bool, kernel: str | None) -> float:
    """Run one notebook with papermill into ``out_dir``.

    The run always injects ``SMOKE`` (``not full``), so papermill's metadata says which mode produced the outputs,
    also when an in-place smoke run follows a full one. In place (``out_dir`` is the notebook's own folder)
    ``keep_committable`` then drops the injected cell again: the committed notebook keeps its own parameters cell
    (``SMOKE = True``, so CI and a learner's first run are quick)."""
    import papermill

    in_place = out_dir.resolve() == notebook.parent.resolve()
    parameters = {"SMOKE": not full}
    start = time.perf_counter()
    papermill.execute_notebook(str(notebook), str(out_dir / notebook.name), parameters=parameters,
                               kernel_name=kernel, cwd=str(notebook.parent), progress_bar=False)
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
    args = parser.parse_args(argv)

    notebooks = course_notebooks(args.prefixes)
    if not notebooks:
        print(f"no notebooks match {args.prefixes} in {notebooks_dir()}", file=sys.stderr)
        return 2
    out_dir = notebooks_dir() if args.in_place else build_dir() / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    timings_path = build_dir() / "results" / "_timings.json"
    mode = "full" if args.full else "smoke"
    failed = []
    for nb in notebooks:
        print(f"▶ {nb.name} ({mode}) ...", flush=True)
        try:
            seconds = execute(nb, out_dir, args.full, args.kernel)
        except Exception as exc:  # papermill raises PapermillExecutionError with the failing cell
            print(f"✗ {nb.name} failed: {exc}", file=sys.stderr)
            failed.append(nb.name)
            record_timing(timings_path, nb.stem, mode, failure=first_line(exc))
            continue
        finally:
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
