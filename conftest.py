"""Pytest configuration shared by the unit tests and the notebook run (``pytest tests notebooks --nbval-lax``).

nbval waits at most five seconds (a constant, not an option) for a cell's outputs to arrive on the kernel's IOPub
channel once the cell has finished. On a shared CI machine a kernel that has just trained a model can be quiet for
longer than that, and nbval then fails the cell ("Timeout of 5 seconds exceeded waiting for output") although it
ran. The hook below gives every notebook cell a longer wait; the time a cell may run is still
``--nbval-cell-timeout``."""

NBVAL_OUTPUT_WAIT_S = 120


def pytest_collection_modifyitems(session, config, items):
    """Give each nbval cell ``NBVAL_OUTPUT_WAIT_S`` seconds to deliver its outputs (nbval's default: 5)."""
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = max(item.output_timeout, NBVAL_OUTPUT_WAIT_S)

pytest_plugins = ["pytester"]  # tests/tooling/test_conftest.py runs nbval's collection in a scratch directory


def time_per_part(reports) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per notebook file (its cells' setup, call and teardown summed) and per unit test, from pytest's
    test reports."""
    notebooks: dict[str, float] = {}
    tests: dict[str, float] = {}
    for report in reports:
        duration, nodeid = getattr(report, "duration", None), getattr(report, "nodeid", "")
        if duration is None or not nodeid:
            continue
        path = nodeid.split("::")[0]
        if path.endswith(".ipynb"):
            notebooks[path] = notebooks.get(path, 0.0) + duration
        else:
            tests[nodeid] = tests.get(nodeid, 0.0) + duration
    return notebooks, tests


def pytest_terminal_summary(terminalreporter):
    """Where the suite's time went: each notebook, the unit tests in all, and the ten slowest unit tests."""
    notebooks, tests = time_per_part(r for reports in terminalreporter.stats.values() for r in reports)
    if not notebooks and not tests:
        return
    terminalreporter.write_sep("-", "where the time went (seconds, setup + call + teardown)")
    for path, seconds in sorted(notebooks.items()):
        terminalreporter.write_line(f"{seconds:8.1f}  {path}")
    if not tests:
        return
    terminalreporter.write_line(f"{sum(tests.values()):8.1f}  unit tests ({len(tests)}), of which the slowest:")
    for nodeid, seconds in sorted(tests.items(), key=lambda kv: -kv[1])[:10]:
        terminalreporter.write_line(f"{seconds:8.1f}    {nodeid}")
