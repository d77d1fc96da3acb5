"""Notebook 07's exercise checkers: they accept a right answer, and give a hint (or raise under strict checks) for a
stub, a wrong gradient, a setting over the budget and a setting that is not the best affordable one."""

import pytest
import torch

from helpers import checks, evaluation, qat


@pytest.fixture
def strict(monkeypatch):
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "1")


X = torch.linspace(-20.0, 20.0, 41) + 0.013
SETTINGS = (0.1, 0, -128, 127)
QPARAMS = dict(zip(("scale", "zero_point", "qmin", "qmax"), SETTINGS))


def test_fake_quantize_checker(strict):
    fake = qat.fake_quantize_ste(X.clone().requires_grad_(True), *SETTINGS)
    rule = qat.ste_rule(X, *SETTINGS)
    checks.check_fake_quantize((fake, rule), x=X, **QPARAMS)
    assert checks.outcomes["fake quantization and its clipped STE gradient"] is True
    with pytest.raises(checks.ExerciseNotSolved, match="gradient error 1"):  # the unclipped STE: 1 everywhere
        checks.check_fake_quantize((fake, torch.ones_like(X)), x=X, **QPARAMS)
    with pytest.raises(checks.ExerciseNotSolved, match="forward error"):  # rounding forgotten
        checks.check_fake_quantize((X.clamp(-12.8, 12.7), rule), x=X, **QPARAMS)
    with pytest.raises(checks.ExerciseNotSolved, match="no answer yet"):
        checks.check_fake_quantize((..., ...), x=X, **QPARAMS)
    with pytest.raises(checks.ExerciseNotSolved, match="answer with the pair"):
        checks.check_fake_quantize(fake, x=X, **QPARAMS)
    with pytest.raises(checks.ExerciseNotSolved, match="shaped like x"):
        checks.check_fake_quantize((fake, torch.ones(3)), x=X, **QPARAMS)


def comparison(flips, split="validation"):
    n = 100
    reference = torch.zeros(n, 2)
    reference[:, 0] = 1.0
    logits = reference.clone()
    logits[:flips] = torch.tensor([0.0, 1.0])
    return evaluation.compare(reference, logits, split=split)


def test_calibration_choice_checker(strict, monkeypatch):
    comparisons = {"a": comparison(1), "b": comparison(3), "c": comparison(5)}
    seconds = {"a": 10.0, "b": 2.0, "c": 1.0}
    checks.check_calibration_choice("b", comparisons=comparisons, seconds=seconds, budget_s=5.0)
    assert checks.outcomes["calibration under a time budget"] is True
    with pytest.raises(checks.ExerciseNotSolved, match="over the budget"):
        checks.check_calibration_choice("a", comparisons=comparisons, seconds=seconds, budget_s=5.0)
    with pytest.raises(checks.ExerciseNotSolved, match="reaches 0.970"):
        checks.check_calibration_choice("c", comparisons=comparisons, seconds=seconds, budget_s=5.0)
    with pytest.raises(checks.ExerciseNotSolved, match="not one of"):
        checks.check_calibration_choice("z", comparisons=comparisons, seconds=seconds, budget_s=5.0)
    with pytest.raises(checks.ExerciseNotSolved, match="choose on validation"):
        checks.check_calibration_choice("b", comparisons={**comparisons, "d": comparison(0, "test")},
                                        seconds={**seconds, "d": 0.0}, budget_s=5.0)
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "0")
    checks.check_calibration_choice(..., comparisons=comparisons, seconds=seconds, budget_s=5.0)
    assert checks.outcomes["calibration under a time budget"] is False
