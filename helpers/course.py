"""The setup cell every notebook shares: seed, choose the quantized engine, print versions and CPU features.

    import helpers.course
    env = helpers.course.setup("01_int8_scaling", smoke=SMOKE)

It also starts the notebook's results record (build/results/<notebook>.json) with the environment it ran in.
``environment`` and ``describe_environment`` are the one description of the machine: the setup cell prints it,
and the bench (``helpers.bench``) records and prints the same.
"""

from __future__ import annotations

import os
import platform
import random
import sys
import time
from importlib import metadata

import torch

from . import cpu as cpu_mod
from . import deprecations, machine_load, measure, results
from . import engine as engine_mod

MIN_PYTHON = (3, 10)
TORCH_VERSION = "2.13"
#: The libraries whose versions the numbers depend on, beside Python and torch (read from the installed package
#: metadata, so describing the machine imports none of them).
VERSIONED = ("torchao", "onnxruntime", "transformers")


def seed_everything(seed: int = 0) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def versions() -> dict[str, str]:
    """Python, torch and the ``VERSIONED`` libraries; a library that is not installed says so."""
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def thread_settings() -> dict:
    """torch's intra- and inter-op threads, the CPUs this process may use, and ``OMP_NUM_THREADS``."""
    return {"torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads(),
            "available_cpus": measure.available_threads(), "cpu_count": os.cpu_count(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


def environment() -> dict:
    """What the numbers depend on: versions, CPU features (``helpers.cpu.features``), thread settings, quantized
    engine and platform."""
    return {"versions": versions(), "cpu": cpu_mod.features(), "threads": thread_settings(),
            "quantized_engine": torch.backends.quantized.engine, "platform": platform.platform()}


def describe_environment(env: dict) -> str:
    """``environment()`` in three lines: versions, CPU and its notable features (``helpers.cpu.describe``), threads."""
    th = env["threads"]
    return "\n".join([
        " | ".join(f"{name} {version}" for name, version in env["versions"].items()),
        cpu_mod.describe(env["cpu"]),
        f"threads: torch intra-op {th['torch_intra_op']}, inter-op {th['torch_inter_op']}, "
        f"{th['available_cpus']} CPUs available, OMP_NUM_THREADS={th['OMP_NUM_THREADS']}",
    ])


def setup(notebook: str, smoke: bool = True, seed: int = 0, engine: str | None = None, verbose: bool = True) -> dict:
    """Prepare a notebook run and return what it ran on (also recorded under ``meta`` in the results JSON)."""
    assert sys.version_info >= MIN_PYTHON, (f"this course needs Python >= {MIN_PYTHON}, "
                                            f"found {platform.python_version()}")
    if not torch.__version__.startswith(TORCH_VERSION):
        print(f"⚠️  the course is pinned to torch {TORCH_VERSION}.x and tested there; found {torch.__version__}.")
    deprecations.silence_import_noise()
    seed_everything(seed)
    choice = engine_mod.select_engine(engine)
    machine = environment()
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "engine": choice.engine,
        "engine_reason": choice.reason,
        "supported_engines": list(choice.supported),
        "cpu": machine["cpu"],
        "smoke": smoke,
        "seed": seed,
    }
    load = machine_load.measure_load()  # how busy the machine is: recorded, so every timing says so
    results.start(notebook, **env, load=load)
    if verbose:
        print(describe_environment(machine))
        print(choice)
        cpu = cpu_mod.model_name() or machine["cpu"].get("machine")
        print(f"mode: {'SMOKE (quick settings)' if smoke else 'FULL (workshop settings)'}; seed {seed}; "
              f"{time.strftime('%Y-%m-%d')} on {cpu} (torch {machine['cpu'].get('torch_cpu_capability')}); "
              f"machine {'busy' if load.busy else 'quiet'}")
        print(results.rerun_time_text(notebook) + ("" if smoke else "; the parameters cell above says SMOKE = True "
                                                   "for learners: a re-run uses quick settings unless you change it"))
        if load.busy:
            print(f"⚠️ the machine is busy ({load.reason}): timings in this run are noisy; re-run on a quiet machine "
                  "before comparing speeds")
    return env
