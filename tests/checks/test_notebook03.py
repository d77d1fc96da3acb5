"""The checkers of notebook 03's exercises: a qconfig_spec that keeps the group chosen on validation float, and a
file size predicted from parameter counts."""

import pytest
from torch import nn
from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

from helpers import bert_quant, checks, data, deprecations, evaluation, measure

deprecations.silence_known()
MAX_LEN = 16
TEXTS = ["a warm, funny and smart film", "dull and far too long", "the cast is wonderful", "a mess from start to end",
         "it never finds its footing", "sharp writing and a great ending"] * 6


@pytest.fixture(autouse=True)
def lenient(monkeypatch):
    monkeypatch.delenv(checks.STRICT_ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def setting(make_tiny_bert, course_tokenizer):
    model = make_tiny_bert(logit_scale=20.0)
    split = data.Split(TEXTS, [i % 2 for i in range(len(TEXTS))], "validation")
    reference = evaluation.predict_logits(model, course_tokenizer, split.texts, MAX_LEN)
    group = "block1"
    layers = bert_quant.linear_groups(model)[group]
    expected = evaluation.evaluate(bert_quant.quantize_model(model, keep_fp32=group), reference, course_tokenizer,
                                   split, MAX_LEN).agreement
    return dict(fp32_model=model, tokenizer=course_tokenizer, split=split, fp32_logits=reference, max_len=MAX_LEN,
                kept_group=group, kept_layers=layers, expected_agreement=expected)


def spec_without(model, kept, qconfig=default_dynamic_qconfig):
    return {n: qconfig for n, m in model.named_modules() if isinstance(m, nn.Linear) and n not in set(kept)}


def run_spec_check(setting, spec, capsys, **overrides):
    checks.check_qconfig_spec(spec, name="Ex", **{**setting, **overrides})
    return checks.outcomes["Ex"], capsys.readouterr().out


def test_the_right_spec_passes(setting, capsys):
    ok, out = run_spec_check(setting, spec_without(setting["fp32_model"], setting["kept_layers"]), capsys)
    assert ok and "block1 stays float (6 Linears)" in out and "validation sentences" in out


def test_a_spec_with_module_types_for_the_rest_also_passes(setting, capsys):
    """Names override types: {nn.Linear: qconfig} plus None for the kept layers is the same model."""
    spec = {nn.Linear: default_dynamic_qconfig, **{n: None for n in setting["kept_layers"]}}
    ok, _ = run_spec_check(setting, spec, capsys)
    assert ok


def test_the_wrong_group_names_what_is_missing_and_extra(setting, capsys):
    model = setting["fp32_model"]
    ok, out = run_spec_check(setting, spec_without(model, bert_quant.linear_groups(model)["block0"]), capsys)
    assert not ok and "'block1'" in out
    assert "leave them out of the spec: bert.encoder.layer.1." in out
    assert "put them in the spec: bert.encoder.layer.0." in out


def test_per_channel_or_embeddings_are_not_what_the_sweep_measured(setting, capsys):
    model = setting["fp32_model"]
    ok, out = run_spec_check(setting, spec_without(model, setting["kept_layers"], per_channel_dynamic_qconfig),
                             capsys)
    assert not ok and "default_dynamic_qconfig" in out
    spec = {**spec_without(model, setting["kept_layers"]),
            **bert_quant.qconfig_spec(model, keep_fp32="all", embeddings=True)}
    ok, out = run_spec_check(setting, spec, capsys)
    assert not ok and "bert.embeddings." in out


@pytest.mark.parametrize("answer, expected", [(..., "no answer yet"), (None, "no answer yet"),
                                              ([], "non-empty dict"), ({}, "non-empty dict")])
def test_unanswered_or_not_a_dict(setting, capsys, answer, expected):
    ok, out = run_spec_check(setting, answer, capsys)
    assert not ok and expected in out


def test_a_spec_quantize_dynamic_refuses(setting, capsys):
    ok, out = run_spec_check(setting, {n: "default_dynamic_qconfig" for n in ("classifier",)}, capsys)
    assert not ok and "quantize_dynamic refused the spec" in out


def test_a_different_agreement_is_reported(setting, capsys):
    spec = spec_without(setting["fp32_model"], setting["kept_layers"])
    wrong = setting["expected_agreement"] - 3 / len(TEXTS)
    ok, out = run_spec_check(setting, spec, capsys, expected_agreement=wrong)
    assert not ok and "the sweep measured" in out


def test_the_check_reads_validation_only(setting, capsys):
    test_split = data.Split(TEXTS, [0] * len(TEXTS), "test")
    with pytest.raises(ValueError, match="validation split"):
        checks.check_qconfig_spec({}, name="Ex", **{**setting, "split": test_split})


def test_strict_mode_raises(setting, monkeypatch):
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "1")
    with pytest.raises(checks.ExerciseNotSolved, match="not yet"):
        checks.check_qconfig_spec({"classifier": default_dynamic_qconfig}, name="Ex", **setting)


# --- predicting a file size ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sized(make_tiny_bert):
    model = make_tiny_bert(hidden_size=64, intermediate_size=256)
    measured = measure.state_dict_bytes(bert_quant.quantize_model(model, embeddings=True))
    per_module = {nn.Linear: 1, nn.Embedding: 1}
    int8_values = sum(m.weight.numel() for m in model.modules() if type(m) in per_module)
    rows = sum(m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding))
    tables = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    rest = sum(p.numel() for p in model.parameters()) - int8_values
    return dict(model=model, measured=measured, prediction=int8_values + 8 * rows + 4 * rest, rows=rows,
                tables=tables)


def run_size_check(sized, answer, capsys, rel=0.03):
    checks.check_size_prediction(answer, name="Ex", measured_bytes=sized["measured"], fp32_model=sized["model"],
                                 rel=rel)
    return checks.outcomes["Ex"], capsys.readouterr().out


def test_size_from_parameter_counts_passes(sized, capsys):
    assert abs(sized["prediction"] / sized["measured"] - 1) < 0.03  # the solution's arithmetic holds
    ok, out = run_size_check(sized, sized["prediction"], capsys)
    assert ok and "MB measured" in out


def test_size_hints(sized, capsys):
    ok, out = run_size_check(sized, sized["prediction"] - 8 * sized["rows"], capsys)
    assert not ok and "8 bytes per row" in out
    ok, out = run_size_check(sized, sized["prediction"] + 3 * sized["tables"], capsys)
    assert not ok and "1 byte per value, not 4" in out
    ok, out = run_size_check(sized, 4 * sum(p.numel() for p in sized["model"].parameters()), capsys)
    assert not ok and ("about the fp32 size" in out or "not 4" in out)
    ok, out = run_size_check(sized, 0.8 * sized["measured"], capsys)
    assert not ok and "-20.0% off" in out
    ok, out = run_size_check(sized, "big", capsys)
    assert not ok and "expected a number of bytes" in out
    ok, out = run_size_check(sized, ..., capsys)
    assert not ok and "no answer yet" in out
