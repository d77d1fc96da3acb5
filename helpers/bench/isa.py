"""What int8 gains on a CPU without VNNI: the same int8 Linear timed under older instruction sets, on this machine.

"int8 is barely faster than fp32" is the commonest complaint in quantization issue trackers, and it is usually the
CPU: int8 GEMMs are fast when the CPU has a dot-product instruction for int8 (VNNI) or int8 matrix tiles (AMX).
oneDNN, the library behind PyTorch's ``onednn`` quantized engine, reads ``ONEDNN_MAX_CPU_ISA`` once, at start-up,
and then uses no instruction set above that cap. So a child process started with, say, ``ONEDNN_MAX_CPU_ISA=AVX2``
shows what a CPU without AVX-512 and without VNNI would get -- on this machine, in this run.

``isa_sensitivity()`` starts one child per ISA (``python -m helpers.bench.isa --child``), 1 thread each. The child:

1. builds an fp32 ``nn.Linear`` (``shape`` = (tokens, in, out)). Its matmul is MKL's, which ignores oneDNN's
   variable, so for caps below AVX-512 the child also sets ``MKL_ENABLE_INSTRUCTIONS`` (``MKL_CAPS``) and fp32 is
   capped alike; the row reports the ISA MKL's verbose header names;
2. quantizes it with ``torch.ao.quantization.quantize_dynamic(..., dtype=torch.qint8)`` under
   ``torch.backends.quantized.engine = "onednn"``, and times both, alternating fp32 and int8 calls so that a
   changing load on the machine hits both alike (warm-up, then the median of ``runs`` each);
3. runs the int8 Linear once with oneDNN's verbose mode on (``torch.backends.mkldnn.verbose``) and reads the
   ``isa:`` line oneDNN prints, plus the int8 matmul kernel it picked, so each row *proves* which ISA was used.

A row whose reported ISA is below the requested one was capped: oneDNN never uses more than the CPU has (asking
for AVX512_CORE on an AVX2-only CPU gives AVX2). The ``fbgemm`` and ``x86`` engines dispatch on their own and
ignore the variable, which is why the child uses ``onednn``.

Reading your own CPU against the table
--------------------------------------
The setup cell of every notebook prints this machine's flags (``helpers.cpu.features()``). Elsewhere:
Linux ``grep -o -w -E 'avx2|avx512f|avx512_vnni|avx_vnni|avx512_bf16|amx_int8' /proc/cpuinfo | sort -u``;
macOS (Intel) ``sysctl -a | grep machdep.cpu``; Windows: Sysinternals ``coreinfo``. Then:

- ``amx_int8``: Intel Sapphire Rapids and later. Faster than every row here (AMX tiles); the DEFAULT row is a floor.
- ``avx512_vnni`` (AVX-512 with VNNI: Intel Cascade Lake and later Xeons, Ice Lake and later, AMD Zen 4 and
  later): the DEFAULT row on a VNNI machine.
- ``avx_vnni`` without ``avx512f`` (Intel Alder Lake and later laptops and desktops): VNNI on 256-bit registers;
  between the AVX2 row and a VNNI row (``isa_sensitivity(isas=("AVX2_VNNI",))`` measures it on a CPU that has it).
- ``avx512f`` without ``avx512_vnni`` (Intel Skylake-SP Xeons): the AVX512_CORE row.
- ``avx2`` only (most CPUs from 2013 to 2019, AMD Zen 1 to 3): the AVX2 row -- int8 gains less speed there than
  with VNNI (the row says how much less on this machine).
- ARM and Apple silicon: none of these rows apply (``isa_sensitivity`` returns no rows there, with the reason);
  the ARM ``asimddp`` (dot product) and ``i8mm`` flags play VNNI's role.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

from .. import cpu
from ..paths import PROJECT_ROOT
from ..peaks import DEFAULT_SHAPE  # the probe Linear: MiniLM's FFN-in at batch 32 x seq 128

ISA_ENV_VAR = "ONEDNN_MAX_CPU_ISA"

#: The values oneDNN 3.x accepts for ``ONEDNN_MAX_CPU_ISA``, lowest to highest ("DEFAULT": no cap).
#: oneDNN silently ignores anything else, so a typo would measure the default: we refuse it instead.
KNOWN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
              "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX", "AVX10_1_512_AMX",
              "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "DEFAULT")

#: What oneDNN's verbose ``isa:`` line says for each cap (oneDNN 3.x, ``get_isa_info``), for detecting a capped row.
ISA_DESCRIPTIONS = {
    "Intel SSE4.1": "SSE41",
    "Intel AVX": "AVX",
    "Intel AVX2": "AVX2",
    "Intel AVX2 with Intel DL Boost": "AVX2_VNNI",
    "Intel AVX2 with Intel DL Boost, float16 and bfloat16 support": "AVX2_VNNI_2",
    "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions": "AVX512_CORE",
    "Intel AVX-512 with Intel DL Boost": "AVX512_CORE_VNNI",
    "Intel AVX-512 with Intel DL Boost and bfloat16 support": "AVX512_CORE_BF16",
    "Intel AVX-512 with Intel DL Boost and bfloat16 support on Ymm/Zmm": "AVX512_CORE_BF16",
    "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support": "AVX512_CORE_FP16",
    "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit integer "
    "support": "AVX512_CORE_AMX",
    "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16, float16 and 8-bit "
    "integer support": "AVX512_CORE_AMX_FP16",
}
_ALIASES = {"AVX10_1_512": "AVX512_CORE_FP16", "AVX10_1_512_AMX": "AVX512_CORE_AMX",
            "AVX10_1_512_AMX_FP16": "AVX512_CORE_AMX_FP16"}

RESULT_MARKER = "ISA_PROBE_RESULT "

#: ``MKL_ENABLE_INSTRUCTIONS`` for the oneDNN caps below AVX-512, so that the fp32 Linear (MKL's GEMM) is capped
#: alike; from AVX512_CORE up, MKL is left at its default (its fp32 GEMM uses no VNNI, BF16 or AMX).
MKL_CAPS = {"SSE41": "SSE4_2", "AVX": "AVX", "AVX2": "AVX2", "AVX2_VNNI": "AVX2", "AVX2_VNNI_2": "AVX2"}


class IsaProbeError(RuntimeError):
    """A child process of ``isa_sensitivity`` failed, timed out or printed no result."""


@dataclass(frozen=True)
class IsaRow:
    """One ISA cap: what was asked, what oneDNN used, and the fp32 and int8 times of the same Linear."""
    isa_requested: str
    isa_reported: str | None   # oneDNN's own words, from its verbose "isa:" line (None if it printed none)
    capped: bool | None        # True: the CPU lacks the requested ISA, oneDNN used less; None: cannot tell
    int8_kernel: str | None    # oneDNN's implementation name for the int8 matmul, e.g. "brg_matmul:avx512_core_vnni"
    fp32_ms: float
    int8_ms: float
    fp32_spread_ms: float
    int8_spread_ms: float
    threads: int
    shape: tuple[int, int, int]
    runs: int
    fp32_isa: str | None = None  # the ISA MKL's verbose header names for the fp32 Linear ("AVX2", "AVX-512", ...)

    @property
    def speedup(self) -> float:
        """fp32 time / int8 time, both measured in the same child."""
        return self.fp32_ms / self.int8_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape), "speedup": self.speedup}


class IsaRows(list):
    """What ``isa_sensitivity`` returns: a list of ``IsaRow``, one per ISA; on a CPU where the caps do not apply, an
    empty list whose ``skipped`` says why (None when the rows were measured)."""

    def __init__(self, rows: Iterable[IsaRow] = (), skipped: str | None = None):
        super().__init__(rows)
        self.skipped = skipped


def normalize_isa(isa: str) -> str:
    """Upper-case ``isa`` and check it is a value oneDNN accepts (``KNOWN_ISAS``); raise ``ValueError`` if not."""
    name = str(isa).strip().upper()
    if name not in KNOWN_ISAS:
        raise ValueError(f"{isa!r} is not an {ISA_ENV_VAR} value oneDNN knows (it would silently ignore it and run "
                         f"the default); choose from {list(KNOWN_ISAS)}")
    return name


def reported_isa_name(description: str | None) -> str | None:
    """The ``ONEDNN_MAX_CPU_ISA`` name matching oneDNN's verbose ISA description, or None if unknown."""
    if description is None:
        return None
    return ISA_DESCRIPTIONS.get(description.replace("(preview support)", "").strip())


def is_capped(requested: str, reported: str | None) -> bool | None:
    """Whether oneDNN used less than ``requested`` (the CPU lacks it). None for DEFAULT or an unknown description."""
    got = reported_isa_name(reported)
    if requested == "DEFAULT" or got is None:
        return None
    return got != _ALIASES.get(requested, requested)


_MKL_ISA = re.compile(r"MKL_VERBOSE .*?\(Intel\(R\) (?P<isa>AVX[^)]*|SSE[^)]*)\)")
_ISA_LINE = re.compile(r"(?:onednn|dnnl)_verbose,.*\binfo,cpu,isa:(?P<isa>.+)$")
_EXEC_LINE = re.compile(r"(?:onednn|dnnl)_verbose,.*\bexec,cpu,(?P<primitive>[a-z_]+),(?P<impl>[^,]+),")


def parse_verbose(text: str) -> tuple[str | None, list[tuple[str, str]]]:
    """From oneDNN verbose output: the ``isa:`` description and the (primitive, implementation) of each exec line."""
    isa, kernels = None, []
    for line in text.splitlines():
        line = line.strip()
        if (m := _ISA_LINE.match(line)) and isa is None:
            isa = m.group("isa").strip()
        elif m := _EXEC_LINE.match(line):
            kernels.append((m.group("primitive"), m.group("impl")))
    return isa, kernels


def parse_mkl_isa(text: str) -> str | None:
    """The instruction set MKL's verbose header names ("AVX2", "AVX-512", ...), or None if MKL printed none."""
    m = _MKL_ISA.search(text)
    return m.group("isa") if m else None


# --- the child ------------------------------------------------------------------------------------------------

def _capture_verbose(fn, library=None) -> str:
    """Run ``fn()`` with ``library``'s verbose mode on (``torch.backends.mkldnn``, oneDNN, by default; or
    ``torch.backends.mkl``) and return what it printed (it writes to the C-level stdout)."""
    import ctypes
    import tempfile

    import torch

    library = torch.backends.mkldnn if library is None else library
    try:
        libc = ctypes.CDLL(None)  # to flush C stdio; not available on Windows
    except OSError:
        fn()
        return ""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as capture:
        os.dup2(capture.fileno(), 1)
        try:
            with library.verbose(library.VERBOSE_ON):
                fn()
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        return capture.read()


def _paired_latency(first, second, runs: int, warmup: int):
    """Time two calls in turn on 1 thread (``measure.round_robin``: a drifting load hits both alike)."""
    from .. import measure

    timed = measure.round_robin({"first": first, "second": second}, runs=runs, warmup=warmup, threads=1)
    return timed.latencies["first"], timed.latencies["second"]


def child_main(shape: tuple[int, int, int], runs: int, warmup: int) -> dict:
    """Inside the child: time fp32 and dynamic-int8 (onednn) Linear on 1 thread; read the ISA oneDNN uses."""
    import torch

    from .. import deprecations

    deprecations.silence_known()
    if "onednn" not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"this PyTorch build has no 'onednn' quantized engine "
                           f"(supported: {torch.backends.quantized.supported_engines}); the ISA table needs an x86 "
                           f"build of PyTorch")
    torch.backends.quantized.engine = "onednn"
    tokens, d_in, d_out = shape
    torch.manual_seed(0)
    fp32 = torch.nn.Sequential(torch.nn.Linear(d_in, d_out)).eval()
    x = torch.randn(tokens, d_in)
    int8 = torch.ao.quantization.quantize_dynamic(fp32, {torch.nn.Linear}, dtype=torch.qint8)
    with torch.inference_mode():
        int8(x)  # packs weights, creates the oneDNN primitives
        verbose = _capture_verbose(lambda: int8(x))
        fp32_isa = parse_mkl_isa(_capture_verbose(lambda: fp32(x), torch.backends.mkl))
    isa, kernels = parse_verbose(verbose)
    matmuls = [impl for primitive, impl in kernels if primitive in ("matmul", "inner_product")]
    fp32_lat, int8_lat = _paired_latency(lambda: fp32(x), lambda: int8(x), runs, warmup)
    return {"isa_reported": isa, "int8_kernel": matmuls[0] if matmuls else None,
            "fp32_ms": fp32_lat.median_ms, "int8_ms": int8_lat.median_ms, "fp32_spread_ms": fp32_lat.spread_ms,
            "int8_spread_ms": int8_lat.spread_ms, "threads": fp32_lat.threads, "shape": list(shape), "runs": runs,
            "fp32_isa": fp32_isa}


# --- the parent -----------------------------------------------------------------------------------------------

def _child_command(shape: tuple[int, int, int], runs: int, warmup: int) -> list[str]:
    return [sys.executable, "-m", "helpers.bench.isa", "--child", "--shape", *map(str, shape), "--runs", str(runs),
            "--warmup", str(warmup)]


def _child_env(isa: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in (ISA_ENV_VAR, "DNNL_MAX_CPU_ISA", "ONEDNN_VERBOSE", "DNNL_VERBOSE", "MKL_ENABLE_INSTRUCTIONS",
                 "MKL_VERBOSE"):
        env.pop(name, None)
    if isa != "DEFAULT":
        env[ISA_ENV_VAR] = isa
    if isa in MKL_CAPS:
        env["MKL_ENABLE_INSTRUCTIONS"] = MKL_CAPS[isa]
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # the child imports this checkout's helpers, whatever is installed in the environment
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty)"


def run_child(isa: str, shape: tuple[int, int, int] = DEFAULT_SHAPE, runs: int = 5, warmup: int = 2,
              timeout_s: float = 120.0) -> IsaRow:
    """One child process with ``ONEDNN_MAX_CPU_ISA=isa`` (unset for "DEFAULT"); its measurements as an ``IsaRow``.

    Raises ``IsaProbeError`` naming the ISA and the cause (exit status and the tail of the child's stderr, a
    timeout, or no result line)."""
    isa = normalize_isa(isa)
    try:
        proc = subprocess.run(_child_command(shape, runs, warmup), env=_child_env(isa), capture_output=True,
                              text=True, timeout=timeout_s, cwd=str(PROJECT_ROOT))
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise IsaProbeError(f"the {ISA_ENV_VAR}={isa} child did not finish within {timeout_s:g} s (a busy machine or "
                            f"a large shape); pass a larger timeout_s or a smaller shape/runs. Its stderr so far:\n"
                            f"{_tail(stderr)}") from None
    if proc.returncode != 0:
        raise IsaProbeError(f"the {ISA_ENV_VAR}={isa} child failed with exit status {proc.returncode}; the end of "
                            f"its stderr:\n{_tail(proc.stderr)}")
    results = [line[len(RESULT_MARKER):] for line in proc.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if not results:
        raise IsaProbeError(f"the {ISA_ENV_VAR}={isa} child exited normally but printed no result line; "
                            f"stdout:\n{_tail(proc.stdout)}\nstderr:\n{_tail(proc.stderr)}")
    r = json.loads(results[-1])
    return IsaRow(isa, r["isa_reported"], is_capped(isa, r["isa_reported"]), r["int8_kernel"], r["fp32_ms"],
                  r["int8_ms"], r["fp32_spread_ms"], r["int8_spread_ms"], r["threads"], tuple(r["shape"]), r["runs"],
                  r.get("fp32_isa"))


def isa_sensitivity(isas: Iterable[str] = ("DEFAULT", "AVX512_CORE", "AVX2"),
                    shape: tuple[int, int, int] = DEFAULT_SHAPE, runs: int = 5, warmup: int = 2,
                    timeout_s: float = 120.0, features: Mapping[str, object] | None = None) -> IsaRows:
    """fp32 vs dynamic int8 (onednn engine) of one Linear, 1 thread, under each ``ONEDNN_MAX_CPU_ISA`` cap.

    One child process per ISA, run one after the other (``run_child``); ``shape`` = (tokens, in_features,
    out_features). Every ISA name is checked before any child starts. Each row says which ISA oneDNN reported, so
    a cap the CPU cannot reach shows up as ``capped=True`` rather than as a mislabelled number. The caps are x86
    instruction sets: on another CPU (``features``, default ``helpers.cpu.features()``) no child starts and the
    result is empty, with the reason in ``skipped``."""
    names = [normalize_isa(isa) for isa in isas]
    if not names:
        raise ValueError("no ISA to measure: pass at least one, e.g. isas=('DEFAULT', 'AVX2')")
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"shape must be three positive integers (tokens, in_features, out_features), got {shape!r}")
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    features = cpu.features() if features is None else features
    if not cpu.is_x86(features):
        return IsaRows(skipped=f"{ISA_ENV_VAR} caps x86 instruction sets; this CPU is {features.get('machine')}, "
                               "so the table does not apply here")
    return IsaRows(run_child(isa, shape, runs, warmup, timeout_s) for isa in names)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fp32 vs int8 Linear under oneDNN ISA caps (see helpers.bench.isa)")
    parser.add_argument("--child", action="store_true", help="measure in this process (ONEDNN_MAX_CPU_ISA as set)")
    parser.add_argument("--isas", default="DEFAULT,AVX512_CORE,AVX2", help="comma-separated caps (parent mode)")
    parser.add_argument("--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE), metavar=("TOKENS", "IN", "OUT"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    if args.child:
        print(RESULT_MARKER + json.dumps(child_main(tuple(args.shape), args.runs, args.warmup)), flush=True)
        return
    rows = isa_sensitivity(args.isas.split(","), tuple(args.shape), args.runs, args.warmup)
    if rows.skipped:
        print(f"not measured: {rows.skipped}")
    for row in rows:
        print(f"{row.isa_requested:12s} oneDNN used: {row.isa_reported} (kernel {row.int8_kernel}"
              f"; MKL fp32: {row.fp32_isa}"
              f"{', capped' if row.capped else ''})  fp32 {row.fp32_ms:.1f} ms  int8 {row.int8_ms:.1f} ms  "
              f"speedup {row.speedup:.2f}x")


if __name__ == "__main__":
    _main()
