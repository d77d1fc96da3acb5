"""helpers.measure: sizes, latency, and models timed together round by round (with an injectable clock)."""

import time

import pytest
import torch

from helpers import measure


def test_state_dict_bytes_tracks_parameters():
    small, big = torch.nn.Linear(10, 10), torch.nn.Linear(100, 100)
    assert measure.state_dict_bytes(big) > 100 * 100 * 4
    assert measure.state_dict_bytes(small) < measure.state_dict_bytes(big)


def test_size_on_disk_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing at"):
        measure.size_on_disk(tmp_path / "nope.pt")


def test_onnx_size_counts_external_data(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((256, 256), dtype=np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], [weight])
    model = helper.make_model(graph)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    files = measure.onnx_files(path)
    assert [f.name for f in files] == ["m.onnx", "m.onnx.data"]
    assert measure.size_on_disk(path) > 256 * 256 * 4 > path.stat().st_size


def test_onnx_invalid_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        measure.onnx_files(bad)
    with pytest.raises(FileNotFoundError, match="export the model first"):
        measure.onnx_files(tmp_path / "missing.onnx")


def test_latency_reports_median_spread_and_threads():
    calls = []
    lat = measure.latency(lambda: (calls.append(1), time.sleep(0.002)), runs=5, warmup=2, threads=1)
    assert len(calls) == 7
    assert lat.threads == 1 and lat.runs == 5
    assert 2.0 <= lat.p10_ms <= lat.median_ms <= lat.p90_ms
    assert lat.as_dict()["spread_ms"] == pytest.approx(lat.p90_ms - lat.p10_ms)


def test_latency_restores_thread_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # not 1: with one thread already set, a latency(threads=1) that never restores passes
    try:
        seen = []
        measure.latency(lambda: seen.append(torch.get_num_threads()), runs=1, warmup=0, threads=1)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_available_threads():
    import os

    n = measure.available_threads()
    assert 1 <= n <= (os.cpu_count() or 1)


def test_latency_bad_runs():
    with pytest.raises(ValueError, match="runs >= 1"):
        measure.latency(lambda: None, runs=0)


def test_summarize_external_timings():
    lat = measure.summarize([5.0, 1.0, 3.0, 2.0, 4.0], threads=2)
    assert lat.median_ms == 3.0 and lat.runs == 5 and lat.threads == 2
    assert lat.p10_ms == pytest.approx(1.4) and lat.p90_ms == pytest.approx(4.6)
    with pytest.raises(ValueError, match="no timings"):
        measure.summarize([], threads=1)


def test_band_is_the_p10_p90_text_at_the_digits_asked():
    lat = measure.summarize([10.0, 11.0, 12.0, 13.0, 20.0], threads=2)
    assert (lat.p10_ms, lat.p90_ms) == pytest.approx((10.4, 17.2))
    assert lat.band() == "10.4-17.2"
    assert lat.band(2) == "10.40-17.20" and lat.band(0) == "10-17"
    assert str(lat) == "12.00 ms (p10-p90 10.40-17.20, 5 runs, 2 threads)"


# --- round_robin on a fake clock: no test depends on real timing -----------------------------------------------------

class FakeClock:
    """A clock that moves only when a fake model runs: each call of ``model(name)`` takes the next of its durations."""

    def __init__(self, durations_ms: dict[str, list[float]]):
        self.now, self.calls = 0.0, []
        self.durations = {name: iter(ms) for name, ms in durations_ms.items()}

    def __call__(self) -> float:
        return self.now

    def model(self, name: str):
        def run():
            self.calls.append(name)
            self.now += next(self.durations[name]) / 1e3
        return run


def round_robin(durations_ms: dict[str, list[float]], **kwargs) -> tuple[measure.RoundRobin, FakeClock]:
    clock = FakeClock(durations_ms)
    result = measure.round_robin({name: clock.model(name) for name in durations_ms}, clock=clock, **kwargs)
    return result, clock


def test_round_robin_warms_up_then_rotates_the_order_each_round():
    rr, clock = round_robin({name: [1.0] * 6 for name in "abc"}, runs=4, warmup=2)
    warmup, timed = clock.calls[:6], clock.calls[6:]
    assert sorted(warmup) == sorted("aabbcc")
    assert [timed[i:i + 3] for i in range(0, 12, 3)] == [list("abc"), list("bca"), list("cab"), list("abc")]
    assert all(lat.runs == 4 for lat in rr.latencies.values())


def test_round_robin_medians_and_per_round_ratios_come_from_the_clock():
    # round by round the machine slows down (drift); int8 is always half of fp32's time in the same round
    fp32 = [10.0, 20.0, 30.0, 40.0, 50.0]
    rr, _ = round_robin({"fp32": [10.0] + fp32, "int8": [5.0] + [t / 2 for t in fp32]}, runs=5, warmup=1,
                        threads=1)
    assert rr.baseline == "fp32" and set(rr.speedups) == {"int8"}        # the first name is the default baseline
    assert rr.latencies["fp32"].median_ms == pytest.approx(30.0)
    assert rr.latencies["int8"].median_ms == pytest.approx(15.0)
    assert (rr.latencies["int8"].p10_ms, rr.latencies["int8"].p90_ms) == pytest.approx((7.0, 23.0))
    assert rr.latencies["int8"].threads == 1
    up = rr.speedups["int8"]
    assert up.ratios == pytest.approx((2.0,) * 5) and up.median == pytest.approx(2.0)
    # the two latency bands overlap widely, yet the paired ratio is 2x in every round: faster
    assert rr.latencies["int8"].p90_ms > rr.latencies["fp32"].p10_ms and rr.verdict("int8") == "faster"


def test_round_robin_verdicts_follow_the_ratio_band():
    base = [10.0] * 6
    rr, _ = round_robin({"fp32": base, "slow": [20.0, 25.0, 20.0, 25.0, 20.0, 25.0],
                         "noisy": [8.0, 12.5, 8.0, 12.5, 8.0, 12.5]}, runs=6, warmup=0)
    assert rr.verdict("slow") == "slower" and rr.speedups["slow"].p90 < 1
    assert rr.verdict("noisy") == measure.SPANS_ONE == "band spans 1"
    assert rr.speedups["noisy"].p10 < 1 < rr.speedups["noisy"].p90
    assert rr.verdict("fp32") == "baseline"
    rows = {row["model"]: row for row in rr.rows()}
    assert rows["slow"]["x fp32"] == pytest.approx(0.45) and rows["slow"]["p10-p90 of x"] == "0.40-0.50"
    assert rows["slow"]["verdict"] == "slower" and rows["slow"]["p10-p90 ms"] == "20.0-25.0"
    assert rows["fp32"]["x fp32"] == 1.0 and rows["fp32"]["p10-p90 of x"] is None
    assert rows["noisy"]["p10-p90 of x"] == "0.80-1.25" and rows["noisy"]["verdict"] == "band spans 1"
    assert "slow: 0.45x the speed of fp32 (p10-p90 0.40-0.50x over 6 rounds" in rr.describe()


def test_round_robin_with_another_baseline():
    rr, _ = round_robin({"fp32": [10.0] * 3, "int8": [5.0] * 3}, runs=3, warmup=0, baseline="int8")
    assert rr.baseline == "int8" and rr.speedups["fp32"].median == pytest.approx(0.5)
    assert rr.verdict("fp32") == "slower" and rr.as_dict()["speedup"]["fp32"]["median"] == pytest.approx(0.5)


def test_versus_compares_two_models_round_by_round_neither_being_the_baseline():
    # the machine drifts; int8 is 0.8x of fast-fp32's time in every round, so it is faster than it by 1.25x
    drift = [1.0, 3.0, 2.0, 5.0]
    rr, _ = round_robin({"eager": [20.0 * d for d in drift], "fast fp32": [10.0 * d for d in drift],
                         "int8": [8.0 * d for d in drift]}, runs=4, warmup=0)
    up = rr.versus("int8", "fast fp32")
    assert up.ratios == pytest.approx((1.25,) * 4) and up.verdict == "faster"
    assert rr.versus("fast fp32", "int8").median == pytest.approx(0.8)
    assert rr.versus("eager", "int8").verdict == "slower"
    assert rr.versus("int8", "eager").median == pytest.approx(rr.speedups["int8"].median)  # against the baseline
    with pytest.raises(KeyError, match="was not timed"):
        rr.versus("int8", "bf16")


def test_round_robin_rejects_bad_input():
    with pytest.raises(ValueError, match="nothing to time"):
        measure.round_robin({})
    with pytest.raises(ValueError, match="baseline 'bf16' is not one of"):
        measure.round_robin({"fp32": lambda: None}, baseline="bf16")
    with pytest.raises(ValueError, match="runs >= 1"):
        measure.round_robin({"fp32": lambda: None}, runs=0)
    with pytest.raises(ValueError, match="clock did not advance"):
        measure.round_robin({"fp32": lambda: None, "int8": lambda: None}, clock=lambda: 0.0)
    rr, _ = round_robin({"fp32": [1.0]}, runs=1, warmup=0)
    with pytest.raises(KeyError, match="was not timed"):
        rr.verdict("int8")


def test_latency_takes_the_same_injectable_clock():
    clock = FakeClock({"m": [3.0, 1.0, 2.0, 4.0]})
    lat = measure.latency(clock.model("m"), runs=3, warmup=1, clock=clock)
    assert (lat.median_ms, lat.runs) == (pytest.approx(2.0), 3) and clock.calls == ["m"] * 4
