"""The exercise checkers of notebook 02 pass a correct answer and give the specific hint for each wrong one."""

import copy

import pytest
import torch
from torch import nn
from torch.ao.quantization import default_dynamic_qconfig, float_qparams_weight_only_qconfig

from helpers import checks, cpu, deprecations, lstm, measure
from helpers.checks import notebook02


@pytest.fixture(autouse=True)
def _quiet_and_lenient(monkeypatch):
    deprecations.silence_known()
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "0")
    before = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = before


def _verdict(capsys, name):
    out = capsys.readouterr().out
    return checks.outcomes[name], out


# --- exercise 1: the engine ---------------------------------------------------------------------------------------

def good_pick(supported, machine):
    usable = [e for e in supported if e != "none"]
    order = ("x86", "fbgemm", "onednn", "qnnpack") if cpu.is_x86({"machine": machine}) else ("qnnpack", "onednn")
    for candidate in order:
        if candidate in usable:
            return candidate
    raise RuntimeError(f"no quantized engine in {list(supported)}: install an official PyTorch build")


def test_engine_picker_accepts_the_fix_and_restores_the_engine(capsys):
    before = torch.backends.quantized.engine
    checks.check_engine_picker(good_pick)
    ok, out = _verdict(capsys, "exercise 1")
    assert ok and "correct" in out
    assert torch.backends.quantized.engine == before
    assert torch.backends.quantized.supported_engines != ["qnnpack", "none"]


@pytest.mark.parametrize("pick, hint", [
    (lambda supported, machine: supported[0], "prefer x86, then fbgemm"),  # qnnpack on x86-64
    (lambda supported, machine: next(e for e in ("x86", "fbgemm", "qnnpack") if e in supported),
     "raised StopIteration"),  # the one-liner without the error for an empty build
    (lambda supported, machine: "x86" if "x86" in supported else supported[-1], "'none' is not an engine"),
    (lambda supported, machine: good_pick(supported, machine) if supported and supported != ["none"] else "none",
     "you returned 'none'"),
])
def test_engine_picker_hints(capsys, pick, hint):
    checks.check_engine_picker(pick)
    ok, out = _verdict(capsys, "exercise 1")
    assert not ok and hint in out


def test_engine_picker_unanswered_and_strict(capsys, monkeypatch):
    checks.check_engine_picker(...)
    assert "no answer yet" in _verdict(capsys, "exercise 1")[1]
    checks.check_engine_picker(lambda supported, machine: ...)  # the student stub of a function returns ...
    assert "no answer yet" in _verdict(capsys, "exercise 1")[1]
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "1")
    with pytest.raises(checks.ExerciseNotSolved, match="prefer x86"):
        checks.check_engine_picker(lambda supported, machine: supported[0])


# --- exercise 2: the layers that pay off --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    deprecations.silence_known()
    model = lstm.LSTMClassifier(vocab_size=3000, embed_dim=64, hidden=128, layers=2).eval()
    val_ids = torch.randint(1, 3000, (96, 12))
    return model, val_ids, lstm.predict(model, val_ids)


def _quantized(model, spec):
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), spec)


LSTM_AND_EMBEDDING = {nn.LSTM: default_dynamic_qconfig, nn.Embedding: float_qparams_weight_only_qconfig}


def test_layer_choice_candidates_are_the_paying_layers_chosen_by_the_protocol(classifier):
    model, val_ids, val_logits = classifier
    chosen, scored = notebook02._layer_choice(model, val_ids, val_logits, min_agreement=0.0)
    # fc (128 x 2) does not shrink, so it is in no candidate; every candidate is scored on validation
    assert set(scored) == {frozenset({"lstm"}), frozenset({"embedding"}), frozenset({"lstm", "embedding"})}
    assert all(c.split == "validation" and c.n == len(val_ids) for c, _ in scored.values())
    assert chosen == frozenset({"lstm", "embedding"})  # every candidate is eligible: the smallest file wins
    chosen, scored = notebook02._layer_choice(model, val_ids, val_logits, min_agreement=1.01)  # none eligible
    assert chosen == max(scored, key=lambda names: scored[names][0].agreement)


def test_layer_choice_passes_the_validation_choice(capsys, classifier):
    model, val_ids, val_logits = classifier
    checks.check_layer_choice(_quantized(model, LSTM_AND_EMBEDDING), fp32_model=model, val_ids=val_ids,
                              fp32_val_logits=val_logits, min_agreement=0.0)
    ok, out = _verdict(capsys, "exercise 2")
    assert ok, out
    assert "agreement on validation" in out


@pytest.mark.parametrize("spec, min_agreement, hint", [
    ({**LSTM_AND_EMBEDDING, nn.Linear: default_dynamic_qconfig}, 0.0, "`fc` is quantized, but its file is"),
    ({nn.LSTM: default_dynamic_qconfig}, 0.0, "with a smaller file"),  # a smaller eligible candidate exists
    (LSTM_AND_EMBEDDING, 1.01, "agrees with fp32 on"),  # below the bar
])
def test_layer_choice_hints(capsys, classifier, spec, min_agreement, hint):
    model, val_ids, val_logits = classifier
    checks.check_layer_choice(_quantized(model, spec), fp32_model=model, val_ids=val_ids, fp32_val_logits=val_logits,
                              min_agreement=min_agreement)
    ok, out = _verdict(capsys, "exercise 2")
    assert not ok and hint in out


def test_layer_choice_unanswered_and_wrong_model(capsys, classifier):
    model, val_ids, val_logits = classifier
    checks.check_layer_choice(..., fp32_model=model, val_ids=val_ids, fp32_val_logits=val_logits)
    assert "no answer yet" in _verdict(capsys, "exercise 2")[1]
    checks.check_layer_choice(nn.Sequential(nn.Linear(2, 2)), fp32_model=model, val_ids=val_ids,
                              fp32_val_logits=val_logits)
    assert "does not have fp32_model's layers" in _verdict(capsys, "exercise 2")[1]


# --- exercise 3: predicting the int8 file -------------------------------------------------------------------------

def _counts(module):
    weights = sum(p.numel() for n, p in module.named_parameters() if n.startswith("weight"))
    biases = sum(p.numel() for n, p in module.named_parameters() if n.startswith("bias"))
    return weights, biases


def _overhead():
    toy = nn.LSTM(8, 8, 1)
    quantized = torch.ao.quantization.quantize_dynamic(nn.Sequential(toy), {nn.LSTM}, dtype=torch.qint8)[0]
    weights, biases = _counts(toy)
    return measure.state_dict_bytes(quantized) - weights - 4 * biases


def test_size_prediction_passes_with_weights_biases_and_overhead(capsys):
    overhead = _overhead()
    checks.check_int8_size_prediction(lambda m: _counts(m)[0] + 4 * _counts(m)[1] + overhead,
                                      extra_lstms=[nn.LSTM(64, 128, 2, batch_first=True)])
    ok, out = _verdict(capsys, "exercise 3")
    assert ok, out


@pytest.mark.parametrize("predict, hint", [
    # no overhead: 9% short on a small LSTM
    (lambda m: _counts(m)[0] + 4 * _counts(m)[1], "too small: biases stay fp32"),
    (lambda m: sum(p.numel() for p in m.parameters()) + 2600, "too small"),  # biases at 1 byte
    (lambda m: 4 * sum(p.numel() for p in m.parameters()) // 4 * 4, "too large: an int8 weight takes 1 byte"),
    (lambda m: measure.state_dict_bytes(m) // 4, "too small"),  # "4x smaller than fp32"
])
def test_size_prediction_hints(capsys, predict, hint):
    checks.check_int8_size_prediction(predict)
    ok, out = _verdict(capsys, "exercise 3")
    assert not ok and hint in out and "you predicted" in out


def test_size_prediction_unanswered(capsys):
    checks.check_int8_size_prediction(...)
    assert "no answer yet" in _verdict(capsys, "exercise 3")[1]
    checks.check_int8_size_prediction(lambda m: ...)
    assert "no answer yet" in _verdict(capsys, "exercise 3")[1]
