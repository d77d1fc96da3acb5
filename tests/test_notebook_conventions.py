"""Every course notebook follows the conventions in CONTRIBUTING.md (checked statically; nbval executes them)."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
class TestNotebook:
    def test_title_heading(self, path):
        first = cells(path)[0]
        assert first["cell_type"] == "markdown"
        assert re.match(rf"# {path.name[:2]} · \S", source(first)), "first cell must be '# NN · Title'"

    def test_parameters_cell_sets_smoke_true(self, path):
        tagged = [c for c in cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
        assert re.search(r"^SMOKE = True\b", source(tagged[0]), re.M)

    def test_papermill_can_read_the_parameters(self, path):
        # papermill gives up on a parameters line whose comment holds "=" (and then injects blindly)
        from papermill.translators import PythonTranslator

        cell = next(c for c in cells(path) if "parameters" in c.get("metadata", {}).get("tags", []))
        assert [p.name for p in PythonTranslator.inspect({"source": source(cell)})] == ["SMOKE"]

    def test_setup_cell(self, path):
        code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
        assert any(f'NOTEBOOK = "{path.stem}"' in c and "course.setup(NOTEBOOK, smoke=SMOKE" in c for c in code)

    def test_imports_only_helpers_from_the_project(self, path):
        for c in cells(path):
            if c["cell_type"] == "code":
                for m in re.finditer(r"^\s*(?:from|import)\s+([\w.]+)", source(c), re.M):
                    assert not m.group(1).startswith(("tests", "notebooks")), m.group(0)

    def test_no_saved_errors(self, path):
        for c in cells(path):
            for out in c.get("outputs", []):
                assert out.get("output_type") != "error", f"saved error output: {out.get('ename')}"

    def test_no_hub_downloads(self, path):
        text = path.read_text()
        assert not re.search(r"from_pretrained\(\s*[\"'](bert|distilbert|roberta|google|facebook|microsoft|sentence-transformers)", text)

    def test_ends_with_what_you_learned_and_exercises(self, path):
        md = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")
        assert "## What you learned" in md and "## Exercises" in md

    def test_records_results(self, path):
        code = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "code")
        assert "results.record(NOTEBOOK" in code

    def test_no_blanket_warning_filters(self, path):
        code = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "code")
        assert not re.search(r"(filterwarnings|simplefilter)\(\s*[\"']ignore[\"']\s*\)", code)
        assert "except:" not in code and not re.search(r"except Exception:\s*\n\s*pass", code)
