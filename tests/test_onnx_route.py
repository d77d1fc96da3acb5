"""Tests of helpers.onnx_route on the shared tiny randomly initialised BERT (2 layers, hidden 32), so they run in
seconds."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from helpers import measure, models
from helpers import onnx_route as R
from helpers.data import Split

MAX_LEN = 16
TEXTS = ["a gripping, beautifully shot film", "dull and far too long", "fine", "the worst movie of the year",
         "an unexpected delight from start to finish", "meh"]


@pytest.fixture(scope="module")
def tiny_model(make_tiny_bert):
    """The shared tiny BERT (course vocabulary, 2 layers, hidden 32) with 4 attention heads, logits scaled apart."""
    return make_tiny_bert(logit_scale=20.0, num_attention_heads=4)


@pytest.fixture(scope="module")
def exported(tiny_model, course_tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=R.LEGACY_EXPORTER_WARNING, category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        return R.export_classifier(tiny_model, course_tokenizer, path, MAX_LEN)


def torch_logits(model, tokenizer, texts, max_len):
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


# --- export ---------------------------------------------------------------------------------------------------

def test_export_has_dynamic_batch_and_sequence_axes(exported):
    summary = R.graph_summary(exported)
    assert summary["inputs"] == {n: ["batch", "seq"] for n in models.INPUT_NAMES}
    assert summary["outputs"] == {"logits": ["batch", 2]}
    assert summary["opset"] == R.TORCHSCRIPT_OPSET
    assert summary["files"] == ["model.onnx"]


@pytest.mark.parametrize("batch, seq", [(1, MAX_LEN), (5, MAX_LEN), (3, 9)])
def test_ort_matches_torch_at_other_shapes(exported, tiny_model, course_tokenizer, batch, seq):
    session = R.make_session(exported, threads=1)
    texts = (TEXTS * 2)[:batch]
    got = R.run_logits(session, course_tokenizer, texts, seq, batch_size=2)
    want = torch_logits(tiny_model, course_tokenizer, texts, seq)
    assert got.shape == (batch, 2)
    assert measure.max_abs_diff(got, want) < 1e-4


def test_export_reuses_identical_and_replaces_changed(exported, tiny_model, course_tokenizer):
    before = exported.stat().st_mtime_ns
    assert R.export_classifier(tiny_model, course_tokenizer, exported, MAX_LEN) == exported
    assert exported.stat().st_mtime_ns == before  # same weights and settings: reused, not rewritten
    assert R.artifact_meta(exported)["max_len"] == MAX_LEN
    other = exported.with_name("other.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        R.export_classifier(tiny_model, course_tokenizer, other, MAX_LEN + 8)
    assert R.artifact_meta(other)["max_len"] == MAX_LEN + 8
    assert not list(exported.parent.glob(".stage-*"))  # no staging folders left behind


def test_export_with_sdpa_attention_restores_model(tiny_model, course_tokenizer, tmp_path):
    before = tiny_model.config._attn_implementation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        R.export_classifier(tiny_model, course_tokenizer, tmp_path / "m.onnx", MAX_LEN, attn_implementation="eager")
    assert tiny_model.config._attn_implementation == before


def test_dynamo_export_writes_external_data(tiny_model, course_tokenizer, tmp_path):
    path = R.export_classifier(tiny_model, course_tokenizer, tmp_path / "dyn.onnx", MAX_LEN, exporter="dynamo")
    files = [p.name for p in measure.onnx_files(path)]
    assert files == ["dyn.onnx", "dyn.onnx.data"]
    assert measure.size_on_disk(path) > path.stat().st_size
    got = R.run_logits(R.make_session(path, threads=1), course_tokenizer, TEXTS[:3], 11)
    assert measure.max_abs_diff(got, torch_logits(tiny_model, course_tokenizer, TEXTS[:3], 11)) < 1e-4
    (tmp_path / "dyn.onnx.data").rename(tmp_path / "elsewhere.data")  # the .onnx file copied without its weights
    with pytest.raises(FileNotFoundError, match=r"keeps its weights in \['dyn.onnx.data'\]"):
        R.make_session(path)
    with pytest.raises(FileNotFoundError, match="copy the external-data files"):
        R.quantize_dynamic_variant(path, tmp_path / "q.onnx")


def test_logits_only_takes_positional_inputs_and_returns_the_logits(tiny_model, course_tokenizer):
    enc = models.encode(course_tokenizer, TEXTS[:3], MAX_LEN)
    wrapped = models.LogitsOnly(tiny_model).eval()
    with torch.no_grad():
        got = wrapped(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        assert isinstance(got, torch.Tensor) and torch.equal(got, tiny_model(**enc).logits)
        # inputs passed as None are left out of the call, so the model's defaults apply (no mask: attend everywhere)
        assert torch.equal(wrapped(enc["input_ids"]), tiny_model(input_ids=enc["input_ids"]).logits)
        assert not torch.equal(wrapped(enc["input_ids"]), got)  # the padding mask did matter above


def test_importing_the_package_loads_neither_onnx_nor_onnxruntime():
    code = "import sys, helpers.onnx_route; print([m for m in ('onnx', 'onnxruntime') if m in sys.modules])"
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.stdout.strip() == "[]"


def test_export_rejects_bad_arguments(tiny_model, course_tokenizer, tmp_path):
    with pytest.raises(R.OnnxRouteError, match="exporter must be one of"):
        R.export_classifier(tiny_model, course_tokenizer, tmp_path / "m.onnx", MAX_LEN, exporter="tflite")
    with pytest.raises(R.OnnxRouteError, match="must end in .onnx"):
        R.export_classifier(tiny_model, course_tokenizer, tmp_path / "m.bin", MAX_LEN)


def test_artifact_dir_is_keyed_by_weights(tiny_model, tmp_path):
    import copy

    a = R.artifact_dir(tiny_model, MAX_LEN, root=tmp_path)
    assert a == R.artifact_dir(tiny_model, MAX_LEN, root=tmp_path)
    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        other.classifier.bias.add_(1.0)
    assert R.artifact_dir(other, MAX_LEN, root=tmp_path) != a
    assert R.artifact_dir(tiny_model, MAX_LEN, "dynamo", root=tmp_path) != a
    assert a.parent == tmp_path


# --- sessions -------------------------------------------------------------------------------------------------

def test_missing_and_invalid_onnx_paths_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="export the model first"):
        R.make_session(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        R.make_session(bad)
    with pytest.raises(FileNotFoundError, match="export the model first"):
        R.quantize_dynamic_variant(tmp_path / "missing.onnx", tmp_path / "q.onnx")


def test_session_options_are_explicit(exported):
    one = R.make_session(exported, threads=1, opt_level="basic")
    assert R.session_threads(one) == 1
    opts = one.get_session_options()
    import onnxruntime as ort

    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert opts.inter_op_num_threads == 1
    assert R.session_threads(R.make_session(exported)) == measure.available_threads()
    with pytest.raises(R.OnnxRouteError, match="opt_level must be one of"):
        R.make_session(exported, opt_level="max")
    with pytest.raises(R.OnnxRouteError, match="threads must be >= 1"):
        R.make_session(exported, threads=0)
    spin_key = "session.intra_op.allow_spinning"
    quiet = R.make_session(exported, threads=2, spinning=False).get_session_options()
    assert quiet.get_session_config_entry(spin_key) == "0"
    with pytest.raises(Exception):  # not set: ORT's own default (spinning) unless asked
        opts.get_session_config_entry(spin_key)


def test_run_logits_rejects_empty_input(exported, course_tokenizer):
    session = R.make_session(exported, threads=1)
    with pytest.raises(R.OnnxRouteError, match="no texts"):
        R.run_logits(session, course_tokenizer, [], MAX_LEN)
    with pytest.raises(R.OnnxRouteError, match="batch_size must be"):
        R.run_logits(session, course_tokenizer, TEXTS, MAX_LEN, batch_size=0)


# --- optimize, pre-process, quantize --------------------------------------------------------------------------

def test_optimizer_fuses_attention_of_eager_torchscript_export(exported, tmp_path, course_tokenizer, tiny_model):
    out, stats = R.optimize_bert(exported, tmp_path / "opt.onnx", num_heads=4, hidden_size=32)
    fired = {k: v for k, v in stats.items() if v}
    assert fired.get("Attention") == 2  # one per layer
    assert "fuse_attention: failed to match mask path" not in R.attention_fusion_misses(out)
    assert R.consumers_of_first(exported) == ["MatMul"]  # eager attention: softmax feeds the value matmul
    with pytest.raises(R.OnnxRouteError, match="has no Softmax node"):
        R.consumers_of_first(out)  # fused away
    assert fired.get("SkipLayerNormalization", 0) >= 2
    assert all(v > 0 for v in fired.values())
    ops = R.graph_summary(out)["ops"]
    assert ops.get("Attention") == 2 and "Softmax" not in ops
    got = R.run_logits(R.make_session(out, threads=1), course_tokenizer, TEXTS, MAX_LEN)
    assert measure.max_abs_diff(got, torch_logits(tiny_model, course_tokenizer, TEXTS, MAX_LEN)) < 1e-4
    with pytest.raises(R.OnnxRouteError, match="not a multiple"):
        R.optimize_bert(exported, tmp_path / "opt2.onnx", num_heads=5, hidden_size=32)


@pytest.fixture(scope="module")
def preprocessed(exported, tmp_path_factory):
    d = tmp_path_factory.mktemp("pre")
    opt, _ = R.optimize_bert(exported, d / "opt.onnx", num_heads=4, hidden_size=32)
    return R.preprocess(opt, d / "opt.pre.onnx")


def test_preprocess_records_shape_inference(preprocessed):
    meta = R.artifact_meta(preprocessed)
    assert meta["kind"] == "preprocess" and meta["symbolic_shape"] is True
    model = onnx.load(str(preprocessed))
    assert len(model.graph.value_info) > 0  # inferred shapes are stored in the graph


@pytest.mark.parametrize("weight_type, per_channel, reduce_range",
                         [("QInt8", False, False), ("QUInt8", True, True)])
def test_dynamic_quantization_variants(preprocessed, tmp_path, course_tokenizer, weight_type, per_channel,
                                       reduce_range):
    out = R.quantize_dynamic_variant(preprocessed, tmp_path / "dyn.onnx", weight_type, per_channel, reduce_range)
    ops = R.graph_summary(out)["ops"]
    assert "DynamicQuantizeLinear" in ops or "QAttention" in ops
    assert "QAttention" in ops  # the fused attention has an int8 kernel
    assert measure.size_on_disk(out) < 0.5 * measure.size_on_disk(preprocessed)
    fp32 = R.run_logits(R.make_session(preprocessed, threads=1), course_tokenizer, TEXTS, MAX_LEN)
    int8 = R.run_logits(R.make_session(out, threads=1), course_tokenizer, TEXTS, MAX_LEN)
    assert measure.max_abs_diff(fp32, int8) < 0.25 * fp32.abs().max().item()
    meta = R.artifact_meta(out)
    assert (meta["weight_type"], meta["per_channel"], meta["reduce_range"]) == (weight_type, per_channel, reduce_range)
    with pytest.raises(R.OnnxRouteError, match="'QInt8' or 'QUInt8'"):
        R.quantize_dynamic_variant(preprocessed, tmp_path / "x.onnx", "int4")


@pytest.mark.parametrize("layers, blockwise, integer", [("all", 6, 0), ("ffn", 4, 2)])
def test_blockwise_variant_quantizes_the_chosen_matmuls(preprocessed, tmp_path, course_tokenizer, layers, blockwise,
                                                        integer):
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = R.quantize_blockwise_variant(preprocessed, tmp_path / "bw.onnx", layers=layers, block_size=16)
    assert (list(root.handlers), root.level) == (handlers, level)  # the quantizer's basicConfig was undone
    ops = R.graph_summary(out)["ops"]
    # 2 layers, each with two feed-forward MatMuls and one attention output MatMul: "all" makes all six
    # block-wise, "ffn" four, and quantize_dynamic turns the other two into MatMulInteger
    assert "MatMul" not in ops
    assert ops.get("MatMulNBits", 0) == blockwise
    assert ops.get("MatMulInteger", 0) >= integer
    assert ops.get("QAttention") == 2 and ops.get("QEmbedLayerNormalization") == 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["bw.onnx", "bw.onnx.json"]  # no stage files left
    assert measure.size_on_disk(out) < 0.5 * measure.size_on_disk(preprocessed)
    fp32 = R.run_logits(R.make_session(preprocessed, threads=1), course_tokenizer, TEXTS, MAX_LEN)
    int8 = R.run_logits(R.make_session(out, threads=1), course_tokenizer, TEXTS, MAX_LEN)
    assert measure.max_abs_diff(fp32, int8) < 0.25 * fp32.abs().max().item()
    assert (R.artifact_meta(out)["block_size"], R.artifact_meta(out)["layers"]) == (16, layers)
    before = out.stat().st_mtime_ns
    assert R.quantize_blockwise_variant(preprocessed, out, layers=layers, block_size=16) == out
    assert out.stat().st_mtime_ns == before  # reused, not rebuilt
    with pytest.raises(R.OnnxRouteError, match="block_size must be one of"):
        R.quantize_blockwise_variant(preprocessed, tmp_path / "x.onnx", block_size=24)
    with pytest.raises(R.OnnxRouteError, match="layers must be one of"):
        R.quantize_blockwise_variant(preprocessed, tmp_path / "x.onnx", layers="attention")


def test_score_variant_times_the_build_and_scores_the_model(preprocessed, tmp_path, course_tokenizer):
    split = Split(TEXTS, [1, 0, 1, 0, 1, 0], name="validation")
    fp32 = R.run_logits(R.make_session(preprocessed, threads=1), course_tokenizer, TEXTS, MAX_LEN)
    calls = []

    def build():
        calls.append("built")
        return R.quantize_dynamic_variant(preprocessed, tmp_path / "dyn.onnx", "QInt8", per_channel=True)

    path, comparison, row = R.score_variant("int8 per-channel", build, course_tokenizer, split, MAX_LEN, fp32,
                                            fp32_bytes=measure.size_on_disk(preprocessed),
                                            ops=("QAttention", "MatMulNBits"), weight_type="QInt8")
    assert calls == ["built"] and path == tmp_path / "dyn.onnx"
    assert list(row) == ["variant", "weight_type", "size MB", "x fp32 size", "QAttention", "MatMulNBits", "agreement",
                         "agreement 95% CI", "flips", "build s"]
    assert (row["variant"], row["weight_type"], row["QAttention"], row["MatMulNBits"]) == ("int8 per-channel", "QInt8",
                                                                                           2, 0)
    assert row["size MB"] == pytest.approx(measure.mb(measure.size_on_disk(path)))
    assert row["x fp32 size"] == pytest.approx(measure.size_on_disk(path) / measure.size_on_disk(preprocessed))
    again = R.score(path, fp32, course_tokenizer, split, MAX_LEN)
    assert comparison == again and row["agreement"] == again.agreement
    assert (comparison.split, comparison.n, comparison.batch_size) == ("validation", len(TEXTS), 32)
    assert row["flips"] == f"{comparison.flips}/{len(TEXTS)}"
    assert row["build s"] > 0


def test_forward_and_score_follow_the_protocol(preprocessed, course_tokenizer, tiny_model):
    session = R.make_session(preprocessed, threads=1)
    enc = course_tokenizer(TEXTS[:3], padding="max_length", max_length=MAX_LEN, return_tensors="pt")
    got = R.forward(session)(dict(enc))
    assert got.shape == (3, 2)
    assert measure.max_abs_diff(torch.from_numpy(got), torch_logits(tiny_model, course_tokenizer, TEXTS[:3],
                                                                      MAX_LEN)) < 1e-4
    with pytest.raises(R.OnnxRouteError, match=r"wants inputs \['token_type_ids'\]"):
        R.forward(session)({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    split = Split(TEXTS, [1, 0, 1, 0, 1, 0], name="validation")
    shifted = torch_logits(tiny_model, course_tokenizer, TEXTS, MAX_LEN).flip(1)  # every prediction flipped
    comparison = R.score(session, shifted, course_tokenizer, split, MAX_LEN)
    assert comparison.agreement == 0.0 and comparison.flips == len(TEXTS)
    assert comparison.reference_accuracy == pytest.approx(1 - comparison.accuracy)


def test_ffn_matmuls_are_told_apart_from_attention():
    assert R.is_ffn_matmul("/model/bert/encoder/layer.0/intermediate/dense/MatMul")
    assert R.is_ffn_matmul("/model/bert/encoder/layer.5/output/dense/MatMul")
    assert not R.is_ffn_matmul("/model/bert/encoder/layer.5/attention/output/dense/MatMul")
    assert not R.is_ffn_matmul("/model/classifier/Gemm")
    assert R.is_ffn_output_matmul("/model/bert/encoder/layer.5/output/dense/MatMul")
    assert not R.is_ffn_output_matmul("/model/bert/encoder/layer.0/intermediate/dense/MatMul")
    assert not R.is_ffn_output_matmul("/model/bert/encoder/layer.5/attention/output/dense/MatMul")


def test_matmul_node_name_matches_the_torchscript_export(exported, tiny_model):
    assert (R.matmul_node_name("bert.encoder.layer.10.output.dense")
            == "/model/bert/encoder/layer.10/output/dense/MatMul")
    linears = [name for name, m in tiny_model.named_modules() if isinstance(m, torch.nn.Linear)
               and name.startswith("bert.encoder.")]
    in_graph = set(R.matmul_nodes(exported))
    assert linears and all(R.matmul_node_name(name) in in_graph for name in linears)
    with pytest.raises(R.OnnxRouteError, match="dotted module name"):
        R.matmul_node_name("")


def test_blockwise_variant_explains_a_graph_without_ffn(exported, tmp_path, monkeypatch):
    monkeypatch.setattr("helpers.onnx_route.quantize.is_ffn_matmul", lambda name: False)
    with pytest.raises(R.OnnxRouteError, match="no feed-forward MatMul nodes"):
        R.quantize_blockwise_variant(exported, tmp_path / "x.onnx", layers="ffn")


class ListReader:
    """A minimal CalibrationDataReader, as notebook 04 writes one: tokenized sentences in batches, rewindable."""

    def __init__(self, tokenizer, texts, batch_size=3):
        enc = tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_LEN, return_tensors="np")
        self.batches = [{n: enc[n][i:i + batch_size].astype(np.int64) for n in models.INPUT_NAMES}
                        for i in range(0, len(texts), batch_size)]
        self.rewinds = 0
        self.rewind()

    def get_next(self):
        return next(self.position, None)

    def rewind(self):
        self.rewinds += 1
        self.position = iter(self.batches)


def test_static_quantization_qdq(exported, tmp_path, course_tokenizer, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    pre = R.preprocess(exported, tmp_path / "pre.onnx")
    assert R.artifact_meta(pre)["symbolic_shape"] is False  # the unfused graph needs the fallback
    assert list(work.iterdir()) == []  # ORT's dump of the failed symbolic shape inference went elsewhere
    reader = ListReader(course_tokenizer, TEXTS)
    reader.get_next()  # a half-read reader is rewound before calibrating
    out = R.quantize_static_variant(pre, tmp_path / "static.onnx", reader, method="MinMax", quant_format="QDQ",
                                    reuse_key="minmax")
    assert reader.rewinds == 2
    ops = R.graph_summary(out)["ops"]
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    weights = {r["used by"] for r in R.initializers(out) if r["dtype"] == "int8"}
    assert weights == {"MatMul (via DequantizeLinear)"}  # the int8 weights feed MatMuls through DequantizeLinear
    before = out.stat().st_mtime_ns
    assert R.quantize_static_variant(pre, out, reader, reuse_key="minmax") == out
    assert out.stat().st_mtime_ns == before  # same source, settings and key: reused
    ffn = R.matmul_nodes(pre, R.is_ffn_matmul)
    assert len(ffn) == 4  # two layers, two feed-forward MatMuls each
    kept = R.quantize_static_variant(pre, tmp_path / "static-keep.onnx", reader, nodes_to_exclude=ffn)
    float_matmuls = set(R.matmul_nodes(kept))
    assert set(ffn) <= float_matmuls  # excluded nodes read float weights (no DequantizeLinear in front)
    assert R.artifact_meta(kept)["exclude"] == sorted(ffn)
    fp32 = R.run_logits(R.make_session(pre, threads=1), course_tokenizer, TEXTS, MAX_LEN)
    int8 = R.run_logits(R.make_session(out, threads=1), course_tokenizer, TEXTS, MAX_LEN)
    assert measure.max_abs_diff(fp32, int8) < 0.25 * fp32.abs().max().item()
    with pytest.raises(R.OnnxRouteError, match="method must be one of"):
        R.quantize_static_variant(pre, tmp_path / "s2.onnx", reader, method="Average")
    with pytest.raises(R.OnnxRouteError, match="quant_format must be"):
        R.quantize_static_variant(pre, tmp_path / "s3.onnx", reader, quant_format="QLinear")
    with pytest.raises(R.OnnxRouteError, match="CalibrationDataReader"):
        R.quantize_static_variant(pre, tmp_path / "s4.onnx", TEXTS)


def test_quantizers_do_not_share_scratch_files_beside_their_input(preprocessed, exported, tmp_path, course_tokenizer):
    """ORT's quantizers write ``<input stem>-inferred.onnx`` beside their input; another process quantizing the same
    cached model writes, reads and deletes the same name. Here that name is taken (a folder) beside each input: the
    helpers must quantize from a private copy, and leave nothing behind."""
    import shutil

    inputs = {}
    for name, source in (("fused", preprocessed), ("unfused", R.preprocess(exported, tmp_path / "unfused.onnx"))):
        folder = tmp_path / name
        folder.mkdir()
        inputs[name] = Path(shutil.copy(source, folder / "model.pre.onnx"))
        (folder / "model.pre-inferred.onnx").mkdir()  # what a concurrent quantizer would be writing
    built = [R.quantize_dynamic_variant(inputs["fused"], tmp_path / "dyn.onnx", per_channel=True),
             R.quantize_blockwise_variant(inputs["fused"], tmp_path / "bw.onnx", layers="ffn"),
             R.quantize_static_variant(inputs["unfused"], tmp_path / "static.onnx",
                                       ListReader(course_tokenizer, TEXTS))]
    for out in built:
        assert R.run_logits(R.make_session(out, threads=1), course_tokenizer, TEXTS, MAX_LEN).shape == (len(TEXTS), 2)
    for path in inputs.values():
        assert sorted(p.name for p in path.parent.iterdir()) == ["model.pre-inferred.onnx", "model.pre.onnx"]


def test_the_recommended_recipe_is_built_once(tiny_model, course_tokenizer, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = R.build_recipe(R.BEST_INT8_RECIPE, tiny_model, course_tokenizer, MAX_LEN, root=tmp_path)
    assert path.parent == R.artifact_dir(tiny_model, MAX_LEN, root=tmp_path)
    meta = R.artifact_meta(path)
    assert all(meta[k] == v for k, v in R.BEST_INT8_RECIPE.items())
    assert "QAttention" in R.graph_summary(path)["ops"]
    before = path.stat().st_mtime_ns
    assert R.build_recipe(R.BEST_INT8_RECIPE, tiny_model, course_tokenizer, MAX_LEN, root=tmp_path) == path
    assert path.stat().st_mtime_ns == before  # reused, not rebuilt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dynamic = R.build_recipe(R.DYNAMIC_INT8_RECIPE, tiny_model, course_tokenizer, MAX_LEN, root=tmp_path)
    assert dynamic.parent == path.parent and dynamic != path
    assert "MatMulNBits" not in R.graph_summary(dynamic)["ops"]
    with pytest.raises(R.OnnxRouteError, match="recipe kind must be one of"):
        R.build_recipe({"kind": "static"}, tiny_model, course_tokenizer, MAX_LEN, root=tmp_path)


def test_optimizer_explains_unfused_attention_of_dynamo_export(tiny_model, course_tokenizer, tmp_path):
    path = R.export_classifier(tiny_model, course_tokenizer, tmp_path / "dyn.onnx", MAX_LEN, exporter="dynamo")
    out, stats = R.optimize_bert(path, tmp_path / "dyn.opt.onnx", num_heads=4, hidden_size=32)
    assert stats["Attention"] == 0
    assert R.attention_fusion_misses(out) == {"fuse_attention: failed to match mask path": 2}


def test_initializers_find_the_word_embeddings(exported, preprocessed, tiny_model):
    vocab, hidden = tiny_model.config.vocab_size, tiny_model.config.hidden_size
    for path, reader in [(exported, "Gather"), (preprocessed, "EmbedLayerNormalization")]:
        rows = R.initializers(path)
        largest = rows[0]
        assert (largest["used by"], largest["dtype"], largest["shape"]) == (reader, "float32", (vocab, hidden))
        assert largest["bytes"] == vocab * hidden * 4
        assert [r["bytes"] for r in rows] == sorted((r["bytes"] for r in rows), reverse=True)
        assert sum(r["bytes"] for r in rows) <= measure.size_on_disk(path)
        assert sum(r["bytes"] for r in rows) > 0.9 * measure.size_on_disk(path)  # weights are most of the file


def test_a_source_without_sidecar_is_keyed_by_its_content(exported, preprocessed, tmp_path):
    import shutil

    source = tmp_path / "mine.onnx"  # written by the learner's own call: no sidecar
    shutil.copy(preprocessed, source)
    out = R.quantize_dynamic_variant(source, tmp_path / "q.onnx")
    meta = R.artifact_meta(out)["source"]
    assert meta["file"] == "mine.onnx" and len(meta["sha256"]) == 64
    before = out.stat().st_mtime_ns
    assert R.quantize_dynamic_variant(source, tmp_path / "q.onnx") == out
    assert out.stat().st_mtime_ns == before  # same bytes: reused
    shutil.copy(exported, source)  # a different graph under the same name
    R.quantize_dynamic_variant(source, tmp_path / "q.onnx")
    assert R.artifact_meta(out)["source"]["sha256"] != meta["sha256"]  # rebuilt from the new source
    assert "QAttention" not in R.graph_summary(out)["ops"]  # the unfused export has no fused attention
