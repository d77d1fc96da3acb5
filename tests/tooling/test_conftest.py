"""The root conftest gives nbval's notebook cells a longer wait for their outputs than nbval's fixed five seconds."""

import json
import re
from pathlib import Path

ROOT_CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"
NBVAL_OUTPUT_WAIT_S = int(re.search(r"^NBVAL_OUTPUT_WAIT_S = (\d+)$", ROOT_CONFTEST.read_text(), re.M).group(1))

REPORT_HOOK = '''

import pytest

@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    for item in items:
        print(f"{item.name} output_timeout={getattr(item, 'output_timeout', None)}")
'''


def _one_cell_notebook(path: Path) -> None:
    path.write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                   "source": ["print(1)"]}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def test_nbval_cells_wait_longer_for_their_outputs(pytester):
    pytester.makeconftest(ROOT_CONFTEST.read_text())  # the scratch project's root conftest, as in this repository
    (pytester.path / "notebooks").mkdir()
    (pytester.path / "notebooks" / "conftest.py").write_text(REPORT_HOOK)
    _one_cell_notebook(pytester.path / "notebooks" / "tiny.ipynb")
    result = pytester.runpytest_subprocess("--nbval-lax", "--collect-only", "-s", "-p", "no:cacheprovider",
                                           "notebooks")
    result.stdout.fnmatch_lines([f"*output_timeout={NBVAL_OUTPUT_WAIT_S}*"])


def test_without_the_hook_nbval_waits_five_seconds(pytester):
    """The attribute the hook sets is the one nbval reads: without the hook it holds nbval's own five seconds."""
    pytester.makeconftest(REPORT_HOOK)
    _one_cell_notebook(pytester.path / "tiny.ipynb")
    result = pytester.runpytest_subprocess("--nbval-lax", "--collect-only", "-s", "-p", "no:cacheprovider",
                                           "tiny.ipynb")
    result.stdout.fnmatch_lines(["*output_timeout=5*"])


def test_the_summary_says_where_the_time_went(pytester):
    """The run ends with each notebook's seconds, the unit tests' total and the slowest unit tests by name."""
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    (pytester.path / "notebooks").mkdir()
    _one_cell_notebook(pytester.path / "notebooks" / "tiny.ipynb")
    pytester.makepyfile(test_speed="import time\n\ndef test_slow():\n    time.sleep(0.3)\n\n"
                                   "def test_fast():\n    pass\n")
    result = pytester.runpytest_subprocess("--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
                                           "test_speed.py", "notebooks")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*where the time went*", "* notebooks/tiny.ipynb", "* unit tests (2), of which*",
                                 "*test_speed.py::test_slow", "*test_speed.py::test_fast"])
    slow = next(line for line in result.stdout.lines if line.endswith("test_speed.py::test_slow"))
    assert float(slow.split()[0]) >= 0.3
