"""helpers.openvino_route on a tiny BERT: conversion matches PyTorch, NNCF int8 runs and is smaller, the cache is
reused and written atomically, the precision hint is honoured, and bad input fails with a message that says why."""

import sys

import numpy as np
import pytest
import torch

from helpers import cache, cpu, data, models
from helpers import openvino_route as ovr

pytest.importorskip("openvino")
pytest.importorskip("nncf")

MAX_LEN = 16
TEXTS = ["a gripping, beautifully acted drama", "dull and far too long", "the plot never comes together",
         "one of the funniest films of the year", "a mess", "warm, wise and surprising",
         "it drags in the middle but the ending lands", "not worth the ticket"]
CALIBRATION = data.Split(TEXTS * 2, [1, 0, 0, 1, 0, 1, 1, 0] * 2, "train")


@pytest.fixture(scope="module")
def tiny(make_tiny_bert, course_tokenizer):
    return make_tiny_bert(logit_scale=20.0, hidden_size=64, intermediate_size=256), course_tokenizer


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.fixture(scope="module")
def fp32_xml(tiny, root):
    model, tokenizer = tiny
    return ovr.convert_classifier(model, tokenizer, MAX_LEN, root=root)


@pytest.fixture(scope="module")
def int8_xml(tiny, root):
    model, tokenizer = tiny
    return ovr.quantize_classifier(model, tokenizer, MAX_LEN, CALIBRATION, subset_size=12, root=root)


def _linear_weights(model) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


# --- conversion ----------------------------------------------------------------------------------------------------

def test_converted_model_matches_pytorch_at_any_length(tiny, fp32_xml):
    model, tokenizer = tiny
    runner = ovr.OpenVinoClassifier(ovr.compile_classifier(fp32_xml, "f32", threads=1))
    for seq in (MAX_LEN, 24):  # the IR keeps batch and sequence dynamic
        batch = models.encode(tokenizer, TEXTS, seq)
        with torch.no_grad():
            expected = model(**batch).logits
        got = runner(batch)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


def test_fp32_file_keeps_fp32_weights(tiny, fp32_xml):
    model, _ = tiny
    params = sum(p.numel() for p in model.parameters())
    assert ovr.model_bytes(fp32_xml) >= 4 * params  # ov.save_model's default compress_to_fp16=True would halve it
    assert ovr.model_bytes(fp32_xml) == fp32_xml.stat().st_size + fp32_xml.with_suffix(".bin").stat().st_size


# --- NNCF ----------------------------------------------------------------------------------------------------------

def test_int8_runs_close_to_fp32_and_is_smaller(tiny, fp32_xml, int8_xml):
    model, tokenizer = tiny
    fp32_classifier = ovr.OpenVinoClassifier(ovr.compile_classifier(fp32_xml, "f32"))
    fp32 = ovr.predict_logits(fp32_classifier, tokenizer, TEXTS, MAX_LEN)
    compiled = ovr.compile_classifier(int8_xml, "f32")
    int8 = ovr.predict_logits(ovr.OpenVinoClassifier(compiled), tokenizer, TEXTS, MAX_LEN)
    assert int8.shape == fp32.shape and torch.isfinite(int8).all()
    assert not torch.equal(int8, fp32)  # quantized: not the same numbers
    assert (int8 - fp32).abs().max() < 0.25 * fp32.abs().max()
    # every Linear weight went from 4 bytes to 1 (the embedding tables stay fp32)
    assert ovr.model_bytes(fp32_xml) - ovr.model_bytes(int8_xml) >= 2.5 * _linear_weights(model)
    kernels = ovr.runtime_precisions(compiled)["FullyConnected"]
    assert set(kernels) <= {"i8", "u8"} and sum(kernels.values()) == 2 * 6 + 2  # 6 Linear per layer, pooler, head


def test_quantize_records_settings_and_ignored_scope_keeps_layers_float(tiny, root, int8_xml):
    model, tokenizer = tiny
    settings = cache.read_meta(int8_xml.parent)["settings"]
    assert settings["kind"] == "int8" and settings["subset_size"] == 12 and settings["preset"] == "mixed"
    ov_model = ovr.read_model(int8_xml)
    names = [op.get_friendly_name() for op in ov_model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    head = [n for n in names if "classifier" in n]
    assert len(head) == 1
    ignored = ovr.quantize_classifier(model, tokenizer, MAX_LEN, CALIBRATION, subset_size=12, root=root,
                                      ignored_patterns=[r".*classifier.*"])
    assert ignored.parent != int8_xml.parent
    quantized = ovr.runtime_precisions(ovr.compile_classifier(int8_xml, "f32"))["FullyConnected"]
    partly = ovr.runtime_precisions(ovr.compile_classifier(ignored, "f32"))["FullyConnected"]
    assert partly.get("f32") == 1 and sum(partly.values()) == sum(quantized.values())


def test_nncf_arguments_are_explicit():
    import nncf

    kwargs = ovr.nncf_arguments(preset="performance", subset_size=100, fast_bias_correction=False,
                                smooth_quant_alpha=0.5, ignored_patterns=[r".*layer\.0\..*"], overflow_fix="enable")
    assert kwargs["model_type"] == nncf.ModelType.TRANSFORMER
    assert kwargs["preset"] == nncf.QuantizationPreset.PERFORMANCE
    assert kwargs["subset_size"] == 100 and kwargs["fast_bias_correction"] is False
    assert kwargs["advanced_parameters"].smooth_quant_alphas.matmul == 0.5
    assert kwargs["advanced_parameters"].overflow_fix == nncf.OverflowFix.ENABLE
    assert kwargs["ignored_scope"].patterns == [r".*layer\.0\..*"]
    assert "ignored_scope" not in ovr.nncf_arguments()
    recommended = ovr.nncf_arguments(**ovr.RECOMMENDED_NNCF)  # the recipe names only real settings
    assert recommended["advanced_parameters"].smooth_quant_alphas.matmul == ovr.RECOMMENDED_NNCF["smooth_quant_alpha"]


# --- cache ---------------------------------------------------------------------------------------------------------

def test_cache_is_reused_not_rebuilt(tiny, root, fp32_xml, int8_xml, monkeypatch):
    import nncf

    model, tokenizer = tiny
    calls = []
    monkeypatch.setattr(nncf, "quantize", lambda *a, **k: calls.append(1))
    mtimes = {p: p.with_suffix(".bin").stat().st_mtime_ns for p in (fp32_xml, int8_xml)}
    assert ovr.convert_classifier(model, tokenizer, MAX_LEN, root=root) == fp32_xml
    assert ovr.quantize_classifier(model, tokenizer, MAX_LEN, CALIBRATION, subset_size=12, root=root) == int8_xml
    assert calls == []
    assert {p: p.with_suffix(".bin").stat().st_mtime_ns for p in mtimes} == mtimes
    assert not list(root.glob(".*.tmp"))  # built in temporary folders, renamed into place


def test_other_calibration_or_weights_get_their_own_entry(tiny, root, fp32_xml, make_tiny_bert):
    model, tokenizer = tiny
    other = make_tiny_bert(seed=1, hidden_size=64, intermediate_size=256)
    assert ovr.convert_classifier(other, tokenizer, MAX_LEN, root=root) != fp32_xml
    base = dict(cache.read_meta(fp32_xml.parent)["settings"])
    assert fp32_xml.parent.name == cache.settings_key(base) and base["weights"] == cache.fingerprint(model)
    assert ovr.convert_classifier(model, tokenizer, MAX_LEN + 1, root=root).parent != fp32_xml.parent


# --- compile and run -----------------------------------------------------------------------------------------------

def test_precision_hint_is_honoured(fp32_xml):
    compiled = ovr.compile_classifier(fp32_xml, "f32", threads=1)
    assert ovr.precision_name(compiled.get_property("INFERENCE_PRECISION_HINT")) == "f32"
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    features = cpu.features()
    if cpu.has_native_bf16(features) or features["avx512f"]:  # native, or emulated on AVX-512 (slower than f32)
        compiled = ovr.compile_classifier(fp32_xml, "bf16", threads=1)
        assert ovr.precision_name(compiled.get_property("INFERENCE_PRECISION_HINT")) == "bf16"
    else:  # OpenVINO would quietly run f32: refused, with the reason
        with pytest.raises(ovr.OpenVinoRouteError, match="no native bf16"):
            ovr.compile_classifier(fp32_xml, "bf16", threads=1)


_BF16_UNDER_AVX2 = """
import sys
from helpers import openvino_route as ovr
try:
    ovr.compile_classifier(sys.argv[1], "bf16", threads=1)
except ovr.OpenVinoRouteError as exc:
    print("refused:", exc)
else:
    print("compiled")
"""


@pytest.mark.skipif(not cpu.features()["avx2"], reason="ONEDNN_MAX_CPU_ISA caps x86 instruction sets only")
def test_a_bf16_request_that_runs_f32_is_refused(fp32_xml):
    """Under ONEDNN_MAX_CPU_ISA=AVX2 (the kernels an AVX2-only CPU has) OpenVINO's CPU plugin reads a bf16 hint
    back as f32; compile_classifier refuses it instead of returning an f32 model labelled bf16."""
    import subprocess
    import sys

    from helpers.bench import isa

    out = subprocess.run([sys.executable, "-c", _BF16_UNDER_AVX2, str(fp32_xml)], env=isa._child_env("AVX2"),
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert "refused:" in out and "runs f32" in out and "no native bf16" in out


def test_default_precision_follows_the_cpu():
    default = ovr.default_precision_hint()
    assert default in ("f32", "bf16")
    if not cpu.has_native_bf16(cpu.features()):
        assert default == "f32"


def test_native_bf16_reads_the_cpu_flags():
    assert cpu.has_native_bf16({"avx512_bf16": True, "amx_bf16": False})
    assert cpu.has_native_bf16({"avx512_bf16": False, "amx_bf16": True})
    assert cpu.has_native_bf16({"bf16": True})  # ARM FEAT_BF16 (Graviton 3, Apple M2)
    assert not cpu.has_native_bf16({"avx512_bf16": False, "amx_bf16": False, "avx512_vnni": True})


def test_runner_takes_numpy_or_torch_and_batches_in_order(tiny, fp32_xml):
    _, tokenizer = tiny
    runner = ovr.OpenVinoClassifier(ovr.compile_classifier(fp32_xml, "f32"))
    as_torch = runner(models.encode(tokenizer, TEXTS, MAX_LEN))
    as_numpy = runner(models.encode(tokenizer, TEXTS, MAX_LEN, "np"))
    assert torch.equal(as_torch, as_numpy) and as_numpy.dtype == torch.float32
    batched = ovr.predict_logits(runner, tokenizer, TEXTS, MAX_LEN, batch_size=3)
    assert batched.shape == (len(TEXTS), 2)
    assert torch.allclose(batched, as_torch, atol=1e-5)


def test_profile_names_the_kernels(tiny, int8_xml):
    _, tokenizer = tiny
    runner = ovr.OpenVinoClassifier(ovr.compile_classifier(int8_xml, "f32", perf_count=True))
    rows = ovr.profile_by_kernel(runner, models.encode(tokenizer, TEXTS, MAX_LEN, "np"), runs=2)
    assert rows and all(r["ms"] > 0 for r in rows)
    assert rows == sorted(rows, key=lambda r: -r["ms"])
    assert any(r["layer"] == "FullyConnected" and "8" in r["kernel"] for r in rows)
    with pytest.raises(ovr.OpenVinoRouteError, match="perf_count=True"):
        ovr.profile_by_kernel(ovr.OpenVinoClassifier(ovr.compile_classifier(int8_xml, "f32")), {}, runs=1)


# --- errors that say what to do ------------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["fp32", "int8", "FP32", None])
def test_bad_precision_names_the_valid_ones(fp32_xml, precision):
    with pytest.raises(ovr.OpenVinoRouteError, match=r"'f32', 'bf16'"):
        ovr.compile_classifier(fp32_xml, precision)


def test_bad_threads_and_missing_model(fp32_xml, tmp_path):
    with pytest.raises(ovr.OpenVinoRouteError, match="threads must be"):
        ovr.compile_classifier(fp32_xml, "f32", threads=0)
    with pytest.raises(FileNotFoundError, match="convert_classifier"):
        ovr.compile_classifier(tmp_path / "nothing.xml", "f32")
    with pytest.raises(FileNotFoundError, match="convert_classifier"):
        ovr.model_bytes(tmp_path / "nothing.xml")


def test_calibration_must_be_train_and_not_empty(tiny, root):
    model, tokenizer = tiny
    validation = data.Split(TEXTS, [0] * len(TEXTS), "validation")
    with pytest.raises(ovr.OpenVinoRouteError, match="train split"):
        ovr.quantize_classifier(model, tokenizer, MAX_LEN, validation, subset_size=4, root=root)
    with pytest.raises(ovr.OpenVinoRouteError, match="empty"):
        ovr.quantize_classifier(model, tokenizer, MAX_LEN, [], subset_size=4, root=root)
    with pytest.raises(ovr.OpenVinoRouteError, match="only 8 were given"):
        ovr.quantize_classifier(model, tokenizer, MAX_LEN, TEXTS, subset_size=300, root=root)
    with pytest.raises(ovr.OpenVinoRouteError, match="preset must be one of"):
        ovr.quantize_classifier(model, tokenizer, MAX_LEN, TEXTS, subset_size=4, preset="fast", root=root)


def test_runner_names_missing_inputs(fp32_xml):
    runner = ovr.OpenVinoClassifier(ovr.compile_classifier(fp32_xml, "f32"))
    with pytest.raises(ovr.OpenVinoRouteError, match="attention_mask"):
        runner({"input_ids": np.ones((1, 4), dtype=np.int64)})
    with pytest.raises(ovr.OpenVinoRouteError, match="integer"):
        runner({n: np.ones((1, 4), dtype=np.float32) for n in runner.input_names})


def test_missing_openvino_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ovr.OpenVinoMissingError, match=r"pip install openvino==2026\.4\.1"):
        ovr.import_openvino()
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ovr.OpenVinoMissingError, match=r"pip install nncf==3\.4\.0"):
        ovr.import_nncf()
