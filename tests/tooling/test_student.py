"""Exercises and student copies (``make student``, tools/student.py).

What is tested where:

- **The instructor notebooks pass their own checks.** ``make test`` executes every notebook with nbval while
  ``INT8_COURSE_STRICT_CHECKS=1`` (exported by the Makefile), so a checker that disagrees with its solution raises
  ``ExerciseNotSolved`` and fails that notebook's nbval test. This file does not execute them a second time; it
  checks statically, and fast, that every notebook has 2-4 solution cells, each followed by a check cell.
- **Student copies contain no solution code** (static, every notebook).
- **A student copy executed as-is reports, it does not crash:** the student copy of notebook 01 is executed with
  nbclient and ``INT8_COURSE_STRICT_CHECKS=0`` (the checkers print a hint instead of raising), and every check must
  print "not yet" with a "no answer yet" hint while no cell errors.
"""

import ast
import json
import re
import zipfile
from pathlib import Path

import nbformat
import pytest

from helpers import checks
from helpers.paths import cache_dir
from tools import student

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = student.course_notebooks()
#: Student copies executed end to end here (the others are covered statically; nbval runs the originals).
EXECUTED = [nb for nb in NOTEBOOKS if nb.name.startswith("01_")]


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def is_check_cell(cell):
    return cell.cell_type == "code" and re.search(r"\bchecks\.check_\w+\(", cell.source) is not None


# --- the stub, from the solution's source ---------------------------------------------------------------------

def test_solution_names_assignments_in_order():
    src = "a = 1\nb, (c, *d) = 2, (3, 4, 5)\ne: int = 6\na += 1\nobj.attr = 7\nitems[0] = 8\n"
    assert student.solution_names(src) == ["a", "b", "c", "d", "e"]


def test_solution_names_blocks_but_not_function_bodies():
    src = ("for i, row in enumerate(rows):\n    total = row\n"
           "with open('f') as fh:\n    text = fh.read()\n"
           "if x:\n    y = 1\nelse:\n    z = 2\n"
           "try:\n    t = 1\nexcept ValueError:\n    u = 2\n"
           "def f(v):\n    hidden = v\n    return hidden\n"
           "(w := 3)\n")
    assert student.solution_names(src) == ["i", "row", "total", "fh", "text", "y", "z", "t", "u", "f", "w"]


def test_stub_leaves_names_unanswered():
    src = "scale = (6.0 - (-2.0)) / 255\nzero_point = round(2.0 / scale)\nscale = float(scale)\n"
    stub = student.stub_source(src)
    assert stub.splitlines() == [student.STUB_MARKER, "scale = ...", "zero_point = ..."]
    namespace = {}
    exec(stub, namespace)
    assert namespace["scale"] is Ellipsis and namespace["zero_point"] is Ellipsis


def test_stub_keeps_function_signature_and_returns_ellipsis():
    stub = student.stub_source("def sqnr(x, x_hat, *, eps=1e-12):\n    return 10 * x.log10() + eps\n")
    assert "10 * x.log10()" not in stub and "def sqnr(x, x_hat, *, eps=1e-12):" in stub
    namespace = {}
    exec(stub, namespace)
    assert namespace["sqnr"](1, 2) is Ellipsis


def test_stub_rejects_a_solution_without_an_answer_name():
    with pytest.raises(student.SolutionError, match="binds no name"):
        student.stub_source("print(42)\n")


def test_stub_rejects_magics_with_a_fix():
    with pytest.raises(student.SolutionError, match="Remove IPython magics"):
        student.stub_source("%timeit f()\n")


def test_unanswered_stub_gets_the_no_answer_hint(monkeypatch, capsys):
    monkeypatch.delenv(checks.STRICT_ENV_VAR, raising=False)
    namespace = {}
    exec(student.stub_source("answer = 3\n"), namespace)
    checks.check_equal(namespace["answer"], name="stub", expected=3, hint="count again")
    assert "❌ stub: not yet. Hint: no answer yet" in capsys.readouterr().out


def make_notebook(cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return nb


def test_preprocessors_on_a_small_notebook(tmp_path):
    solution = nbformat.v4.new_code_cell("answer = secret_formula(3)", execution_count=4,
                                         outputs=[nbformat.v4.new_output("stream", text="9\n")])
    solution.metadata["tags"] = ["solution"]
    written = nbformat.v4.new_markdown_cell("Because the zero point is exact.")
    written.metadata["tags"] = ["solution"]
    nb = make_notebook([nbformat.v4.new_markdown_cell("# 09 · Demo"),
                        nbformat.v4.new_code_cell("x = 1", execution_count=1,
                                                  outputs=[nbformat.v4.new_output("stream", text="1\n")]),
                        solution,
                        nbformat.v4.new_code_cell("checks.check_equal(answer, name='e', expected=9, hint='h')"),
                        written])
    nb.metadata["papermill"] = {"duration": 1.0}
    path = tmp_path / "09_demo.ipynb"
    nbformat.write(nb, str(path))

    out = student.student_notebook(path)
    sources = [c.source for c in out.cells]
    assert sources == ["# 09 · Demo", "x = 1", "# your code here\nanswer = ...\n",
                       "checks.check_equal(answer, name='e', expected=9, hint='h')", "*Your answer here.*"]
    assert all("solution" not in tags(c) for c in out.cells)
    assert [tags(c) for c in out.cells if "exercise" in tags(c)] == [["exercise"], ["exercise"]]
    assert all(c.outputs == [] and c.execution_count is None for c in out.cells if c.cell_type == "code")
    assert "papermill" not in out.metadata
    assert student.student_notebook(path) == out, "the same notebook must give the same student copy"


def test_build_student_reports_the_cell_of_a_bad_solution(tmp_path):
    bad = nbformat.v4.new_code_cell("print('no name bound')")
    bad.metadata["tags"] = ["solution"]
    path = tmp_path / "09_bad.ipynb"
    nbformat.write(make_notebook([nbformat.v4.new_markdown_cell("# 09 · Bad"), bad]), str(path))
    with pytest.raises(student.SolutionError, match=r"09_bad, cell 1: solution cell binds no name"):
        student.build_student([path], tmp_path / "out")


def test_build_student_without_notebooks(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebooks to copy"):
        student.build_student([], tmp_path)


# --- the course notebooks -------------------------------------------------------------------------------------

def test_there_are_course_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_two_to_four_solutions_each_followed_by_a_check(path):
    cells = nbformat.read(path, as_version=4).cells
    solutions = [i for i, c in enumerate(cells) if "solution" in tags(c)]
    assert 2 <= len(solutions) <= 4, f"{path.name}: {len(solutions)} cells tagged 'solution'; the convention is 2-4"
    for i in solutions:
        assert cells[i].cell_type == "code", f"{path.name} cell {i}: a solution cell must be code"
        assert i + 1 < len(cells) and is_check_cell(cells[i + 1]), (
            f"{path.name} cell {i}: the cell after a solution must call a helpers.checks checker")
        names = student.solution_names(cells[i].source)
        used = {n.id for n in ast.walk(ast.parse(cells[i + 1].source)) if isinstance(n, ast.Name)}
        assert used & set(names), f"{path.name} cell {i + 1}: the check uses none of the answers {names}"


@pytest.fixture(scope="module")
def student_copies(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    written, archive = student.build_student(NOTEBOOKS, out)
    return {p.name: p for p in written}, archive


def solution_only_lines(original):
    """Code lines that occur in the notebook's solution cells and nowhere else in it."""
    cells = original.cells
    elsewhere = {line.strip() for c in cells if "solution" not in tags(c) for line in c.source.splitlines()}
    return {line.strip() for c in cells if "solution" in tags(c) for line in c.source.splitlines()
            if line.strip() and not line.strip().startswith("#")} - elsewhere


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_copy_has_no_solution_code(path, student_copies):
    copies, _ = student_copies
    original = nbformat.read(path, as_version=4)
    copy = nbformat.read(copies[path.name], as_version=4)
    copy_lines = {line.strip() for c in copy.cells for line in c.source.splitlines()}
    leaked = sorted(solution_only_lines(original) & copy_lines)
    # the stub itself: `name = ...`, and a function's signature line, which the stub keeps
    leaked = [line for line in leaked if not re.fullmatch(r"[\w, ()*]+ = \.\.\.|def \w+\(.*\):", line)]
    assert not leaked, f"solution code in the student copy of {path.name}: {leaked}"
    assert not any("solution" in tags(c) for c in copy.cells)
    n_solutions = sum("solution" in tags(c) for c in original.cells)
    stubs = [c for c in copy.cells if "exercise" in tags(c)]
    assert len(stubs) == n_solutions and all(c.source.startswith(student.STUB_MARKER) for c in stubs)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in copy.cells if c.cell_type == "code")
    # everything else is the original, in order
    kept = [c.source for c in original.cells if "solution" not in tags(c)]
    assert [c.source for c in copy.cells if "exercise" not in tags(c)] == kept


def test_zip_holds_every_student_notebook_and_a_readme(student_copies):
    copies, archive = student_copies
    assert archive.name == student.ZIP_NAME
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        expected = [f"int8-course-student/{n}" for n in copies] + ["int8-course-student/README.txt"]
        assert sorted(names) == sorted(expected)
        for name in copies:
            assert zf.read(f"int8-course-student/{name}") == copies[name].read_bytes()
        assert "make setup" in zf.read("int8-course-student/README.txt").decode()


def test_cli_writes_copies_and_zip(tmp_path, capsys):
    assert student.main(["01", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "01_int8_scaling.ipynb").is_file() and (tmp_path / student.ZIP_NAME).is_file()
    assert "exercise stub" in out
    assert student.main(["99_nothing_like_this"]) == 2


# --- a student copy, executed -----------------------------------------------------------------------------------

@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.stem)
def test_student_copy_runs_and_every_check_gives_a_hint(path, student_copies, course_kernel, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("INT8_COURSE_CACHE", str(cache_dir()))  # reuse the fine-tuned model cache ...
    monkeypatch.setenv("INT8_COURSE_BUILD", str(tmp_path / "build"))  # ... but keep the instructor's results
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    copies, _ = student_copies
    nb = nbformat.read(copies[path.name], as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json\nfrom helpers import checks\nprint('OUTCOMES=' + json.dumps(checks.outcomes))"))
    NotebookClient(nb, timeout=600, kernel_name=course_kernel, allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    errors = [(i, o.ename, o.evalue) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert not errors, f"cells errored in the student copy of {path.name}: {errors}"

    def stdout(cell):
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")

    check_cells = [c for prev, c in zip(nb.cells, nb.cells[1:]) if "exercise" in tags(prev)]
    assert check_cells and all(is_check_cell(c) for c in check_cells)
    for cell in check_cells:
        verdicts = [line for line in stdout(cell).splitlines() if line.startswith(("✅", "❌"))]
        assert verdicts, f"check cell printed no verdict:\n{cell.source}"
        for line in verdicts:
            assert line.startswith("❌") and ": not yet. Hint: no answer yet" in line, line
    outcomes = json.loads(stdout(nb.cells[-1]).split("OUTCOMES=", 1)[1])
    assert outcomes and not any(outcomes.values()), outcomes
