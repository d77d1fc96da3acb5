"""Shared fixtures for tests that start Jupyter kernels (the student-copy run and the browser test)."""

import json
import sys

import pytest

KERNEL_NAME = "int8-course"


@pytest.fixture
def course_kernel(tmp_path, monkeypatch):
    """An ``int8-course`` kernelspec that runs this interpreter, first on JUPYTER_PATH.

    Notebooks name the ``int8-course`` kernel (``make setup`` registers it in .venv); this fixture makes sure the
    kernel a test starts is the environment the test runs in, even outside .venv. Returns the kernel name."""
    spec_dir = tmp_path / "jupyter_path" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "int8 course", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter_path"))
    return KERNEL_NAME
