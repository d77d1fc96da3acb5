"""The root conftest gives nbval's notebook cells a longer wait for their outputs than nbval's fixed five seconds."""

import json
import re
from pathlib import Path

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
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
