"""Choosing the quantized engine: the fix for ``RuntimeError: ... NoQEngine``.

PyTorch runs int8 kernels through a *quantized engine* (``torch.backends.quantized.engine``). The source notes crashed
with ``Didn't find engine for operation quantized::linear_prepack NoQEngine`` because no engine was active on their
platform (Apple silicon and some ARM builds start with ``none``). The fix is to pick one the build supports:

- x86-64: ``x86`` (a dynamic Linear or LSTM runs FBGEMM's kernels under it), then ``fbgemm``;
- Linux aarch64: ``onednn``, backed by the Arm Compute Library, PyTorch's fast dynamic int8 Linear there
  (pytorch/pytorch#126687, #148585), then ``qnnpack``;
- macOS on Apple silicon (and other ARM systems): ``qnnpack``, then ``onednn``;
- an explicit override (argument or ``$INT8_COURSE_ENGINE``) wins.

The CPU's family comes from ``helpers.cpu``, which also reads its int8/bf16 flags.

``simulate_build`` reproduces the crash on a build that cannot produce it (notebook 02 and the tests).
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from dataclasses import dataclass

import torch

from . import cpu

ENGINE_ENV_VAR = "INT8_COURSE_ENGINE"

#: Preferred engines per platform (``platform_key``), best first, and why the first one is the right choice there.
PREFERENCES: dict[str, tuple[str, ...]] = {
    "x86": ("x86", "fbgemm", "onednn", "qnnpack"),
    "linux-arm": ("onednn", "qnnpack"),
    "arm": ("qnnpack", "onednn"),
    "other": ("x86", "fbgemm", "onednn", "qnnpack"),
}
WHY_FIRST = {
    "x86": "x86 is PyTorch's default int8 engine on x86-64 (a dynamic Linear or LSTM runs FBGEMM's kernels)",
    "linux-arm": "onednn (Arm Compute Library) is PyTorch's fast dynamic int8 Linear on Linux aarch64",
    "arm": "qnnpack is PyTorch's int8 engine on Apple silicon and other non-Linux ARM systems",
    "other": "no engine is known to be best on this CPU, so the x86-64 order is tried",
}


class NoQuantizedEngineError(RuntimeError):
    """No quantized engine is usable in this PyTorch build."""


@dataclass(frozen=True)
class EngineChoice:
    engine: str
    reason: str
    supported: tuple[str, ...]
    machine: str

    def __str__(self) -> str:
        return f"quantized engine: {self.engine} ({self.reason}); supported here: {list(self.supported)}"


def platform_key(machine: str, system: str) -> str:
    """The ``PREFERENCES`` row for ``platform.machine()`` and ``sys.platform``: x86, linux-arm, arm or other."""
    family = cpu.family({"machine": machine})
    return "linux-arm" if family == "arm" and system.startswith("linux") else family


def choose_engine(supported, machine: str, override: str | None = None, system: str = sys.platform) -> EngineChoice:
    """Decide which engine to use. Pure: it only looks at its arguments.

    ``supported`` is what ``torch.backends.quantized.supported_engines`` returns; ``none`` is not an engine.
    ``system`` is ``sys.platform``: on ARM the best engine differs between Linux and macOS.
    """
    supported = tuple(supported)
    usable = [e for e in supported if e != "none"]
    if override:
        if override not in usable:
            raise ValueError(
                f"quantized engine {override!r} was requested but this PyTorch build supports {usable or 'none'}. "
                f"Pick one of those, or unset {ENGINE_ENV_VAR}."
            )
        return EngineChoice(override, "explicit override", supported, machine)
    if not usable:
        raise NoQuantizedEngineError(
            f"No quantized engine is available (torch.backends.quantized.supported_engines = {list(supported)}), so "
            "int8 operators fail with 'NoQEngine'. Install an official PyTorch CPU build, which ships x86/fbgemm on "
            "x86-64 and qnnpack on ARM (this course's: `pip install -r requirements.txt`). A custom build needs "
            "USE_FBGEMM=1 or USE_PYTORCH_QNNPACK=1."
        )
    key = platform_key(machine, system)
    order = PREFERENCES[key]
    for rank, engine in enumerate(order):
        if engine in usable:
            why = "first choice" if rank == 0 else f"fallback #{rank} ({', '.join(order[:rank])} missing)"
            return EngineChoice(engine, f"{why} on {machine} ({system}): {WHY_FIRST[key]}", supported, machine)
    return EngineChoice(usable[0], f"only usable engine on {machine} ({system})", supported, machine)


def select_engine(override: str | None = None, verbose: bool = False) -> EngineChoice:
    """Choose an engine for this machine, activate it and return the choice."""
    override = override or os.environ.get(ENGINE_ENV_VAR) or None
    choice = choose_engine(torch.backends.quantized.supported_engines, platform.machine(), override, sys.platform)
    torch.backends.quantized.engine = choice.engine
    if verbose:
        print(choice)
    return choice


@contextlib.contextmanager
def using(engine: str | None):
    """Run a block with ``torch.backends.quantized.engine = engine``; restore the previous engine afterwards.

    ``None`` leaves the engine as it is. An engine this build does not support raises ``ValueError`` naming the
    ones it does. Quantize and run under the same engine: packed int8 weights belong to the engine that packed them.
    """
    before = torch.backends.quantized.engine
    if engine is not None:
        usable = [e for e in torch.backends.quantized.supported_engines if e != "none"]
        if engine not in usable:
            raise ValueError(f"quantized engine {engine!r} is not supported by this PyTorch build; "
                             f"choose one of {usable}")
        torch.backends.quantized.engine = engine
    try:
        yield torch.backends.quantized.engine
    finally:
        torch.backends.quantized.engine = before


#: torch's C++ names of the engines, as its error messages print them (``none`` is ``NoQEngine``).
TORCH_ENGINE_NAMES = {"none": "NoQEngine", "fbgemm": "FBGEMM", "qnnpack": "QNNPACK", "onednn": "ONEDNN", "x86": "X86"}
#: What the source notes' machine had: a build with qnnpack only, started with no engine active.
NOTES_BUILD = {"supported": ("qnnpack", "none"), "active": "none"}


class _SimulatedBackend:
    """Stands in for ``torch.backends.quantized`` inside ``simulate_build``: the simulated list and engine. Setting
    an engine the simulated build lacks raises torch's own message; setting one it has also activates it for real,
    so int8 kernels run."""

    def __init__(self, supported, active: str, real):
        self.supported_engines, self._engine, self._real = list(supported), active, real

    @property
    def engine(self) -> str:
        return self._engine

    @engine.setter
    def engine(self, name: str) -> None:
        if name not in self.supported_engines:
            raise RuntimeError(f"quantized engine {TORCH_ENGINE_NAMES.get(name, name)} is not supported")
        if name != "none":
            self._real.engine = name
        self._engine = name


@contextlib.contextmanager
def simulate_build(supported=NOTES_BUILD["supported"], active: str = NOTES_BUILD["active"]):
    """Run a block as if PyTorch were a build listing ``supported`` engines with ``active`` switched on.

    For showing the ``NoQEngine`` crash on a machine that cannot produce it: torch 2.13 on x86-64 refuses
    ``torch.backends.quantized.engine = "none"``. Inside the block ``torch.backends.quantized`` reports the simulated
    list and engine, and ``torch.ops.quantized.linear_prepack`` (the op ``quantize_dynamic`` packs every int8 weight
    with) raises torch's own ``Didn't find engine for operation quantized::linear_prepack NoQEngine`` while the
    simulated engine is ``none``; otherwise it runs for real. Everything is restored afterwards. Yields the stand-in.
    """
    real_backend = torch.backends.quantized
    active_before = real_backend.engine
    usable_here = set(real_backend.supported_engines)
    missing = [e for e in supported if e != "none" and e not in usable_here]
    if missing or active not in supported:
        raise ValueError(f"cannot simulate supported={list(supported)}, active={active!r}: the active engine must be "
                         f"in the list, and every listed engine must exist in this build ({sorted(usable_here)})")
    fake = _SimulatedBackend(supported, active, real_backend)
    real_prepack = torch.ops.quantized.linear_prepack

    def linear_prepack(*args, **kwargs):
        if fake.engine == "none":
            raise RuntimeError("Didn't find engine for operation quantized::linear_prepack NoQEngine")
        return real_prepack(*args, **kwargs)

    torch.backends.quantized = fake
    setattr(torch.ops.quantized, "linear_prepack", linear_prepack)
    try:
        yield fake
    finally:
        torch.backends.quantized = real_backend
        setattr(torch.ops.quantized, "linear_prepack", real_prepack)
        real_backend.engine = active_before
