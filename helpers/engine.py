"""Choosing the quantized engine: the fix for ``RuntimeError: ... NoQEngine``.

PyTorch runs int8 kernels through a *quantized engine* (``torch.backends.quantized.engine``). The source notes crashed
with ``Didn't find engine for operation quantized::linear_prepack NoQEngine`` because no engine was active on their
platform (Apple silicon and some ARM builds start with ``none``). The fix is to pick one the build supports:

- x86-64: ``x86`` (fbgemm plus oneDNN heuristics), then ``fbgemm``;
- ARM, Apple silicon included: ``qnnpack``;
- an explicit override (argument or ``$INT8_COURSE_ENGINE``) wins.

``simulate_build`` reproduces the crash on a build that cannot produce it (notebook 02 and the tests).
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass

import torch

ENGINE_ENV_VAR = "INT8_COURSE_ENGINE"

#: Preferred engines per CPU family, best first.
PREFERENCES: dict[str, tuple[str, ...]] = {
    "x86": ("x86", "fbgemm", "onednn", "qnnpack"),
    "arm": ("qnnpack", "onednn"),
    "other": ("x86", "fbgemm", "onednn", "qnnpack"),
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


def cpu_family(machine: str) -> str:
    """Map ``platform.machine()`` to ``x86``, ``arm`` or ``other``."""
    m = machine.lower()
    if m in {"x86_64", "amd64", "i386", "i686", "x86"}:
        return "x86"
    if m.startswith(("arm", "aarch64")):
        return "arm"
    return "other"


def choose_engine(supported, machine: str, override: str | None = None) -> EngineChoice:
    """Decide which engine to use. Pure: it only looks at its arguments.

    ``supported`` is what ``torch.backends.quantized.supported_engines`` returns; ``none`` is not an engine.
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
            "x86-64 and qnnpack on ARM: `pip install torch==2.13.0`. A custom build needs USE_FBGEMM=1 or "
            "USE_PYTORCH_QNNPACK=1."
        )
    family = cpu_family(machine)
    for engine in PREFERENCES[family]:
        if engine in usable:
            rank = PREFERENCES[family].index(engine)
            why = "first choice" if rank == 0 else f"fallback #{rank} ({', '.join(PREFERENCES[family][:rank])} missing)"
            return EngineChoice(engine, f"{why} for {family} CPUs ({machine})", supported, machine)
    return EngineChoice(usable[0], f"only usable engine on {machine}", supported, machine)


def select_engine(override: str | None = None, verbose: bool = False) -> EngineChoice:
    """Choose an engine for this machine, activate it and return the choice."""
    override = override or os.environ.get(ENGINE_ENV_VAR) or None
    choice = choose_engine(torch.backends.quantized.supported_engines, platform.machine(), override)
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
            raise ValueError(f"quantized engine {engine!r} is not supported by this PyTorch build; choose one of {usable}")
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

#: The CPU features that decide int8 and bf16 speed, in the order every printout lists them (the setup cell's and the
#: bench's): AVX2, AVX-512, the VNNI int8 dot products, AVX-512 BF16, Intel AMX tiles, and ARM's NEON.
NOTABLE_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "neon/asimd")
#: Where a key above is not the name ``/proc/cpuinfo`` uses.
_CPUINFO_NAMES = {"neon/asimd": "asimd"}


def cpu_features(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict[str, bool | str]:
    """The CPU features that decide int8 and bf16 speed (``NOTABLE_CPU_FLAGS``), plus the machine and the SIMD level
    torch dispatches to.

    ``cpuinfo`` is the file to read the flags from (``/proc/cpuinfo``; tests pass a fake one). Where it is
    missing (macOS, Windows) every flag reads False.
    """
    flags: set[str] = set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {"machine": platform.machine(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            **{key: _CPUINFO_NAMES.get(key, key) in flags for key in NOTABLE_CPU_FLAGS}}
