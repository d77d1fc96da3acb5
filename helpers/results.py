"""Recording each notebook's measured figures into ``build/results/<notebook>.json``.

``make run`` builds ``build/index.html`` from these files, so every number in the report was computed by the run
that wrote it. ``start`` (called by the setup cell) clears a notebook's file; ``record`` merges one section in.

``make outputs`` (``tools.run --in-place``) copies each notebook's file, with its wall time, to
``notebooks/results/`` (``committed_dir``): the figures of the committed run, committed beside it. The run id it
passes in ``$INT8_COURSE_RUN_ID`` is recorded by ``start``, so a committed JSON names the notebook run it came from.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from .paths import atomic_write, build_dir, notebooks_dir

#: The environment variable through which ``tools.run`` hands its run id to the notebook's kernel.
RUN_ID_ENV = "INT8_COURSE_RUN_ID"


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
    """Begin a fresh record for ``notebook`` (drops figures from an earlier run), with ``$INT8_COURSE_RUN_ID`` as
    ``run_id`` (None outside ``make outputs``), so the record can be matched with the executed notebook."""
    return _write(notebook, {"notebook": notebook, "run_id": os.environ.get(RUN_ID_ENV) or None,
                             "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "meta": jsonable(meta)})


def record(notebook: str, section: str, values) -> None:
    """Store ``values`` (a dict, list or number) under ``section`` in the notebook's JSON file.

    Returns None, so a ``record(...)`` call at the end of a notebook cell prints nothing."""
    data = load(notebook) or {"notebook": notebook}
    data[section] = jsonable(values)
    _write(notebook, data)


def committed_dir() -> Path:
    """``notebooks/results/``: the results JSON and wall times of the run whose outputs are committed."""
    return notebooks_dir() / "results"


def committed_timings(notebook: str) -> dict:
    """``{"smoke": seconds, "full": seconds}`` (the modes timed so far) of the committed run's machine, from
    ``notebooks/results/_timings.json``; ``{}`` when the notebook has no committed timing."""
    path = committed_dir() / "_timings.json"
    entry = json.loads(path.read_text()).get(notebook, {}) if path.is_file() else {}
    return {mode: entry[mode] for mode in ("smoke", "full") if isinstance(entry.get(mode), (int, float))}


def rerun_time_text(notebook: str) -> str:
    """How long a re-run takes, e.g. ``"a re-run took 1.2 min smoke / 5.1 min full on the machine that recorded
    this page"``, or ``"no committed timing yet"``."""
    timings = committed_timings(notebook)
    if not timings:
        return "no committed timing yet"
    text = " / ".join(f"{timings[m] / 60:.1f} min {m}" for m in ("smoke", "full") if m in timings)
    return f"a re-run took {text} on the machine that recorded this page"
