"""The checkers of notebook 01's exercises: a right answer passes, each usual slip gets its specific hint, an
unanswered stub gets "no answer yet", and strict mode raises."""

import pytest
import torch

from helpers import checks, int8
from helpers.checks import notebook01


@pytest.fixture(autouse=True)
def lenient(monkeypatch):
    monkeypatch.delenv(checks.STRICT_ENV_VAR, raising=False)


def verdict(capsys) -> str:
    return capsys.readouterr().out.strip()


# --- exercise 2: per-channel scales ------------------------------------------------------------------------------

@pytest.fixture
def weights():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(32, 48, generator=gen) * 0.05
    w[5, 7] = 2.0  # an outlier in one row only
    return [w, torch.randn(8, 8, generator=gen)]


def right_scales(w):
    return torch.clamp(w.abs().amax(dim=1) / 127.5, min=torch.finfo(torch.float32).eps)


def test_right_scales_pass_bit_exactly(weights, capsys, monkeypatch):
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "1")  # would raise if it failed
    checks.check_per_channel_scales(right_scales, name="ex2", weights=weights)
    out = verdict(capsys)
    assert out.startswith("✅ ex2: correct.") and "3 tensors (46 rows)" in out
    assert checks.outcomes["ex2"] is True


@pytest.mark.parametrize("answer, fragment", [
    (lambda w: torch.clamp(w.abs().amax(dim=1) / 127, min=torch.finfo(torch.float32).eps), "you divided by 127;"),
    (lambda w: torch.clamp(w.abs().amax(dim=1) / 255, min=torch.finfo(torch.float32).eps), "you divided by 255;"),
    (lambda w: w.abs().amax(dim=1) / 127.5, "clamp the scales to at least torch.finfo(torch.float32).eps"),
    (lambda w: torch.clamp(w.amax(dim=1) / 127.5, min=torch.finfo(torch.float32).eps), "max(|min|, |max|)"),
    (lambda w: torch.clamp(w.abs().amax(dim=0) / 127.5, min=1e-7), "one scale per output row"),
    (lambda w: w.abs().max() / 127.5, "has shape ()"),
    (lambda w: right_scales(w).double(), "the observer works in float32"),
    (lambda w: right_scales(w) * (1 + 1e-7), "close but not bit-exact"),
    (lambda w: right_scales(w).tolist(), "returned a list"),
    (lambda w: 1 / 0, "raised ZeroDivisionError: division by zero"),
])
def test_wrong_scales_get_a_specific_hint(weights, capsys, answer, fragment):
    checks.check_per_channel_scales(answer, name="ex2", weights=weights)
    out = verdict(capsys)
    assert out.startswith("❌ ex2: not yet. Hint:") and fragment in out, out
    assert checks.outcomes["ex2"] is False


@pytest.mark.parametrize("stub", [..., lambda w: ...])
def test_unanswered_scales(weights, capsys, stub):
    checks.check_per_channel_scales(stub, name="ex2", weights=weights)
    assert "not yet. Hint: no answer yet" in verdict(capsys)


def test_strict_mode_raises_on_wrong_scales(weights, monkeypatch):
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "1")
    with pytest.raises(checks.ExerciseNotSolved, match="2 times the observer"):
        checks.check_per_channel_scales(lambda w: right_scales(w) * 2, name="ex2", weights=weights)


# --- exercise 3: a clipping ratio chosen on validation -----------------------------------------------------------

RATIOS = [1.0, 0.8, 0.6, 0.4, 0.2, 0.1]


def right_choice(batches, lo, hi, ratios, bits):
    mean_sqnr = {r: sum(int8.sqnr_db(b, int8.fake_quantize(b, bits, "affine", clip=(r * lo, r * hi)))
                        for b in batches) / len(batches) for r in ratios}
    return max(mean_sqnr, key=mean_sqnr.get)


@pytest.fixture
def activation_sets():
    """Validation batches where moderate clipping wins, test batches where a hard clip wins (so the two argmaxes
    differ), and the range a calibration set gave."""
    gen = torch.Generator().manual_seed(3)
    val = [torch.randn(400, generator=gen) for _ in range(3)]
    test = [torch.randn(400, generator=gen) for _ in range(3)]
    for b in val:
        b[0] = 8.0
    for b in test:
        b[0] = 30.0
    return val, test, -30.0, 30.0


def test_sqnr_by_ratio_finds_an_interior_optimum(activation_sets):
    val, test, lo, hi = activation_sets
    on_val = notebook01._sqnr_by_ratio(val, lo, hi, RATIOS, 4)
    on_test = notebook01._sqnr_by_ratio(test, lo, hi, RATIOS, 4)
    assert set(on_val) == set(RATIOS)
    best_val, best_test = max(on_val, key=on_val.get), max(on_test, key=on_test.get)
    assert best_val not in (1.0, 0.1) and best_val != best_test  # the fixture's premise
    assert on_val[best_val] > on_val[1.0] + 3  # clipping pays at 4 bits on these batches


def test_right_choice_passes(activation_sets, capsys, monkeypatch):
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "1")
    val, test, lo, hi = activation_sets
    checks.check_clip_ratio_choice(right_choice, name="ex3", val_batches=val, test_batches=test, lo=lo, hi=hi,
                                   ratios=RATIOS, bits=4)
    out = verdict(capsys)
    assert out.startswith("✅ ex3: correct.") and "on the test batches" in out


def test_choice_made_on_test_is_refused(activation_sets, capsys):
    val, test, lo, hi = activation_sets
    checks.check_clip_ratio_choice(lambda b, low, high, r, bits: right_choice(test, low, high, r, bits), name="ex3",
                                   val_batches=val, test_batches=test, lo=lo, hi=hi, ratios=RATIOS, bits=4)
    assert "best on the test batches, not on validation" in verdict(capsys)


def test_lowest_sqnr_is_refused(activation_sets, capsys):
    val, test, lo, hi = activation_sets

    def worst(batches, lo, hi, ratios, bits):
        on = notebook01._sqnr_by_ratio(batches, lo, hi, ratios, bits)
        return min(on, key=on.get)

    checks.check_clip_ratio_choice(worst, name="ex3", val_batches=val, test_batches=test, lo=lo, hi=hi, ratios=RATIOS,
                                   bits=4)
    assert "lowest SQNR on validation" in verdict(capsys)


def test_a_hard_coded_choice_fails_on_the_probes(activation_sets, capsys):
    val, test, lo, hi = activation_sets
    best_val = right_choice(val, lo, hi, RATIOS, 4)
    checks.check_clip_ratio_choice(lambda *args: best_val, name="ex3", val_batches=val, test_batches=test, lo=lo,
                                   hi=hi, ratios=RATIOS, bits=4)
    out = verdict(capsys)
    assert "synthetic data it returned" in out and checks.outcomes["ex3"] is False


@pytest.mark.parametrize("answer, fragment", [
    (lambda *args: 0.5, "not one of the candidate ratios"),
    (lambda *args: [][0], "raised IndexError"),
])
def test_other_wrong_choices(activation_sets, capsys, answer, fragment):
    val, test, lo, hi = activation_sets
    checks.check_clip_ratio_choice(answer, name="ex3", val_batches=val, test_batches=test, lo=lo, hi=hi, ratios=RATIOS,
                                   bits=4)
    assert fragment in verdict(capsys)


@pytest.mark.parametrize("stub", [..., lambda *args: ...])
def test_unanswered_choice(activation_sets, capsys, stub):
    val, test, lo, hi = activation_sets
    checks.check_clip_ratio_choice(stub, name="ex3", val_batches=val, test_batches=test, lo=lo, hi=hi, ratios=RATIOS,
                                   bits=4)
    assert "not yet. Hint: no answer yet" in verdict(capsys)


def test_call_learner_turns_an_exception_into_a_hint():
    from helpers.checks._core import call_learner

    assert call_learner(lambda a, b: a + b, 2, 3) == (5, None)
    got, error = call_learner(lambda w: w / 0, 1.0)
    assert got is None and error == "ZeroDivisionError: float division by zero"
