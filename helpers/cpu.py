"""What this CPU can do for int8 and bf16: the one place every notebook, route and the bench reads it from.

int8 and bf16 are fast only with the right instructions (an int8 dot product, native bf16 arithmetic), so the course
asks the CPU before it explains or skips anything. ``features()`` answers on every OS: torch's own CPU checks first
(``torch.cpu.get_capabilities()``, the cpuinfo library PyTorch dispatches with), completed by what the OS reports
(``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS; torch alone on Windows). Every outside read is an argument, so a
test can describe a Graviton, an M2 or a Windows laptop without touching this machine. The derived answers
(``has_int8_dot``, ``has_native_bf16``, ``family``, ``describe``) are small functions of that mapping.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from typing import Mapping

import torch

#: The flags that decide int8 and bf16 speed, in the order every printout lists them. Keys are Linux's
#: /proc/cpuinfo names (x86 ``flags``, ARM ``Features``).
NOTABLE_FLAGS = (
    "avx2",         # x86: 256-bit integer SIMD; int8 via vpmaddubsw into saturating int16 pairs (no VNNI)
    "avx512f",      # x86: AVX-512 foundation, 512-bit registers
    "avx512_vnni",  # x86: vpdpbusd, four u8 x s8 products summed into int32 per lane: fast int8 GEMMs
    "avx_vnni",     # x86: the same VNNI dot product on 256-bit registers (Alder Lake and later)
    "avx512_bf16",  # x86: vdpbf16ps, native bf16 dot products
    "amx_int8",     # x86: AMX tiles multiplying int8 matrices (Sapphire Rapids and later)
    "amx_bf16",     # x86: AMX tiles multiplying bf16 matrices
    "asimd",        # ARM: NEON (Advanced SIMD), on every AArch64 CPU
    "asimddp",      # ARM: SDOT/UDOT int8 dot products (FEAT_DotProd), ARM's VNNI
    "i8mm",         # ARM: SMMLA int8 matrix multiply (FEAT_I8MM), twice the dot products' work per instruction
    "bf16",         # ARM: BFDOT/BFMMLA native bf16 arithmetic (FEAT_BF16)
    "sve",          # ARM: Scalable Vector Extension, vectors wider than NEON's 128 bits (Graviton 3 and later)
)
#: Instructions that multiply int8 pairs and sum them into int32 in one step.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
#: Instructions that compute in bf16 natively (without them bf16 is emulated or runs in generic code, slower than fp32).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
#: Each flag's key in ``torch.cpu.get_capabilities()`` (torch 2.13: ``torch/cpu/__init__.py`` lists the keys; the
#: ARM ones are set in ATen from cpuinfo's ``cpuinfo_has_arm_neon/neon_dot/i8mm/bf16/sve``).
TORCH_NAMES = {"avx2": "avx2", "avx512f": "avx512_f", "avx512_vnni": "avx512_vnni", "avx_vnni": "avx_vnni",
               "avx512_bf16": "avx512_bf16", "amx_int8": "amx_int8", "amx_bf16": "amx_bf16", "asimd": "neon",
               "asimddp": "dot", "i8mm": "i8mm", "bf16": "bf16", "sve": "sve"}
#: Each flag's macOS ``sysctl`` key, from Apple's "Determining Instruction Set Characteristics"
#: (developer.apple.com/documentation/kernel/1387446-sysctlbyname/determining_instruction_set_characteristics);
#: the FEAT_ names match ``sysctl hw.optional`` on an M2. Intel Macs: ``avx2_0`` and ``avx512f``; their VNNI and
#: bf16 come from torch's checks, which read CPUID.
SYSCTL_KEYS = {"asimd": "hw.optional.neon", "asimddp": "hw.optional.arm.FEAT_DotProd",
               "i8mm": "hw.optional.arm.FEAT_I8MM", "bf16": "hw.optional.arm.FEAT_BF16",
               "avx2": "hw.optional.avx2_0", "avx512f": "hw.optional.avx512f"}


def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:  # a container without /proc: torch's checks still answer
        return ""


def _read_sysctl() -> str:
    try:
        return subprocess.run(["sysctl", "hw.optional"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def cpuinfo_flags(text: str) -> set[str]:
    """The flags of the first processor in ``/proc/cpuinfo`` text: its x86 ``flags`` or ARM ``Features`` line."""
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def sysctl_flags(text: str) -> set[str]:
    """The ``NOTABLE_FLAGS`` that ``sysctl hw.optional`` output (``name: value`` lines) sets to 1."""
    values = {name.strip(): value.strip() for name, _, value in (line.partition(":") for line in text.splitlines())}
    return {flag for flag, key in SYSCTL_KEYS.items() if values.get(key) == "1"}


def features(cpuinfo_text: str | None = None, sysctl_text: str | None = None,
             torch_checks: Mapping[str, object] | None = None, torch_capability: str | None = None,
             system: str | None = None, machine: str | None = None) -> dict[str, bool | str]:
    """The CPU's int8/bf16 capabilities: ``machine`` (``platform.machine()``), ``os`` (``sys.platform``),
    ``torch_cpu_capability`` (the SIMD level torch dispatches to) and one bool per ``NOTABLE_FLAGS``.

    A flag is set when torch's checks (``torch_checks``, default ``torch.cpu.get_capabilities()``) or the OS say so:
    ``cpuinfo_text`` (default: /proc/cpuinfo, read on Linux only) and ``sysctl_text`` (default: ``sysctl
    hw.optional``, run on macOS only). To describe another machine pass all of them, ``torch_checks={}`` included.
    """
    system = sys.platform if system is None else system
    if torch_checks is None:  # torch 2.13 has it; without it (an older torch) the OS alone answers
        torch_checks = getattr(torch.cpu, "get_capabilities", dict)()
    if cpuinfo_text is None:
        cpuinfo_text = _read_cpuinfo() if system.startswith("linux") else ""
    if sysctl_text is None:
        sysctl_text = _read_sysctl() if system == "darwin" else ""
    from_os = cpuinfo_flags(cpuinfo_text) | sysctl_flags(sysctl_text)
    return {"machine": platform.machine() if machine is None else machine, "os": system,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability() if torch_capability is None
            else torch_capability,
            **{flag: bool(torch_checks.get(TORCH_NAMES[flag])) or flag in from_os for flag in NOTABLE_FLAGS}}


def notable_flags(f: Mapping[str, object]) -> list[str]:
    """The ``NOTABLE_FLAGS`` the CPU described by ``f`` has, in printing order."""
    return [flag for flag in NOTABLE_FLAGS if f.get(flag)]


def has_int8_dot(f: Mapping[str, object]) -> bool:
    """Whether int8 products sum into int32 in one instruction (AVX-512 VNNI, AVX-VNNI, AMX-INT8, ARM dotprod or
    i8mm): what makes int8 GEMMs clearly faster than fp32 ones. Without it int8 still runs (AVX2 and AVX-512
    kernels multiply u8 x s8 pairs into saturating int16 sums), at a smaller gain."""
    return any(f.get(flag) for flag in INT8_DOT_FLAGS)


def has_native_bf16(f: Mapping[str, object]) -> bool:
    """Whether bf16 runs natively (AVX512_BF16 or AMX-BF16 on x86, BF16 on ARM); elsewhere bf16 is slower than fp32."""
    return any(f.get(flag) for flag in NATIVE_BF16_FLAGS)


def family(f: Mapping[str, object]) -> str:
    """``"x86"``, ``"arm"`` or ``"other"``, from ``f["machine"]`` (x86_64, AMD64, aarch64, arm64, ARM64, ...)."""
    machine = str(f.get("machine", "")).lower()
    if machine in {"x86_64", "amd64", "i386", "i686", "x86"}:
        return "x86"
    return "arm" if machine.startswith(("arm", "aarch64")) else "other"


def is_x86(f: Mapping[str, object]) -> bool:
    """Whether ``f`` describes an x86 CPU (where x86 instruction-set caps such as ``ONEDNN_MAX_CPU_ISA`` apply)."""
    return family(f) == "x86"


def describe(f: Mapping[str, object]) -> str:
    """One line for the setup cell: machine, OS, torch's dispatch level and the notable flags present."""
    return (f"CPU: {f.get('machine')} ({f.get('os', 'OS not recorded')}), torch capability "
            f"{f.get('torch_cpu_capability')}; features: {', '.join(notable_flags(f)) or 'none of note'}")


def model_name(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The CPU's model name where the OS gives it (Linux ``model name``, else ``platform.processor()`` when it says
    more than the architecture); None otherwise."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split()) or None
    except OSError:
        pass
    name = platform.processor().strip()
    return name if name and name != platform.machine() else None
