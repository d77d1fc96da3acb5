"""helpers.roofline: op counts against independent counts, the arithmetic of achieved/peak/time split, the peak
measurement's contract (threads, restore, errors) and the structure of the bench record."""

import json
from types import SimpleNamespace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers import roofline
from helpers.roofline import ModelOps

# --- op counts ------------------------------------------------------------------------------------------------

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=64, num_labels=3, attn_implementation="eager")


def _part_of(name: str) -> str:
    """Which ModelOps.breakdown part an nn.Linear of BertForSequenceClassification belongs to, from its name."""
    if name.endswith(("attention.self.query", "attention.self.key", "attention.self.value")):
        return "qkv"
    if name.endswith("attention.output.dense"):
        return "attention_output"
    if name.endswith("intermediate.dense"):
        return "ffn_in"
    if name.endswith("output.dense"):
        return "ffn_out"
    if name.endswith("pooler.dense"):
        return "pooler"
    if name == "classifier":
        return "classifier"
    raise AssertionError(f"unexpected Linear {name}")


def _hooked_linear_macs(model, batch, seq) -> dict[str, int]:
    """MACs of every nn.Linear actually run, read from forward hooks on the input shapes."""
    counted: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            def hook(mod, inputs, output, part=_part_of(name)):
                rows = inputs[0].numel() // mod.in_features
                counted[part] = counted.get(part, 0) + rows * mod.in_features * mod.out_features
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            model(input_ids=torch.randint(0, 100, (batch, seq)))
    finally:
        for h in handles:
            h.remove()
    return counted


@pytest.mark.parametrize("batch,seq", [(1, 1), (2, 7), (3, 16), (5, 33)])
def test_linear_macs_match_forward_hooks(make_tiny_bert, batch, seq):
    model = make_tiny_bert(**TINY)
    ops = roofline.model_ops(model.config, batch, seq)
    hooked = _hooked_linear_macs(model, batch, seq)
    assert ops.linear_macs == sum(hooked.values())
    for part, macs in hooked.items():
        assert ops.breakdown[part] == macs, part


@pytest.mark.parametrize("batch,seq", [(1, 5), (3, 16)])
def test_attention_macs_match_the_formula_and_torch_flop_counter(make_tiny_bert, batch, seq):
    model = make_tiny_bert(**TINY)
    ops = roofline.model_ops(model.config, batch, seq)
    heads, head_dim, layers = 4, 32 // 4, 2
    per_matmul = layers * batch * heads * seq * seq * head_dim  # (seq x head_dim) @ (head_dim x seq), and back
    assert ops.breakdown["attention_scores"] == ops.breakdown["attention_context"] == per_matmul
    assert ops.attention_macs == 2 * per_matmul
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(input_ids=torch.randint(0, 100, (batch, seq)))
    assert counter.get_total_flops() == 2 * ops.total_macs  # torch counts 2 FLOPs per MAC, matmuls only


def test_minilm_ops_match_torch_flop_counter_on_the_real_model():
    from helpers import models

    model = models.load_classifier()
    model.set_attn_implementation("eager")  # the flop counter sees eager attention's bmm, not fused SDPA
    ids = torch.randint(1000, 2000, (2, 16))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    ops = roofline.minilm_ops(2, 16)
    assert counter.get_total_flops() == 2 * ops.total_macs
    assert ops.breakdown["pooler"] == 2 * 384 * 384 and ops.breakdown["classifier"] == 2 * 384 * 2


def test_gops_is_two_operations_per_mac():
    ops = ModelOps(batch=1, seq=1, linear_macs=3_000_000_000, attention_macs=500_000_000)
    assert ops.total_macs == 3_500_000_000
    assert ops.gops == pytest.approx(7.0) and ops.linear_gops == pytest.approx(6.0)
    assert ops.attention_gops == pytest.approx(1.0)
    assert ops.as_dict()["gops"] == pytest.approx(7.0)


def test_model_ops_scales_linearly_in_batch_and_quadratically_in_attention(make_tiny_bert):
    config = make_tiny_bert(**TINY).config
    one, four = roofline.model_ops(config, 1, 8), roofline.model_ops(config, 4, 8)
    assert four.linear_macs == 4 * one.linear_macs and four.attention_macs == 4 * one.attention_macs
    short, long = roofline.model_ops(config, 1, 8), roofline.model_ops(config, 1, 16)
    assert long.attention_macs == 4 * short.attention_macs


def test_model_ops_rejects_a_config_without_bert_sizes():
    config = SimpleNamespace(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_labels=2)
    with pytest.raises(ValueError, match="intermediate_size"):
        roofline.model_ops(config, 1, 8)
    with pytest.raises(ValueError, match="batch and seq must be positive"):
        roofline.model_ops(SimpleNamespace(**vars(config), intermediate_size=64), 0, 8)


# --- achieved, fraction, time split ---------------------------------------------------------------------------

def _peak(precision, threads, gops, **kwargs):
    return roofline.Peak(precision, threads, gops, gops * 0.9, gops * 1.1, (64, 64, 64), 5, "k", **kwargs)


OPS = ModelOps(batch=1, seq=1, linear_macs=5_000_000_000, attention_macs=500_000_000)  # 10 + 1 GOPs


def test_achieved_and_fraction_arithmetic():
    assert roofline.achieved(OPS, 100.0) == pytest.approx(110.0)  # 11 GOPs in 0.1 s
    assert roofline.achieved(2.5, 50.0) == pytest.approx(50.0)
    assert roofline.roofline_fraction(110.0, 220.0) == pytest.approx(0.5)
    assert roofline.roofline_fraction(330.0, 220.0) == pytest.approx(1.5)  # not clipped: it beat the peak
    with pytest.raises(ValueError, match="latency_ms must be positive"):
        roofline.achieved(OPS, 0.0)
    with pytest.raises(ValueError, match="measure_peak"):
        roofline.roofline_fraction(1.0, 0.0)


def test_time_split_arithmetic():
    split = roofline.time_split(OPS, peak_gops=220.0, latency_ms=100.0)
    assert split.linear_ms == pytest.approx(10 / 220 * 1e3)
    assert split.attention_ms == pytest.approx(1 / 220 * 1e3)
    assert split.gemm_ms == pytest.approx(50.0) and split.other_ms == pytest.approx(50.0)
    assert split.gemm_share == pytest.approx(0.5) and split.other_share == pytest.approx(0.5)
    assert not split.exceeds_peak
    text = split.describe("int8")
    assert "50.0 ms of the 100.0 ms" in text and "(50%)" in text and "int8 peak" in text


def test_time_split_charges_attention_at_its_own_peak():
    split = roofline.time_split(OPS, peak_gops=220.0, latency_ms=100.0, attention_peak_gops=22.0)
    assert split.attention_ms == pytest.approx(1 / 22 * 1e3)
    assert split.gemm_ms == pytest.approx(10 / 220 * 1e3 + 1 / 22 * 1e3)
    assert split.other_ms == pytest.approx(100.0 - split.gemm_ms)


def test_route_time_split_charges_an_int8_routes_attention_at_the_fp32_peak():
    at_threads = {"fp32": _peak("fp32", 1, 22.0), "int8": _peak("int8", 1, 220.0), "bf16": _peak("bf16", 1, 44.0)}
    for precision in ("int8 dynamic", "int8 static"):
        split = roofline.route_time_split(OPS, at_threads, 100.0, precision)
        assert split.linear_ms == pytest.approx(10 / 220 * 1e3), precision
        assert split.attention_ms == pytest.approx(1 / 22 * 1e3), precision
    weight_only = roofline.route_time_split(OPS, at_threads, 100.0, "int8 weight-only")  # dequantized: fp32 GEMMs
    assert weight_only.linear_ms == pytest.approx(10 / 22 * 1e3)
    assert weight_only.attention_ms == pytest.approx(1 / 22 * 1e3)
    bf16 = roofline.route_time_split(OPS, at_threads, 100.0, "bf16")
    assert bf16.linear_ms == pytest.approx(10 / 44 * 1e3) and bf16.attention_ms == pytest.approx(1 / 44 * 1e3)
    latencies = {"q": ("int8 dynamic", {(1, 1, 1): 100.0})}
    record = roofline.roofline_record([*at_threads.values()], {(1, 1): OPS}, latencies)
    assert record["routes"]["q"]["b1 s1 t1"]["gemm_ms_at_peak"] == pytest.approx(
        roofline.route_time_split(OPS, at_threads, 100.0, "int8 dynamic").gemm_ms)


def test_time_split_of_a_route_faster_than_the_peak_says_why():
    split = roofline.time_split(OPS, peak_gops=220.0, latency_ms=40.0)
    assert split.exceeds_peak and split.other_ms == 0.0
    assert split.gemm_share == pytest.approx(50.0 / 40.0)  # not clipped
    assert "another time" in split.above_one_reason and split.above_one_reason in split.describe()
    exported = roofline.time_split(OPS, 220.0, 40.0, other_library=True)
    assert "another library's GEMM" in exported.above_one_reason
    assert roofline.time_split(OPS, 220.0, 100.0).above_one_reason is None
    with pytest.raises(ValueError, match="attention_peak_gops"):
        roofline.time_split(OPS, 220.0, 40.0, attention_peak_gops=-1.0)


def test_time_split_does_not_count_activation_quantization_twice():
    """A linear_dynamic peak already holds activation quantization: the rest must not name it again."""
    kernel_alone = _peak("int8", 1, 220.0)
    with_quant = _peak("int8", 1, 220.0, includes_activation_quantization=True)
    alone, included = roofline.time_split(OPS, kernel_alone, 100.0), roofline.time_split(OPS, with_quant, 100.0)
    assert included.gemm_ms == pytest.approx(alone.gemm_ms) == pytest.approx(50.0)  # nothing subtracted on top
    assert included.other_ms == pytest.approx(50.0)
    assert included.gemm_includes_activation_quantization and not alone.gemm_includes_activation_quantization
    assert "activation quantization, softmax" in alone.describe("int8")
    rest = included.describe("int8").split("everything else")[1]
    assert "activation quantization" not in rest and "with their activation quantization" in included.describe()


def test_time_split_names_activation_quantization_only_for_routes_that_quantize_activations():
    fp32_peak = _peak("fp32", 1, 100.0)
    for precision, quantizes in (("fp32", False), ("bf16", False), ("int8 weight-only", False),
                                 ("int8 dynamic", True), ("int8 static", True)):
        text = roofline.time_split(OPS, fp32_peak, 200.0, route_precision=precision).describe()
        assert ("activation quantization" in text) is quantizes, precision


# --- the two roofs --------------------------------------------------------------------------------------------

MINILM_LIKE = SimpleNamespace(hidden_size=384, num_hidden_layers=12, num_attention_heads=12, intermediate_size=1536,
                              num_labels=2)  # ~21 M Linear weights


def test_linear_params_are_the_linear_weights(make_tiny_bert):
    model = make_tiny_bert(**TINY)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    ops = roofline.model_ops(model.config, 2, 8)
    assert ops.linear_params == weights
    assert ops.weight_bytes("fp32") == 4 * weights and ops.weight_bytes("int8 dynamic") == weights
    assert ops.weight_bytes("bf16") == 2 * weights and ops.as_dict()["linear_params"] == weights
    with pytest.raises(ValueError, match="BYTES_PER_WEIGHT"):
        ops.weight_bytes("fp8")


def test_batch_1_is_memory_bound_and_batch_32_compute_bound():
    """One token per sequence (a decoder's step): 2 x 21 M ops per token against 84 MB of fp32 weights."""
    peak, bandwidth = 100.0, 20e9  # GOP/s and bytes/s: machine balance 5 operations per byte
    one, many = roofline.model_ops(MINILM_LIKE, 1, 1), roofline.model_ops(MINILM_LIKE, 32, 1)
    assert 21e6 < one.linear_params < 22e6
    weights = one.weight_bytes("fp32")
    at_1 = roofline.roof_point(one, weights, 8.0, peak, bandwidth)
    assert at_1.memory_ms == pytest.approx(weights / bandwidth * 1e3) and at_1.compute_ms == pytest.approx(
        one.gops / peak * 1e3)
    assert at_1.binds == "memory" and at_1.attainable_ms == at_1.memory_ms
    assert at_1.fraction == pytest.approx(at_1.memory_ms / 8.0) and at_1.above_one_reason is None
    at_32 = roofline.roof_point(many, weights, 30.0, peak, bandwidth)
    assert at_32.binds == "compute" and at_32.fraction == pytest.approx(many.gops / peak * 1e3 / 30.0)
    # the decode bound: tokens/s <= bandwidth / weight bytes per token
    assert 1e3 / at_1.attainable_ms == pytest.approx(bandwidth / weights)
    int8_at_1 = roofline.roof_point(one, one.weight_bytes("int8 dynamic"), 8.0, 400.0, bandwidth)
    assert int8_at_1.memory_ms == pytest.approx(at_1.memory_ms / 4) and int8_at_1.binds == "memory"
    compute_only = roofline.roof_point(one, None, 8.0, peak)
    assert compute_only.memory_ms is None and compute_only.binds == "compute"
    assert compute_only.fraction == pytest.approx(roofline.roofline_fraction(roofline.achieved(one, 8.0), peak))
    with pytest.raises(ValueError, match="measure_bandwidth"):
        roofline.roof_point(one, None, 8.0, peak, bandwidth)


def test_a_fraction_above_one_names_the_broken_assumption():
    ops = 1.0  # GOPs: 10 ms at 100 GOP/s
    apart = _peak("fp32", 1, 100.0)
    same_rounds = _peak("fp32", 1, 100.0, same_rounds_as_routes=True)  # p90 speed: 110 GOP/s
    cases = {
        "another library's GEMM": dict(peak=apart, other_library=True),
        "another time": dict(peak=apart),
        "spread of the peak": dict(peak=same_rounds, latency_ms=9.5),
        "faster than every PyTorch form": dict(peak=same_rounds, latency_ms=5.0),
        "charged against the fp32 peak": dict(peak=apart, route_precision="int8 dynamic"),
        "pass the Peak itself": dict(peak=100.0),
    }
    for cause, kwargs in cases.items():
        kwargs = {"latency_ms": 5.0, **kwargs}
        point = roofline.roof_point(ops, None, **kwargs)
        assert point.fraction == pytest.approx(point.compute_ms / kwargs["latency_ms"]) and point.fraction > 1
        assert cause in point.above_one_reason, cause
        assert point.above_one_reason in point.describe() and "above 1" in point.describe()
    in_cache = roofline.roof_point(0.001, 4e6, 0.1, 100.0, 20e9, cache_bytes=32 * 1024 ** 2)
    assert in_cache.binds == "memory" and in_cache.fraction == pytest.approx(2.0)
    assert "last-level cache" in in_cache.above_one_reason
    from_dram = roofline.roof_point(0.001, 400e6, 10.0, 100.0, 20e9, cache_bytes=32 * 1024 ** 2)
    assert "fewer bytes" in from_dram.above_one_reason
    assert roofline.roof_point(ops, None, 20.0, apart).above_one_reason is None


def test_peak_precision_for_routes():
    assert roofline.peak_precision_for("fp32") == "fp32"
    assert roofline.peak_precision_for("bf16") == "bf16"
    assert roofline.peak_precision_for("int8 dynamic") == roofline.peak_precision_for("int8 static") == "int8"
    assert roofline.peak_precision_for("int8 weight-only") == "fp32"  # dequantized, multiplied in fp32
    with pytest.raises(ValueError, match="ROUTE_PEAK_PRECISION"):
        roofline.peak_precision_for("int4")


def test_roofline_record_structure_and_values(make_tiny_bert):
    config = make_tiny_bert(**TINY).config
    peaks = [_peak("fp32", 1, 80.0), _peak("fp32", 2, 150.0), _peak("bf16", 1, 400.0), _peak("int8", 1, 900.0),
             _peak("int8", 2, 1700.0)]
    ops = {(1, 16): roofline.model_ops(config, 1, 16), (4, 32): roofline.model_ops(config, 4, 32)}
    rows = [{"batch": 4, "seq": 32, "threads": 1, "median_ms": 2.0}, {"batch": 4, "seq": 32, "threads": 2,
                                                                       "median_ms": 1.5}]
    latencies = {
        "fp32": roofline.RouteLatencies("fp32", {(1, 16, 1): 0.5, (4, 32, 1): 4.0}),
        "dynamic-int8-x86": ("int8 dynamic", roofline.latencies_from_rows(rows)),
        "torchao-w8": ("int8 weight-only", {(4, 32, 1): 3.0}),
    }
    record = roofline.roofline_record(peaks, ops, latencies)
    assert set(record) == {"peaks", "peak_measurements", "bandwidth_bytes_s", "model_gops", "routes"}
    assert record["peaks"] == {"fp32": {"1": 80.0, "2": 150.0}, "bf16": {"1": 400.0}, "int8": {"1": 900.0,
                                                                                              "2": 1700.0}}
    assert len(record["peak_measurements"]) == 5 and record["peak_measurements"][0]["shape"] == [64, 64, 64]
    assert record["peak_measurements"][0]["alternatives"] == {}
    assert record["model_gops"] == {"b1 s16": ops[(1, 16)].gops, "b4 s32": ops[(4, 32)].gops}
    assert set(record["routes"]) == set(latencies)
    assert set(record["routes"]["dynamic-int8-x86"]) == {"b4 s32 t1", "b4 s32 t2"}

    int8_t2 = record["routes"]["dynamic-int8-x86"]["b4 s32 t2"]
    assert int8_t2["peak_precision"] == "int8" and int8_t2["precision_peak"] == 1700.0
    assert int8_t2["achieved_gops"] == pytest.approx(ops[(4, 32)].gops / 1.5e-3)
    # the Linears at the int8 peak, the attention matmuls (which stay in float) at the fp32 peak of 2 threads
    op = ops[(4, 32)]
    compute_ms = (op.linear_gops / 1700.0 + op.attention_gops / 150.0) * 1e3
    assert op.attention_gops > 0 and int8_t2["compute_ms"] == pytest.approx(compute_ms)
    assert int8_t2["fraction"] == pytest.approx(compute_ms / 1.5)
    split = roofline.time_split(op, 1700.0, 1.5, attention_peak_gops=150.0)
    assert split.gemm_ms == pytest.approx(compute_ms)
    assert int8_t2["gemm_ms_at_peak"] == pytest.approx(split.gemm_ms)
    assert int8_t2["other_ms"] == pytest.approx(split.other_ms)

    weight_only = record["routes"]["torchao-w8"]["b4 s32 t1"]
    assert weight_only["peak_precision"] == "fp32" and weight_only["precision_peak"] == 80.0
    assert record["routes"]["fp32"]["b1 s16 t1"]["fraction"] == pytest.approx(ops[(1, 16)].gops / 0.5e-3 / 80.0)
    assert json.loads(json.dumps(record)) == record  # plain JSON data: string keys, no tuples left


def test_roofline_record_accepts_a_peaks_mapping_and_names_what_is_missing(make_tiny_bert):
    config = make_tiny_bert(**TINY).config
    ops = {(1, 8): roofline.model_ops(config, 1, 8)}
    record = roofline.roofline_record({"fp32": {1: 80.0}}, ops, {"fp32": ("fp32", {(1, 8, 1): 1.0})})
    assert record["peaks"] == {"fp32": {"1": 80.0}} and "peak_measurements" not in record
    with pytest.raises(KeyError, match="int8 peak at 1 threads"):
        roofline.roofline_record({"fp32": {1: 80.0}}, ops, {"q": ("int8 static", {(1, 8, 1): 1.0})})
    with pytest.raises(KeyError, match=r"model_ops\(config, 2, 8\)"):
        roofline.roofline_record({"fp32": {1: 80.0}}, ops, {"fp32": ("fp32", {(2, 8, 1): 1.0})})
    with pytest.raises(ValueError, match="unknown route precision"):
        roofline.roofline_record({"fp32": {1: 80.0}}, ops, {"x": ("fp64", {(1, 8, 1): 1.0})})


def test_point_labels_match_the_bench():
    assert roofline.point_label(32, 128) == "b32 s128"
    assert roofline.point_label(32, 128, 1) == "b32 s128 t1"


def test_roofline_record_adds_the_memory_roof_and_explains_a_fraction_above_one(make_tiny_bert):
    config = make_tiny_bert(**TINY).config
    ops = {(1, 8): roofline.model_ops(config, 1, 8)}
    peak = _peak("fp32", 1, 0.001)  # GOP/s: so slow that every route beats it
    latencies = {"fp32": roofline.RouteLatencies("fp32", {(1, 8, 1): 1.0}),
                 "onnxruntime-fp32": roofline.RouteLatencies("fp32", {(1, 8, 1): 1.0}, other_library=True)}
    record = roofline.roofline_record([peak], ops, latencies, bandwidth=1e6, cache_bytes=1)
    assert record["bandwidth_bytes_s"] == 1e6
    eager, exported = record["routes"]["fp32"]["b1 s8 t1"], record["routes"]["onnxruntime-fp32"]["b1 s8 t1"]
    want = roofline.roof_point(ops[(1, 8)], ops[(1, 8)].weight_bytes("fp32"), 1.0, peak, 1e6)
    assert eager["memory_ms"] == pytest.approx(want.memory_ms) and eager["compute_ms"] == pytest.approx(want.compute_ms)
    assert eager["binds"] == want.binds == "compute" and want.fraction > 1
    assert eager["fraction"] == pytest.approx(want.fraction)
    assert "another time" in eager["above_one_reason"]
    assert "another library's GEMM" in exported["above_one_reason"]
    assert json.loads(json.dumps(record)) == record


def test_bench_ceiling_record_marks_exported_routes_and_shows_the_reason(make_tiny_bert):
    from helpers import bench
    from helpers.bench import ceiling

    def route(name, family, ms):
        point = bench.LatencyPoint(median_ms=ms, p10_ms=ms, p90_ms=ms, runs=3, threads=1, batch=1, seq=8,
                                   first_call_ms=ms)
        return bench.RouteResult(name, family, "fp32", False, "", latency=[point])

    run = bench.BenchRun("now", 1.0, {}, {}, [bench.Point(1, 8, 1)],
                         [route("fp32", "eager", 2.0), route("onnxruntime-fp32", "onnxruntime", 1.0)])
    run.roofline = ceiling.record(run, make_tiny_bert(**TINY).config, [_peak("fp32", 1, 0.001)], bandwidth=1e12)
    assert run.roofline["bandwidth_bytes_s"] == 1e12
    assert "another library" in run.roofline["routes"]["onnxruntime-fp32"]["b1 s8 t1"]["above_one_reason"]
    rows = {r["route"]: r for r in ceiling.rows(run)}
    assert rows["onnxruntime-fp32"]["binds"] == "compute" and "another library" in rows["onnxruntime-fp32"][
        "above 1 because"]
    assert "another time" in rows["fp32"]["above 1 because"]
