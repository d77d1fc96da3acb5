"""helpers.roofline: op counts against independent counts, the arithmetic of achieved/peak/time split, the peak
measurement's contract (threads, restore, errors) and the structure of the bench record."""

import json
import math
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


def test_time_split_of_a_route_faster_than_the_peak():
    split = roofline.time_split(OPS, peak_gops=220.0, latency_ms=40.0)
    assert split.exceeds_peak and split.other_ms == 0.0
    assert split.gemm_share == pytest.approx(50.0 / 40.0)
    assert "beat" in split.describe()
    with pytest.raises(ValueError, match="attention_peak_gops"):
        roofline.time_split(OPS, 220.0, 40.0, attention_peak_gops=-1.0)


# --- peaks ----------------------------------------------------------------------------------------------------

@pytest.fixture
def torch_on_two_threads():
    """torch set to 2 threads, so that a measurement on 1 thread that forgot to restore the count is caught."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_measure_peak_on_requested_threads_restores_torch_threads(torch_on_two_threads, precision):
    peak = roofline.measure_peak(precision, threads=1, shape=(64, 64, 64), runs=3, warmup=1, max_call_s=None)
    assert torch.get_num_threads() == 2
    assert peak.precision == precision and peak.threads == 1 and peak.runs == 3 and peak.shape == (64, 64, 64)
    assert 0 < peak.gops_p10 <= peak.gops <= peak.gops_p90 and math.isfinite(peak.gops)
    assert peak.spread_gops == pytest.approx(peak.gops_p90 - peak.gops_p10)
    if precision == "int8":  # both int8 GEMMs timed; the peak is the faster, and names it
        assert set(peak.alternatives) == set(roofline.INT8_KERNELS)
        fastest = max(peak.alternatives, key=peak.alternatives.get)
        assert peak.gops == peak.alternatives[fastest] and peak.kernel == roofline.INT8_KERNELS[fastest]
    else:
        assert peak.kernel == roofline.PEAK_KERNELS[precision] and peak.alternatives == {}
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
    peaks = roofline.measure_peaks(("fp32", "int8"), threads=(1, 1, 2), shape=(32, 32, 32), runs=1, warmup=0,
                                   max_call_s=None)
    assert [(p.precision, p.threads) for p in peaks] == [("fp32", 1), ("int8", 1), ("fp32", 2), ("int8", 2)]
    assert roofline.peaks_table(peaks) == {"fp32": {"1": peaks[0].gops, "2": peaks[2].gops},
                                           "int8": {"1": peaks[1].gops, "2": peaks[3].gops}}
    with pytest.raises(ValueError, match="unknown precision"):
        roofline.measure_peaks(("fp32", "fp8"))


# --- the bench record -----------------------------------------------------------------------------------------

def test_peak_precision_for_routes():
    assert roofline.peak_precision_for("fp32") == "fp32"
    assert roofline.peak_precision_for("bf16") == "bf16"
    assert roofline.peak_precision_for("int8 dynamic") == roofline.peak_precision_for("int8 static") == "int8"
    assert roofline.peak_precision_for("int8 weight-only") == "fp32"  # dequantized, multiplied in fp32
    with pytest.raises(ValueError, match="ROUTE_PEAK_PRECISION"):
        roofline.peak_precision_for("int4")


def _peak(precision, threads, gops):
    return roofline.Peak(precision, threads, gops, gops * 0.9, gops * 1.1, (64, 64, 64), 5, "k")


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
    assert set(record) == {"peaks", "peak_measurements", "model_gops", "routes"}
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
    assert int8_t2["fraction"] == pytest.approx(int8_t2["achieved_gops"] / 1700.0)
    split = roofline.time_split(ops[(4, 32)], 1700.0, 1.5)
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


def test_the_engine_int8_gemm_is_fbgemm_linear_dynamic(torch_on_two_threads):
    """The fbgemm kernel the int8 peak may come from computes x @ W^T like a float Linear, within int8 rounding."""
    from helpers import peaks

    gen = torch.Generator().manual_seed(0)  # the operands _gemm draws
    x, w = torch.randn(8, 64, generator=gen), torch.randn(32, 64, generator=gen)
    scale = float(w.abs().max()) / 127
    want = x @ (torch.round(w / scale) * scale).T
    got = peaks._gemm("fbgemm", 8, 64, 32)()
    assert got.shape == (8, 32) and got.dtype == torch.float32
    assert (got - want).abs().max().item() < 0.05 * want.abs().max().item()
    with pytest.raises(ValueError, match="unknown precision 'int_mm'"):
        roofline.measure_peak("int_mm", threads=1)  # kernels are chosen inside measure_peak("int8"), not by name
