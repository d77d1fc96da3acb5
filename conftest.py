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

pytest_plugins = ["pytester"]  # tests/test_conftest.py runs nbval's collection in a scratch directory
