"""helpers.bench.isa: child processes under ONEDNN_MAX_CPU_ISA report their timings and the ISA oneDNN really used;
failures, timeouts and bad names raise errors that name the cause."""

import os
import subprocess
import sys

import pytest

from helpers import cpu
from helpers.bench import isa
from helpers.paths import PROJECT_ROOT

SMALL = dict(shape=(128, 64, 128), runs=3, warmup=1)


def _missing_isa(features) -> str | None:
    """An ISA cap above what this CPU has, so oneDNN must cap it; None if the CPU has them all."""
    if not features["avx512f"]:
        return "AVX512_CORE"
    if not features["avx512_vnni"]:
        return "AVX512_CORE_VNNI"
    if not features["amx_int8"]:
        return "AVX512_CORE_AMX"
    return None


@pytest.fixture(scope="module")
def measured():
    """One run of the real children: DEFAULT, AVX2, an ISA this CPU lacks (if any) and, on a CPU without VNNI
    (where DEFAULT may be AVX2 itself), AVX: a cap below the CPU that must show in the reported ISA."""
    features = cpu.features()
    missing = _missing_isa(features)
    extra = ((missing,) if missing else ()) + (() if features["avx512_vnni"] else ("AVX",))
    rows = isa.isa_sensitivity(("DEFAULT", "AVX2") + extra, **SMALL)
    return {row.isa_requested: row for row in rows}, missing


def test_children_run_and_report(measured):
    rows, _ = measured
    for row in rows.values():
        assert row.fp32_ms > 0 and row.int8_ms > 0 and row.threads == 1
        assert row.shape == SMALL["shape"] and row.runs == SMALL["runs"]
        assert row.speedup == pytest.approx(row.fp32_ms / row.int8_ms)
        assert row.isa_reported and row.isa_reported.startswith("Intel")  # oneDNN's verbose "isa:" line was read
        assert row.int8_kernel  # the int8 matmul oneDNN ran
        assert row.as_dict()["speedup"] == pytest.approx(row.speedup)
    assert rows["DEFAULT"].capped is None
    if cpu.features()["avx2"]:
        assert isa.reported_isa_name(rows["AVX2"].isa_reported) == "AVX2" and rows["AVX2"].capped is False
        assert rows["AVX2"].fp32_isa == "AVX2"  # MKL_ENABLE_INSTRUCTIONS capped the fp32 Linear alike
    if cpu.features()["avx512f"]:
        assert rows["DEFAULT"].fp32_isa == "AVX-512"  # uncapped: MKL's default on this CPU


def test_an_isa_the_cpu_lacks_is_capped_to_what_it_has(measured):
    rows, missing = measured
    if missing is None:
        pytest.skip("this CPU has AVX-512, VNNI and AMX: no ISA above it to request")
    assert rows[missing].capped is True
    assert rows[missing].isa_reported == rows["DEFAULT"].isa_reported


def test_avx2_cap_differs_from_the_default_on_a_vnni_cpu(measured):
    rows, _ = measured
    if not cpu.features()["avx512_vnni"]:
        pytest.skip("this CPU lacks avx512_vnni, so oneDNN's default ISA may be AVX2 itself")
    assert rows["AVX2"].isa_reported != rows["DEFAULT"].isa_reported
    assert "DL Boost" in rows["DEFAULT"].isa_reported  # oneDNN's name for VNNI


def test_a_cap_below_a_cpu_without_vnni_takes_effect(measured):
    rows, _ = measured
    if "AVX" not in rows:
        pytest.skip("on a VNNI CPU the AVX2 row already differs from DEFAULT (the test above)")
    if not cpu.features()["avx2"]:
        pytest.skip("this CPU lacks AVX2, so AVX may be its default")
    assert isa.reported_isa_name(rows["AVX"].isa_reported) == "AVX" and rows["AVX"].capped is False
    assert rows["AVX"].isa_reported != rows["DEFAULT"].isa_reported


def test_parse_verbose_reads_the_isa_and_the_kernels():
    text = "\n".join([
        "onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71049cd69a3df32adcccb623b12cd7baa22)",
        "onednn_verbose,v1,info,cpu,runtime:OpenMP,nthr:1",
        "onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with Intel DL Boost and bfloat16 support",
        "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32::blocked:ab::f0 dst:u8,,8x384,0.01",
        "onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_vnni,undef,src:u8 wei:s8,,8x384,0.2",
    ])
    found, kernels = isa.parse_verbose(text)
    assert found == "Intel AVX-512 with Intel DL Boost and bfloat16 support"
    assert kernels == [("reorder", "jit:uni"), ("matmul", "brg_matmul:avx512_core_vnni")]
    assert isa.parse_verbose("dnnl_verbose,info,cpu,isa:Intel AVX2\n")[0] == "Intel AVX2"  # oneDNN 1.x/2.x prefix
    assert isa.parse_verbose("nothing from oneDNN here") == (None, [])


def test_parse_mkl_isa_reads_the_instruction_set_from_mkls_verbose_header():
    avx512 = ("MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) "
              "Advanced Vector Extensions 512 (Intel(R) AVX-512) with support of Intel(R) Deep Learning Boost "
              "(Intel(R) DL Boost), EVEX-encoded AES and Carry-Less Multiplication Quadword instructions, Lnx 2.30GHz")
    avx2 = ("MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) "
            "Advanced Vector Extensions 2 (Intel(R) AVX2) enabled processors, Lnx 2.30GHz lp64 gnu_thread")
    assert isa.parse_mkl_isa(avx512 + "\nMKL_VERBOSE SGEMM(N,N,64,64,64) 10us") == "AVX-512"
    assert isa.parse_mkl_isa(avx2) == "AVX2"
    assert isa.parse_mkl_isa("onednn_verbose,v1,info,cpu,isa:Intel AVX2") is None


def test_capped_compares_the_reported_isa_with_the_request():
    assert isa.reported_isa_name("Intel AVX2") == "AVX2"
    assert isa.is_capped("AVX512_CORE", "Intel AVX2") is True
    assert isa.is_capped("AVX2", "Intel AVX2") is False
    assert isa.is_capped("AVX10_1_512", "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support") is False
    assert isa.is_capped("DEFAULT", "Intel AVX2") is None
    assert isa.is_capped("AVX2", "Intel Future ISA") is None


def test_bad_isa_names_are_refused_before_any_child_starts(monkeypatch):
    def no_child(*args, **kwargs):
        raise AssertionError("a child was started for a request that should have been refused")

    monkeypatch.setattr(subprocess, "run", no_child)
    with pytest.raises(ValueError, match=r"'AVX3' is not an ONEDNN_MAX_CPU_ISA value.*'AVX2'"):
        isa.isa_sensitivity(("DEFAULT", "AVX3"))
    with pytest.raises(ValueError, match="at least one"):
        isa.isa_sensitivity(())
    with pytest.raises(ValueError, match="three positive integers"):
        isa.isa_sensitivity(("AVX2",), shape=(128, 64))
    assert isa.normalize_isa(" avx512_core ") == "AVX512_CORE"


def test_a_non_x86_cpu_gets_no_rows_and_the_reason_and_no_child(monkeypatch):
    def no_child(*args, **kwargs):
        raise AssertionError("a child was started on a CPU where ONEDNN_MAX_CPU_ISA does not apply")

    monkeypatch.setattr(subprocess, "run", no_child)
    graviton = cpu.features(cpuinfo_text="Features\t: fp asimd asimddp i8mm bf16 sve\n", torch_checks={},
                            torch_capability="SVE256", system="linux", machine="aarch64")
    rows = isa.isa_sensitivity(features=graviton)
    assert list(rows) == [] and rows.skipped.startswith("ONEDNN_MAX_CPU_ISA caps x86 instruction sets; this CPU "
                                                        "is aarch64")
    with pytest.raises(ValueError, match="'AVX3' is not an ONEDNN_MAX_CPU_ISA value"):  # names are still checked
        isa.isa_sensitivity(("AVX3",), features=graviton)


def test_the_command_line_prints_the_reason_on_a_non_x86_cpu(monkeypatch, capsys):
    monkeypatch.setattr(isa.cpu, "features", lambda: {"machine": "arm64", "os": "darwin"})
    isa._main([])
    assert capsys.readouterr().out == ("not measured: ONEDNN_MAX_CPU_ISA caps x86 instruction sets; this CPU is "
                                       "arm64, so the table does not apply here\n")


def _fake_child(monkeypatch, code: str):
    monkeypatch.setattr(isa, "_child_command", lambda shape, runs, warmup: [sys.executable, "-c", code])


def test_a_failing_child_raises_with_its_stderr(monkeypatch):
    _fake_child(monkeypatch, "import sys; print('noise'); sys.stderr.write('line 1\\nprobe exploded: no onednn\\n');"
                             " sys.exit(3)")
    with pytest.raises(isa.IsaProbeError, match=r"(?s)ONEDNN_MAX_CPU_ISA=AVX2 child failed with exit status 3.*"
                                                r"probe exploded: no onednn"):
        isa.isa_sensitivity(("AVX2",))


def test_a_child_without_a_result_line_raises(monkeypatch):
    _fake_child(monkeypatch, "print('oneDNN said something else')")
    with pytest.raises(isa.IsaProbeError, match=r"(?s)printed no result line.*oneDNN said something else"):
        isa.run_child("DEFAULT")


def test_a_child_that_hangs_times_out(monkeypatch):
    _fake_child(monkeypatch, "import sys, time; sys.stderr.write('started\\n'); sys.stderr.flush(); time.sleep(30)")
    with pytest.raises(isa.IsaProbeError, match=r"did not finish within 1 s.*timeout_s"):
        isa.run_child("AVX2", timeout_s=1)


def test_child_environment_sets_or_clears_the_cap(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    monkeypatch.setenv("ONEDNN_VERBOSE", "1")
    default = isa._child_env("DEFAULT")
    assert "ONEDNN_MAX_CPU_ISA" not in default and "ONEDNN_VERBOSE" not in default
    assert isa._child_env("AVX2")["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "SSE4_2")
    assert "MKL_ENABLE_INSTRUCTIONS" not in isa._child_env("DEFAULT")
    assert isa._child_env("AVX2")["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"  # fp32 (MKL) capped alike below AVX-512
    assert "MKL_ENABLE_INSTRUCTIONS" not in isa._child_env("AVX512_CORE")
    assert default["OMP_NUM_THREADS"] == "1"
    assert default["PYTHONPATH"].split(os.pathsep)[0] == str(PROJECT_ROOT)


_INT_MM_CHILD = """
import torch
torch.manual_seed(0)
a = torch.randint(-128, 128, (64, 256), dtype=torch.int8)
b = torch.randint(-128, 128, (256, 64), dtype=torch.int8)
exact = a.to(torch.int64) @ b.to(torch.int64)
print(int((torch._int_mm(a, b).to(torch.int64) != exact).sum()))
"""


@pytest.mark.skipif(not cpu.features()["avx2"], reason="oneDNN's AVX2 path exists only on x86")
def test_int_mm_without_an_int8_dot_product_saturates_as_the_int8_dot_reason_says():
    """route_core.CAPABILITIES["int8-dot"] says torch._int_mm's x86 path without VNNI gives wrong sums on full-range
    int8 operands: under ONEDNN_MAX_CPU_ISA=AVX2 (the kernels an AVX2-only CPU runs) it does; uncapped on a CPU
    with VNNI it does not."""
    from helpers.bench import route_core

    assert "saturating int16" in route_core.CAPABILITIES["int8-dot"]

    def wrong_sums(env_isa):
        out = subprocess.run([sys.executable, "-c", _INT_MM_CHILD], env=isa._child_env(env_isa), capture_output=True,
                             text=True, timeout=120, check=True)
        return int(out.stdout.split()[-1])

    assert wrong_sums("AVX2") > 0
    if cpu.has_int8_dot(cpu.features()):
        assert wrong_sums("DEFAULT") == 0
