"""``make run``: execute every notebook headless with papermill, time it, and build ``build/index.html``.

    python -m helpers.run            # smoke settings (the default, what CI uses)
    python -m helpers.run --full     # full workshop settings
    python -m helpers.run 01 03      # only notebooks whose name starts with these prefixes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import report
from .paths import atomic_write, build_dir, notebooks_dir


def course_notebooks(prefixes: list[str] | None = None) -> list[Path]:
    notebooks = sorted(notebooks_dir().glob("[0-9][0-9]*.ipynb"))
    if prefixes:
        notebooks = [nb for nb in notebooks if nb.name.startswith(tuple(prefixes))]
    return notebooks


def execute(notebook: Path, out_dir: Path, full: bool, kernel: str | None) -> float:
    """Run one notebook with papermill into ``out_dir``. In place (``out_dir`` is the notebook's own folder) with
    smoke settings, no parameters are injected, so the committed notebook keeps its own parameters cell."""
    import papermill

    in_place = out_dir.resolve() == notebook.parent.resolve()
    parameters = {} if in_place and not full else {"SMOKE": not full}
    start = time.perf_counter()
    papermill.execute_notebook(str(notebook), str(out_dir / notebook.name), parameters=parameters,
                               kernel_name=kernel, cwd=str(notebook.parent), progress_bar=False)
    return time.perf_counter() - start


def to_html(executed: Path) -> Path:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    target = executed.with_suffix(".html")
    with atomic_write(target) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="run only notebooks whose file name starts with these")
    parser.add_argument("--full", action="store_true", help="full workshop settings instead of smoke")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's own)")
    parser.add_argument("--in-place", action="store_true",
                        help="execute the notebooks in notebooks/ themselves (to refresh their committed outputs)")
    args = parser.parse_args(argv)
    if args.in_place and args.full:
        parser.error("--in-place keeps smoke outputs in the repo; do not combine it with --full")

    notebooks = course_notebooks(args.prefixes)
    if not notebooks:
        print(f"no notebooks match {args.prefixes} in {notebooks_dir()}", file=sys.stderr)
        return 2
    out_dir = notebooks_dir() if args.in_place else build_dir() / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    timings_path = build_dir() / "results" / "_timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    mode = "full" if args.full else "smoke"
    failed = []
    for nb in notebooks:
        print(f"▶ {nb.name} ({mode}) ...", flush=True)
        try:
            seconds = execute(nb, out_dir, args.full, args.kernel)
        except Exception as exc:  # papermill raises PapermillExecutionError with the failing cell
            print(f"✗ {nb.name} failed: {exc}", file=sys.stderr)
            failed.append(nb.name)
            continue
        finally:
            if not args.in_place and (out_dir / nb.name).is_file():
                to_html(out_dir / nb.name)
        timings.setdefault(nb.stem, {})[mode] = round(seconds, 1)
        print(f"✓ {nb.name}: {seconds:.1f} s wall time", flush=True)
        with atomic_write(timings_path) as tmp:
            tmp.write_text(json.dumps(timings, indent=2))
    index = report.write_index()
    print(f"report: {index}")
    print("wall time per notebook (s): " + ", ".join(f"{k} {v}" for k, v in sorted(timings.items())))
    if failed:
        print(f"failed notebooks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
