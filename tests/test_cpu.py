"""helpers.cpu reads the int8/bf16 flags right on every OS; the engine choice and the ISA table follow the CPU.

Other machines are simulated through the arguments of ``cpu.features``: no /proc/cpuinfo is read. Only the test of
notebook 06's x86-only cell patches ``cpu.features``, because the cell calls it without arguments."""

import contextlib
import io
import json
from pathlib import Path

import pytest

from helpers import cpu, engine
from helpers.bench import isa

GRAVITON3_CPUINFO = ("processor\t: 0\nBogoMIPS\t: 2100.00\n"
                     "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt "
                     "fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg "
                     "dcpodp svei8mm svebf16 i8mm bf16 dgh rng\nCPU implementer\t: 0x41\n")
M2_SYSCTL = ("hw.optional.arm.FEAT_DotProd: 1\nhw.optional.arm.FEAT_BF16: 1\nhw.optional.arm.FEAT_I8MM: 1\n"
             "hw.optional.arm.FEAT_SME: 0\nhw.optional.neon: 1\nhw.optional.floatingpoint: 1\n")
AVX2_ONLY_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 ssse3 sse4_1 sse4_2 avx avx2 fma bmi2\n"
VNNI_CPUINFO = ("processor\t: 0\nvendor_id\t: GenuineIntel\n"
                "flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512vl avx512_vnni\nvmx flags\t: ept\n\n"
                "processor\t: 1\nflags\t\t: fpu sse2\n")
SAPPHIRE_RAPIDS_CPUINFO = ("flags\t\t: fpu avx2 avx512f avx512_vnni avx_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n")
#: torch.cpu.get_capabilities() of a Windows laptop with an Alder Lake CPU: AVX-VNNI on 256-bit registers only
ALDER_LAKE_TORCH = {"architecture": "x86_64", "avx2": True, "avx512_f": False, "avx_vnni": True, "avx512_vnni": False,
                    "avx512_bf16": False, "amx_int8": False, "amx_bf16": False, "amx_tile": False}
EVERY_ENGINE = ("qnnpack", "onednn", "x86", "fbgemm")

MACHINES = {
    "graviton3": dict(system="linux", machine="aarch64", cpuinfo_text=GRAVITON3_CPUINFO, torch_checks={},
                      torch_capability="SVE256"),
    "m2": dict(system="darwin", machine="arm64", sysctl_text=M2_SYSCTL, torch_checks={}, torch_capability="DEFAULT"),
    "windows": dict(system="win32", machine="AMD64", torch_checks=ALDER_LAKE_TORCH, torch_capability="AVX2"),
    "avx2-linux": dict(system="linux", machine="x86_64", cpuinfo_text=AVX2_ONLY_CPUINFO, torch_checks={},
                       torch_capability="AVX2"),
    "vnni-linux": dict(system="linux", machine="x86_64", cpuinfo_text=VNNI_CPUINFO, torch_checks={},
                       torch_capability="AVX512"),
    "amx-linux": dict(system="linux", machine="x86_64", cpuinfo_text=SAPPHIRE_RAPIDS_CPUINFO, torch_checks={},
                      torch_capability="AVX512"),
}

# machine -> (the flags it has, has_int8_dot, has_native_bf16, family, the setup line,
#             the engines its PyTorch build lists, the engine chosen)
EXPECTED = {
    "graviton3": ({"asimd", "asimddp", "i8mm", "bf16", "sve"}, True, True, "arm",
                  "CPU: aarch64 (linux), torch capability SVE256; features: asimd, asimddp, i8mm, bf16, sve",
                  ("qnnpack", "onednn", "none"), "onednn"),
    "m2": ({"asimd", "asimddp", "i8mm", "bf16"}, True, True, "arm",
           "CPU: arm64 (darwin), torch capability DEFAULT; features: asimd, asimddp, i8mm, bf16",
           ("qnnpack", "onednn", "none"), "qnnpack"),
    "windows": ({"avx2", "avx_vnni"}, True, False, "x86",
                "CPU: AMD64 (win32), torch capability AVX2; features: avx2, avx_vnni", EVERY_ENGINE, "x86"),
    "avx2-linux": ({"avx2"}, False, False, "x86",
                   "CPU: x86_64 (linux), torch capability AVX2; features: avx2", EVERY_ENGINE, "x86"),
    "vnni-linux": ({"avx2", "avx512f", "avx512_vnni"}, True, False, "x86",
                   "CPU: x86_64 (linux), torch capability AVX512; features: avx2, avx512f, avx512_vnni",
                   EVERY_ENGINE, "x86"),
    "amx-linux": ({"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16"}, True, True,
                  "x86", "CPU: x86_64 (linux), torch capability AVX512; features: avx2, avx512f, avx512_vnni, "
                  "avx_vnni, avx512_bf16, amx_int8, amx_bf16", ("qnnpack", "fbgemm"), "fbgemm"),
}


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_each_simulated_machine_reads_its_flags_and_gets_its_engine(name):
    flags, int8_dot, native_bf16, family, line, supported, chosen = EXPECTED[name]
    f = cpu.features(**MACHINES[name])
    assert {flag for flag in cpu.NOTABLE_FLAGS if f[flag]} == flags
    assert set(f) == {"machine", "os", "torch_cpu_capability", *cpu.NOTABLE_FLAGS}
    assert cpu.has_int8_dot(f) is int8_dot and cpu.has_native_bf16(f) is native_bf16
    assert cpu.family(f) == family and cpu.is_x86(f) is (family == "x86")
    assert cpu.describe(f) == line
    choice = engine.choose_engine(supported, f["machine"], system=f["os"])
    assert choice.engine == chosen and f["machine"] in choice.reason


def test_linux_aarch64_prefers_onednn_and_says_why_while_macos_keeps_qnnpack():
    linux = engine.choose_engine(["qnnpack", "onednn", "none"], "aarch64", system="linux")
    assert linux.engine == "onednn" and "Arm Compute Library" in linux.reason and "Linux aarch64" in linux.reason
    no_onednn = engine.choose_engine(["qnnpack", "none"], "aarch64", system="linux")
    assert no_onednn.engine == "qnnpack" and "fallback #1 (onednn missing)" in no_onednn.reason
    mac = engine.choose_engine(["qnnpack", "onednn", "none"], "arm64", system="darwin")
    assert mac.engine == "qnnpack" and "Apple silicon" in mac.reason


def test_torch_checks_and_the_os_complete_each_other():
    # torch's cpuinfo saw only NEON; /proc/cpuinfo adds the dot product: either source is enough for a flag
    f = cpu.features(cpuinfo_text="Features\t: fp asimd asimddp\n", torch_checks={"neon": True, "i8mm": True},
                     system="linux", machine="aarch64", torch_capability="DEFAULT")
    assert cpu.notable_flags(f) == ["asimd", "asimddp", "i8mm"]
    # macOS: /proc/cpuinfo text is never read there, and sysctl keys set to 0 stay off
    f = cpu.features(sysctl_text="hw.optional.arm.FEAT_DotProd: 0\nhw.optional.arm.FEAT_BF16: 1\n",
                     torch_checks={}, system="darwin", machine="arm64", torch_capability="DEFAULT")
    assert cpu.notable_flags(f) == ["bf16"] and not cpu.has_int8_dot(f) and cpu.has_native_bf16(f)


def test_an_intel_mac_reads_its_avx_keys_from_sysctl():
    f = cpu.features(sysctl_text="hw.optional.avx1_0: 1\nhw.optional.avx2_0: 1\nhw.optional.avx512f: 0\n",
                     torch_checks={}, system="darwin", machine="x86_64", torch_capability="AVX2")
    assert cpu.notable_flags(f) == ["avx2"] and cpu.family(f) == "x86"


def test_a_cpu_with_no_flag_of_note_says_so():
    f = cpu.features(cpuinfo_text="", torch_checks={}, system="linux", machine="riscv64", torch_capability="DEFAULT")
    assert cpu.family(f) == "other" and not cpu.has_int8_dot(f) and not cpu.has_native_bf16(f)
    assert cpu.describe(f).endswith("features: none of note")
    assert cpu.describe({"machine": "arm64"}) == ("CPU: arm64 (OS not recorded), torch capability None; "
                                                  "features: none of note")  # an old record without "os"


def test_this_machine_reports_every_flag_torch_detects():
    f = cpu.features()
    assert f["torch_cpu_capability"] == cpu.torch.backends.cpu.get_cpu_capability()
    caps = cpu.torch.cpu.get_capabilities()
    assert all(f[flag] for flag, key in cpu.TORCH_NAMES.items() if caps.get(key))


@pytest.mark.parametrize("name", ["graviton3", "m2"])
def test_the_isa_table_is_skipped_with_the_reason_on_arm(name, monkeypatch):
    def no_child(*args, **kwargs):
        raise AssertionError("a child process was started on an ARM CPU")

    monkeypatch.setattr(isa, "run_child", no_child)
    rows = isa.isa_sensitivity(features=cpu.features(**MACHINES[name]))
    assert rows == [] and rows.skipped == (f"ONEDNN_MAX_CPU_ISA caps x86 instruction sets; this CPU is "
                                           f"{MACHINES[name]['machine']}, so the table does not apply here")


def _code_cell(notebook: str, needle: str) -> str:
    path = Path(__file__).resolve().parents[1] / "notebooks" / notebook
    cells = json.loads(path.read_text())["cells"]
    found = ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and needle in "".join(c["source"])]
    assert len(found) == 1, f"{notebook}: expected one code cell with {needle!r}, found {len(found)}"
    return found[0]


class _Recorder:
    def __init__(self):
        self.calls = []

    def record(self, *args):
        self.calls.append(args)

    def show(self, *args, **kwargs):
        raise AssertionError("the ISA table was shown on a CPU it does not apply to")


@pytest.mark.parametrize("name", ["graviton3", "m2"])
def test_notebook_06_isa_cell_skips_with_the_reason_on_a_simulated_arm_cpu(name, monkeypatch):
    simulated = cpu.features(**MACHINES[name])
    monkeypatch.setattr(cpu, "features", lambda: simulated)
    monkeypatch.setattr(isa, "run_child", lambda *a, **k: pytest.fail("a child process was started on ARM"))
    recorder, out = _Recorder(), io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(_code_cell("06_choosing_a_route.ipynb", "isa.isa_sensitivity("),
             {"RUNS": 1, "NOTEBOOK": "06", "tables": recorder, "results": recorder})
    assert out.getvalue().startswith("not measured: ONEDNN_MAX_CPU_ISA caps x86 instruction sets")
    assert MACHINES[name]["machine"] in out.getvalue()
    assert recorder.calls == [("06", "isa_sensitivity", [])]


def test_model_name_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R)   CPU @ 2.20GHz\nflags\t: avx2\n")
    assert cpu.model_name(str(info)) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
