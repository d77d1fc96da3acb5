"""helpers.peaks: the GEMM peaks by precision and threads, the cache sizes and the copy bandwidth."""

import math
from types import SimpleNamespace

import pytest
import torch

from helpers import measure, peaks, roofline

# --- op counts ------------------------------------------------------------------------------------------------

def _lat(median_ms, threads=1):
    return measure.Latency(median_ms, median_ms * 0.9, median_ms * 1.2, 5, threads)


def _fake_cache(root, entries):
    for i, (level, kind, size) in enumerate(entries):
        index = root / f"index{i}"
        index.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size)):
            if value is not None:
                (index / name).write_text(f"{value}\n")
    return root


@pytest.fixture
def torch_on_two_threads():
    """torch set to 2 threads, so that a measurement on 1 thread that forgot to restore the count is caught."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_peak_kernels_are_the_gemm_forms_the_model_runs():
    assert set(peaks.PEAK_KERNELS["fp32"]) == set(peaks.PEAK_KERNELS["bf16"]) == {"mm", "addmm", "linear"}
    assert set(peaks.PEAK_KERNELS["int8"]) == {"int_mm", "int_mm_u8s8", "linear_dynamic"}
    assert roofline.INT8_KERNELS == peaks.PEAK_KERNELS["int8"]  # the old name still reads the int8 forms
    assert "incl. activation quantization" in peaks.PEAK_KERNELS["int8"]["linear_dynamic"]
    assert "kernel alone" in peaks.PEAK_KERNELS["int8"]["int_mm"]
    kernels = peaks.peak_kernels(threads=1, shape=(8, 64, 32), max_call_s=None)
    assert set(kernels) == {f"peak {p} {f}" for p in ("fp32", "bf16", "int8") for f in peaks.forms_for(p)}
    assert all(k.ops == 2 * 8 * 64 * 32 and k.shape == (8, 64, 32) for k in kernels.values())


def test_each_peak_form_computes_x_times_w_transposed_as_linear_does():
    gen = torch.Generator().manual_seed(0)  # the operands _gemm draws, in its order
    x, w, bias = torch.randn(8, 64, generator=gen), torch.randn(32, 64, generator=gen), torch.randn(32, generator=gen)
    kernels = peaks.peak_kernels(threads=1, shape=(8, 64, 32), max_call_s=None)
    with torch.inference_mode():
        for precision, tol in (("fp32", 1e-4), ("bf16", 0.1)):
            want = x.to(torch.bfloat16).float() @ w.to(torch.bfloat16).float().T if precision == "bf16" else x @ w.T
            assert torch.allclose(kernels[f"peak {precision} mm"]().float(), want, atol=tol, rtol=tol)
            for form in ("addmm", "linear"):
                got = kernels[f"peak {precision} {form}"]().float()
                assert torch.allclose(got, want + bias, atol=tol, rtol=tol), (precision, form)
        s8, u8 = kernels["peak int8 int_mm"](), kernels["peak int8 int_mm_u8s8"]()
        assert s8.dtype == u8.dtype == torch.int32 and s8.shape == (8, 32)
        scale = float(w.abs().max()) / 127
        want = x @ (torch.round(w / scale) * scale).T + bias
        got = kernels["peak int8 linear_dynamic"]()
        assert got.dtype == torch.float32 and (got - want).abs().max().item() < 0.05 * want.abs().max().item()
    # uint8 activations are the int8 ones shifted by +128, so u8s8 - s8s8 = 128 x (w's row sums), the same each row
    shift = u8 - s8
    assert torch.equal(shift, shift[:1].expand_as(shift)) and bool((shift % 128 == 0).all())


def test_peaks_from_latencies_takes_the_fastest_form_and_labels_it():
    kernels = {f"peak {p} {f}": peaks.PeakKernel(p, f, (1000, 100, 10), lambda: None)
               for p, f in (("fp32", "mm"), ("fp32", "linear"), ("int8", "int_mm"), ("int8", "linear_dynamic"))}
    ops_g = 2 * 1000 * 100 * 10 / 1e9  # 0.002 GOP per call
    alone = peaks.peaks_from_latencies(kernels, {
        "peak fp32 mm": _lat(0.04), "peak fp32 linear": _lat(0.02),
        "peak int8 int_mm": _lat(0.01), "peak int8 linear_dynamic": _lat(0.005)})
    fp32, int8 = alone["fp32"], alone["int8"]
    assert fp32.kernel == peaks.PEAK_KERNELS["fp32"]["linear"] and fp32.gops == pytest.approx(ops_g / 0.02e-3)
    assert fp32.alternatives == pytest.approx({"mm": ops_g / 0.04e-3, "linear": ops_g / 0.02e-3})
    assert fp32.gops_p10 == pytest.approx(ops_g / (0.02e-3 * 1.2)) and not fp32.includes_activation_quantization
    assert int8.kernel == peaks.PEAK_KERNELS["int8"]["linear_dynamic"] and int8.includes_activation_quantization
    assert not fp32.same_rounds_as_routes  # only peak kernels were timed
    lat = {name: _lat(1.0) for name in kernels}
    together = peaks.peaks_from_latencies(kernels, {**lat, "fp32 route": _lat(30.0)})
    assert together["fp32"].same_rounds_as_routes and not together["int8"].includes_activation_quantization
    from_round_robin = peaks.peaks_from_latencies(kernels, SimpleNamespace(latencies={**lat, "route": _lat(9.0)}))
    assert from_round_robin["int8"].same_rounds_as_routes  # measure.round_robin's result is accepted as it is
    with pytest.raises(KeyError, match="peak int8 int_mm"):
        peaks.peaks_from_latencies(kernels, {"peak fp32 mm": _lat(1.0)})


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_measure_peak_on_requested_threads_restores_torch_threads(torch_on_two_threads, precision):
    peak = roofline.measure_peak(precision, threads=1, shape=(64, 64, 64), runs=3, warmup=1, max_call_s=None)
    assert torch.get_num_threads() == 2
    assert peak.precision == precision and peak.threads == 1 and peak.runs == 3 and peak.shape == (64, 64, 64)
    assert 0 < peak.gops_p10 <= peak.gops <= peak.gops_p90 and math.isfinite(peak.gops)
    assert set(peak.alternatives) == set(peaks.forms_for(precision))  # every form timed; the peak is the fastest
    fastest = max(peak.alternatives, key=peak.alternatives.get)
    assert peak.gops == peak.alternatives[fastest] and peak.kernel == peaks.PEAK_KERNELS[precision][fastest]
    assert precision in str(peak) and "1 threads" in str(peak)


def test_measure_peak_shrinks_the_rows_of_a_call_over_budget(torch_on_two_threads):
    peak = roofline.measure_peak("fp32", threads=1, shape=(4096, 384, 1536), runs=1, warmup=0, max_call_s=1e-9)
    assert peak.shape == (16, 384, 1536)  # never grew past its 16-row start
    assert torch.get_num_threads() == 2


def test_measure_peak_errors_name_the_cause():
    with pytest.raises(ValueError, match=r"unknown precision 'fp16'.*\['bf16', 'fp32', 'int8'\]"):
        roofline.measure_peak("fp16", threads=1)
    with pytest.raises(ValueError, match="peak_precision_for"):
        roofline.measure_peak("int8 dynamic", threads=1)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        roofline.measure_peak("fp32", threads=0)
    with pytest.raises(ValueError, match="three positive integers"):
        roofline.measure_peak("fp32", threads=1, shape=(64, 64))


def test_measure_peaks_covers_each_precision_and_distinct_thread_count(torch_on_two_threads):
    measured = roofline.measure_peaks(("fp32", "int8"), threads=(1, 1, 2), shape=(32, 32, 32), runs=1, warmup=0,
                                      max_call_s=None)
    assert [(p.precision, p.threads) for p in measured] == [("fp32", 1), ("int8", 1), ("fp32", 2), ("int8", 2)]
    assert roofline.peaks_table(measured) == {"fp32": {"1": measured[0].gops, "2": measured[2].gops},
                                              "int8": {"1": measured[1].gops, "2": measured[3].gops}}
    with pytest.raises(ValueError, match="unknown precision"):
        roofline.measure_peaks(("fp32", "fp8"))


# --- memory bandwidth and the last-level cache ----------------------------------------------------------------

def test_last_level_cache_from_linux_sysfs(tmp_path):
    root = _fake_cache(tmp_path / "cache", [(1, "Data", "32K"), (1, "Instruction", "32K"), (2, "Unified", "1024K"),
                                            (3, "Unified", "32768K"), (4, "Unified", None)])  # no size: skipped
    assert peaks.last_level_cache_bytes(root, system="Linux") == 32 * 1024 ** 2
    only_l2 = _fake_cache(tmp_path / "l2", [(1, "Data", "48K"), (2, "Unified", "2M"), (3, "Instruction", "64M")])
    assert peaks.last_level_cache_bytes(only_l2, system="Linux") == 2 * 1024 ** 2  # instruction caches never count
    assert peaks.last_level_cache_bytes(tmp_path / "missing", system="Linux") is None


def test_last_level_cache_from_macos_sysctl():
    text = {"hw.l3cachesize": "33554432\n", "hw.l2cachesize": "4194304\n"}
    assert peaks.last_level_cache_bytes(sysctl=text.get, system="Darwin") == 32 * 1024 ** 2
    apple = {"hw.l3cachesize": "0\n", "hw.l2cachesize": "4194304\n"}  # Apple silicon reports no L3
    assert peaks.last_level_cache_bytes(sysctl=apple.get, system="Darwin") == 4 * 1024 ** 2
    assert peaks.last_level_cache_bytes(sysctl=lambda name: None, system="Darwin") is None
    assert peaks.last_level_cache_bytes(sysctl=text.get, system="Windows") is None


def test_measure_bandwidth_returns_bytes_per_second(torch_on_two_threads):
    bandwidth = peaks.measure_bandwidth(threads=1, nbytes=4 * 1024 ** 2, runs=2)
    assert math.isfinite(bandwidth) and bandwidth > 1e6 and torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="positive integer nbytes"):
        peaks.measure_bandwidth(nbytes=0)


# --- the bench record -----------------------------------------------------------------------------------------
