"""The setup cell every notebook shares: seed, choose the quantized engine, print versions and CPU features.

    import helpers.course
    env = helpers.course.setup("01_int8_scaling", smoke=SMOKE)

It also starts the notebook's results record (build/results/<notebook>.json) with the environment it ran in.
"""

from __future__ import annotations

import os
import platform
import random
import sys

import torch

from . import deprecations
from . import engine as engine_mod
from . import results

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MIN_PYTHON = (3, 10)
TORCH_VERSION = "2.13"


def seed_everything(seed: int = 0) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def setup(notebook: str, smoke: bool = True, seed: int = 0, engine: str | None = None, verbose: bool = True) -> dict:
    """Prepare a notebook run and return what it ran on (also recorded under ``meta`` in the results JSON)."""
    assert sys.version_info >= MIN_PYTHON, f"this course needs Python >= {MIN_PYTHON}, found {platform.python_version()}"
    if not torch.__version__.startswith(TORCH_VERSION):
        print(f"⚠️  the course is pinned to torch {TORCH_VERSION}.x and tested there; found {torch.__version__}.")
    deprecations.silence_import_noise()
    seed_everything(seed)
    choice = engine_mod.select_engine(engine)
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "engine": choice.engine,
        "engine_reason": choice.reason,
        "supported_engines": list(choice.supported),
        "cpu": engine_mod.cpu_features(),
        "smoke": smoke,
        "seed": seed,
    }
    results.start(notebook, **env)
    if verbose:
        feats = env["cpu"]
        flags = ", ".join(k for k in ("avx2", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "neon/asimd") if feats[k])
        print(f"python {env['python']} | torch {env['torch']} | {env['threads']} threads of {env['cpu_count']} CPUs")
        print(f"CPU: {feats['machine']}, torch capability {feats['torch_cpu_capability']}; features: {flags or 'none of note'}")
        print(choice)
        print(f"mode: {'SMOKE (quick settings)' if smoke else 'FULL (workshop settings)'}; seed {seed}")
    return env
