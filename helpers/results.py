"""Recording each notebook's measured figures into ``build/results/<notebook>.json``.

``make run`` builds ``build/index.html`` from these files, so every number in the report was computed by the run
that wrote it. ``start`` (called by the setup cell) clears a notebook's file; ``record`` merges one section in.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .paths import atomic_write, build_dir


def results_path(notebook: str) -> Path:
    if not notebook or "/" in notebook or notebook.startswith("."):
        raise ValueError(f"notebook must be a plain name such as '01_int8_scaling', got {notebook!r}")
    return build_dir() / "results" / f"{notebook}.json"


def jsonable(value):
    """Plain JSON: tensors and numpy scalars become numbers, non-finite floats become strings."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # torch / numpy
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def load(notebook: str) -> dict:
    path = results_path(notebook)
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def _write(notebook: str, data: dict) -> Path:
    path = results_path(notebook)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False))
    return path


def start(notebook: str, **meta) -> Path:
    """Begin a fresh record for ``notebook`` (drops figures from an earlier run)."""
    return _write(notebook, {"notebook": notebook, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "meta": jsonable(meta)})


def record(notebook: str, section: str, values) -> None:
    """Store ``values`` (a dict, list or number) under ``section`` in the notebook's JSON file.

    Returns None, so a ``record(...)`` call at the end of a notebook cell prints nothing."""
    data = load(notebook) or {"notebook": notebook}
    data[section] = jsonable(values)
    _write(notebook, data)
