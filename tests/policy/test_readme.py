"""The README keeps up with the notebooks: every notebook in both notebook tables, no typed timings."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def table_rows(text: str) -> dict[str, str]:
    """{'01': '01_int8_scaling.ipynb', ...} from the rows of a markdown table."""
    return dict(re.findall(r"^\| (\d\d) \| `(\d\d_\w+\.ipynb)` \|", text, re.M))


@pytest.mark.parametrize("title", ["The notebooks", "한국어 빠른 시작"])
def test_notebook_tables_list_every_notebook(title):
    rows = table_rows(section(title))
    missing = [nb.name for nb in NOTEBOOKS if rows.get(nb.name[:2]) != nb.name]
    assert not missing, f"README '{title}' table is missing or misnames: {missing}"


def test_instructor_section_points_to_measured_timings_instead_of_typing_them():
    text = section("For instructors")
    for needed in ("make run FULL=1", "make setup", "build/timings.md", "build/index.html", "make student"):
        assert needed in text
    assert not re.search(r"\b\d+(\.\d+)?\s*(min|minutes|s|seconds)\b", text), "typed timing in the instructor section"


def test_korean_quick_start_has_the_two_commands():
    text = section("한국어 빠른 시작")
    assert "make run" in text and "make test" in text
