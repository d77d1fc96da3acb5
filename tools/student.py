"""``make student``: learner copies of the notebooks, with every ``solution`` cell replaced by a stub.

    python -m tools.student            # every notebooks/NN_*.ipynb -> build/student/, plus a zip
    python -m tools.student 01 03      # only notebooks whose name starts with these prefixes

The copies are made by nbconvert preprocessors, in this order:

1. ``SolutionStubPreprocessor`` (below) puts a stub cell, tagged ``exercise``, right after each cell tagged
   ``solution``. The stub assigns ``...`` to every name the solution assigns (found with :mod:`ast`), so the check
   cell that follows finds the name and prints "no answer yet" instead of crashing with a ``NameError``. A solution
   that defines a function becomes a function with the same signature that returns ``...``.
2. nbconvert's ``TagRemovePreprocessor`` removes the ``solution`` cells themselves.
3. nbconvert's ``ClearOutputPreprocessor`` clears outputs and execution counts, and drops the run metadata
   (papermill timings, saved widget state) so a learner starts from a clean notebook.

The zip (``build/student/int8-course-student.zip``) holds only the student notebooks and a short README: the
helpers package, the pinned environment and the course kernel come from the course repository (``make setup``),
which a learner needs anyway to run anything, so the zip never carries a second, possibly stale, copy of
``helpers``. Its entries have fixed timestamps, so the same notebooks give the same zip.
"""

from __future__ import annotations

import argparse
import ast
import sys
import zipfile
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbconvert.preprocessors import ClearOutputPreprocessor, Preprocessor, TagRemovePreprocessor

from helpers.paths import atomic_write, build_dir, course_notebooks, notebooks_dir

SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"
STUB_MARKER = "# your code here"
ZIP_NAME = "int8-course-student.zip"
#: Run metadata a student copy does not need (per cell, and per notebook).
RUN_METADATA = {"collapsed", "scrolled", "execution", "papermill", "ExecuteTime"}
NOTEBOOK_RUN_METADATA = ("papermill", "widgets")

ZIP_README = """int8 quantization course: student notebooks
============================================

These are the course notebooks with the exercise answers removed. Each exercise has a cell that starts with
"{marker}" and sets the answer names to `...`; replace the `...` with your code and run the check cell below it.
It prints "correct" or a hint.

The notebooks import the course's `helpers` package, so run them inside the course repository:

    make setup        # once: the pinned packages, the helpers package and the "int8 course" kernel
    make lab          # JupyterLab; open these notebooks from wherever you unzipped them

Pick the "int8 course" kernel if JupyterLab asks.
"""


class SolutionError(ValueError):
    """A solution cell that cannot be turned into a stub."""


def _target_names(target: ast.expr) -> list[str]:
    """Plain names bound by an assignment target; ``obj.attr = ...`` and ``d[k] = ...`` bind none."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for elt in target.elts for n in _target_names(elt)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _bound(body: list[ast.stmt]) -> list[tuple[str, ast.stmt]]:
    """(name, statement) for every name the statements bind at module level, in order (not inside functions)."""
    out: list[tuple[str, ast.stmt]] = []
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            out += [(n, stmt) for t in stmt.targets for n in _target_names(t)]
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
            out += [(n, stmt) for n in _target_names(stmt.target)]
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append((stmt.name, stmt))
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            out += [(n, stmt) for n in _target_names(stmt.target)]
            out += _bound(stmt.body) + _bound(stmt.orelse)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            out += [(n, stmt) for item in stmt.items if item.optional_vars is not None
                    for n in _target_names(item.optional_vars)]
            out += _bound(stmt.body)
        elif isinstance(stmt, (ast.If, ast.While)):
            out += _bound(stmt.body) + _bound(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            out += _bound(stmt.body) + _bound(stmt.orelse) + _bound(stmt.finalbody)
            out += [x for h in stmt.handlers for x in _bound(h.body)]
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.NamedExpr):
            out += [(n, stmt) for n in _target_names(stmt.value.target)]
    return out


def _parse(source: str) -> ast.Module:
    # IPython magics (%timeit, !ls) are not Python; a solution cell should not need them.
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise SolutionError(f"solution cell is not plain Python ({exc.msg}, line {exc.lineno}): "
                            f"{source.strip().splitlines()[exc.lineno - 1 if exc.lineno else 0]!r}. Remove "
                            "IPython magics from solution cells so the stub can be derived.") from exc


def solution_names(source: str) -> list[str]:
    """The names a solution cell binds at module level, in first-binding order (ignores names bound only inside
    a function body, attributes and subscripts)."""
    seen: dict[str, None] = {}
    for name, _ in _bound(_parse(source).body):
        seen.setdefault(name, None)
    return list(seen)


def stub_source(source: str) -> str:
    """The learner's stub for a solution cell: ``# your code here`` and each answer name set to ``...``.

    A function the solution defines keeps its signature and returns ``...``, so a checker that calls it gets the
    "no answer yet" hint. A solution that binds no name at all cannot be stubbed meaningfully: that is an
    authoring mistake and raises :class:`SolutionError`."""
    module = _parse(source)
    bindings = _bound(module.body)
    if not bindings:
        raise SolutionError("solution cell binds no name, so its check cell has nothing to check. Assign the answer "
                            f"to a variable (e.g. `answer = ...`). The cell:\n{source}")
    lines = [STUB_MARKER]
    done: set[str] = set()
    for name, stmt in bindings:
        if name in done:
            continue
        done.add(name)
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            prefix = "async def" if isinstance(stmt, ast.AsyncFunctionDef) else "def"
            lines += [f"{prefix} {name}({ast.unparse(stmt.args)}):", f"    {STUB_MARKER}", "    return ...", ""]
        else:
            lines.append(f"{name} = ...")
    return "\n".join(lines).rstrip() + "\n"


class SolutionStubPreprocessor(Preprocessor):
    """Insert a stub cell (tagged ``exercise``) after every cell tagged ``solution``.

    The solution cells stay; ``TagRemovePreprocessor(remove_cell_tags={"solution"})`` removes them next."""

    def preprocess(self, nb, resources):
        cells = []
        for index, cell in enumerate(nb.cells):
            cells.append(cell)
            if SOLUTION_TAG not in cell.get("metadata", {}).get("tags", []):
                continue
            tags = [t for t in cell.metadata.get("tags", []) if t != SOLUTION_TAG] + [EXERCISE_TAG]
            if cell.cell_type == "code":
                try:
                    stub = nbformat.v4.new_code_cell(stub_source(cell.source))
                except SolutionError as exc:
                    name = resources.get("metadata", {}).get("name", "notebook")
                    raise SolutionError(f"{name}, cell {index}: {exc}") from exc
            else:  # a written answer
                stub = nbformat.v4.new_markdown_cell("*Your answer here.*")
            stub.metadata["tags"] = tags
            if "id" in cell:  # a stable id: the same notebook always gives the same student copy
                stub["id"] = f"{cell['id']}-stub"[-64:]
            cells.append(stub)
        nb.cells = cells
        for key in NOTEBOOK_RUN_METADATA:
            nb.metadata.pop(key, None)
        return nb, resources


def student_exporter() -> NotebookExporter:
    exporter = NotebookExporter()
    exporter.register_preprocessor(SolutionStubPreprocessor(), enabled=True)
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={SOLUTION_TAG},
                                                         remove_metadata_fields=RUN_METADATA), enabled=True)
    exporter.register_preprocessor(ClearOutputPreprocessor(remove_metadata_fields=RUN_METADATA), enabled=True)
    return exporter


def student_notebook(path: Path) -> nbformat.NotebookNode:
    """The student copy of one notebook, as a notebook node (validated)."""
    exporter = student_exporter()
    nb = nbformat.read(path, as_version=4)
    out, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    student = nbformat.reads(out, as_version=4)
    nbformat.validate(student)
    return student


def write_zip(files: list[Path], target: Path) -> Path:
    """A zip of the student notebooks and a README, under a top-level ``int8-course-student/`` folder, with fixed
    timestamps (the same notebooks always give the same bytes)."""
    folder = target.stem
    with atomic_write(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            entries = [("README.txt", ZIP_README.format(marker=STUB_MARKER).encode())]
            entries += [(f.name, f.read_bytes()) for f in files]
            for name, data in entries:
                info = zipfile.ZipInfo(f"{folder}/{name}", date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)
    return target


def build_student(notebooks: list[Path], out_dir: Path | None = None) -> tuple[list[Path], Path]:
    """Write the student copy of each notebook into ``out_dir`` (default build/student/) and zip them."""
    if not notebooks:
        raise FileNotFoundError(f"no notebooks to copy: expected notebooks/NN_*.ipynb under {notebooks_dir()}")
    out_dir = Path(out_dir or build_dir() / "student")
    written = []
    for path in notebooks:
        target = out_dir / path.name
        with atomic_write(target) as tmp:
            nbformat.write(student_notebook(path), str(tmp))
        written.append(target)
    return written, write_zip(written, out_dir / ZIP_NAME)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="only notebooks whose file name starts with these")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: build/student)")
    args = parser.parse_args(argv)
    notebooks = course_notebooks(args.prefixes)
    if not notebooks:
        print(f"no notebooks match {args.prefixes} in {notebooks_dir()}", file=sys.stderr)
        return 2
    try:
        written, archive = build_student(notebooks, args.out)
    except SolutionError as exc:
        print(f"✗ {exc}", file=sys.stderr)
        return 1
    for path in written:
        n = sum(EXERCISE_TAG in c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells)
        print(f"✓ {path} ({n} exercise stub{'s' if n != 1 else ''})")
    print(f"zip: {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
