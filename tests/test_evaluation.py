import math

import pytest
import torch

from helpers import data
from helpers import evaluation as ev

# --- statistics against known values ------------------------------------------------------------------------------

@pytest.mark.parametrize("k, n, low, high", [
    (8, 10, 0.4902, 0.9433),     # the textbook example (Wilson 1927; Newcombe 1998, table I)
    (0, 10, 0.0, 0.2775),        # stays inside [0, 1] where the normal approximation gives [0, 0]
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),   # Newcombe 1998, example (81/263)
])
def test_wilson_interval_known_values(k, n, low, high):
    got = ev.wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_narrows_with_n_and_rejects_bad_input():
    assert ev.wilson_interval(90, 100)[1] - ev.wilson_interval(90, 100)[0] > \
        ev.wilson_interval(900, 1000)[1] - ev.wilson_interval(900, 1000)[0]
    with pytest.raises(ValueError, match="at least one trial"):
        ev.wilson_interval(0, 0)
    with pytest.raises(ValueError, match="between 0 and n"):
        ev.wilson_interval(11, 10)


def test_mcnemar_exact_on_constructed_tables():
    # 1 vs 9 discordant pairs: p = 2 * (C(10,0) + C(10,1)) / 2^10
    assert ev.mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert ev.mcnemar_exact(9, 1) == ev.mcnemar_exact(1, 9)          # symmetric
    assert ev.mcnemar_exact(5, 5) == 1.0                             # balanced: no evidence
    assert ev.mcnemar_exact(0, 0) == 1.0                             # no discordant pair
    assert ev.mcnemar_exact(0, 6) == pytest.approx(2 / 64)           # 0 of 6: 2 * 0.5^6
    with pytest.raises(ValueError):
        ev.mcnemar_exact(-1, 3)


def test_mcnemar_matches_scipy_binomtest():
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(3, 12), (20, 31), (7, 7), (0, 4)]:
        assert ev.mcnemar_exact(b, c) == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue)


def test_agreement_bounds_accuracy_change_both_ways():
    assert ev.max_accuracy_change(0.99) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        ev.max_accuracy_change(1.5)


# --- compare --------------------------------------------------------------------------------------------------------

def _logits(preds, margin=2.0):
    out = torch.zeros(len(preds), 2)
    out[torch.arange(len(preds)), torch.tensor(preds)] = margin
    return out


def test_compare_counts_flips_and_discordant_pairs():
    labels = [1, 1, 0, 0, 1, 0, 1, 0, 1, 1]
    fp32 = [1, 1, 0, 0, 1, 0, 1, 1, 0, 1]   # 8 right
    int8 = [1, 0, 0, 0, 1, 0, 1, 0, 0, 0]   # flips at 1, 7, 9
    c = ev.compare(_logits(fp32), _logits(int8), labels, split="test")
    assert (c.n, c.flips, c.agreement) == (10, 3, 0.7)
    assert (c.fp32_only_right, c.candidate_only_right) == (2, 1)    # idx 1, 9 lost; idx 7 gained
    assert c.accuracy == pytest.approx(0.7) and c.reference_accuracy == pytest.approx(0.8)
    assert c.accuracy_change == pytest.approx(-0.1)
    assert c.mcnemar_p == pytest.approx(ev.mcnemar_exact(2, 1)) and c.within_noise
    # every accuracy change is bounded by the disagreement, whatever the labels
    assert abs(c.accuracy_change) <= ev.max_accuracy_change(c.agreement) + 1e-12
    assert (c.agreement_low, c.agreement_high) == pytest.approx(ev.wilson_interval(7, 10))
    assert "3 flipped" in c.describe("int8") and "within noise" in c.describe("int8")
    assert "agrees with fp32 on 7 of 10 test sentences (70.00%, 3 flipped" in c.describe("int8")
    # two decimals: 5 flips of 487 is 98.97%, below a 0.99 bar, not a rounded-up "99.0%"
    five = ev.compare(_logits([1] * 487), _logits([0] * 5 + [1] * 482), split="validation")
    assert "482 of 487 validation sentences (98.97%, 5 flipped" in five.describe()


def test_compare_soft_measures():
    ref = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    same = ev.compare(ref, ref.clone())
    assert same.kl == pytest.approx(0.0, abs=1e-12) and same.mean_abs_logit_diff == 0.0 and same.agreement == 1.0
    moved = ev.compare(ref, ref + torch.tensor([[0.0, 0.5], [0.0, 0.0]]))
    p = torch.softmax(ref[0].double(), 0)
    q = torch.softmax(torch.tensor([2.0, 0.5]).double(), 0)
    assert moved.kl == pytest.approx(float((p * (p / q).log()).sum()) / 2)
    assert moved.mean_abs_logit_diff == pytest.approx(0.125)


def test_compare_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="number of sentences.*same sentences, in the same order"):
        ev.compare(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="labels"):
        ev.compare(torch.zeros(3, 2), torch.zeros(3, 2), [0, 1])


def test_a_significant_difference_is_called_real():
    labels = [1] * 40
    c = ev.compare(_logits([1] * 40), _logits([0] * 12 + [1] * 28), labels, split="test")
    assert c.mcnemar_p < 0.05 and c.within_noise is False and "a real difference" in c.describe()


# --- two variants against the same reference: paired data ----------------------------------------------------------

def test_paired_interval_matches_a_published_example():
    # Fagerland, Lydersen & Laake (2017), Statistical Analysis of Contingency Tables, ch. 8: Cavo et al. (2012),
    # table [[59, 6], [16, 80]]; Newcombe square-and-add: -0.0621 (95% CI -0.1186 to -0.0046)
    assert ev.paired_difference_interval(59, 6, 16, 80) == pytest.approx((-0.1186, -0.0046), abs=1e-4)


def test_paired_interval_without_correlation_is_the_two_wilson_intervals_squared_and_added():
    # Bentur et al. (2009), [[1, 1], [7, 12]]: ad - bc = 5 <= n/2, so the corrected phi is 0 and the limits are
    # p1 - p2 -/+ the root of the summed squared Wilson half-widths on the facing sides
    (l1, u1), (l2, u2) = ev.wilson_interval(2, 21), ev.wilson_interval(8, 21)
    p1, p2 = 2 / 21, 8 / 21
    want = (p1 - p2 - math.hypot(p1 - l1, u2 - p2), p1 - p2 + math.hypot(u1 - p1, p2 - l2))
    assert ev.paired_difference_interval(1, 1, 7, 12) == pytest.approx(want)
    with pytest.raises(ValueError, match="counts >= 0"):
        ev.paired_difference_interval(0, 0, 0, 0)


def _variants(n, both_flip, only_a_flips, only_b_flips):
    """fp32 and two variants' logits on n sentences: both flip the first ``both_flip``, then A alone, then B alone."""
    ref = [1] * n
    a = [0] * (both_flip + only_a_flips) + [1] * (n - both_flip - only_a_flips)
    b = [0] * both_flip + [1] * only_a_flips + [0] * only_b_flips + [1] * (n - both_flip - only_a_flips - only_b_flips)
    return _logits(a), _logits(b), _logits(ref)


def test_paired_comparison_finds_a_real_difference_the_wilson_intervals_hide():
    a, b, ref = _variants(487, both_flip=10, only_a_flips=3, only_b_flips=20)   # 13 vs 30 flips
    pc = ev.paired_comparison(a, b, ref.numpy(), names=("keep-ffn-fp32", "every-linear"))   # numpy works too
    a_low, b_high = ev.wilson_interval(487 - 13, 487)[0], ev.wilson_interval(487 - 30, 487)[1]
    assert a_low < b_high                                   # the two Wilson intervals overlap ...
    assert (pc.n, pc.a_flips, pc.b_flips, pc.only_a_agrees, pc.only_b_agrees) == (487, 13, 30, 20, 3)
    assert pc.mcnemar_p == pytest.approx(ev.mcnemar_exact(20, 3)) and pc.mcnemar_p < 0.05   # ... yet it is real
    assert pc.within_noise is False and pc.agreement_difference == pytest.approx(17 / 487)
    # both agree on 454, only A on 20, only B on 3, neither on the 10 both flip
    assert (pc.difference_low, pc.difference_high) == pytest.approx(ev.paired_difference_interval(454, 20, 3, 10))
    assert 0 < pc.difference_low < pc.agreement_difference < pc.difference_high
    assert pc.describe().startswith("keep-ffn-fp32 vs every-linear: 13 vs 30 flips on 487 sentences; 20 agree with "
                                    "fp32 only under keep-ffn-fp32, 3 only under every-linear; agreement difference "
                                    "+3.5 points (95% CI +")
    assert pc.describe().endswith(f"exact McNemar p = {pc.mcnemar_p:.2g}: a real difference")
    assert pc.as_dict()["within_noise"] is False and pc.as_dict()["correctness_mcnemar_p"] is None
    assert "accuracy" not in pc.describe() and pc.borderline is False


def test_a_borderline_case_says_the_exact_test_and_the_interval_disagree():
    # 9 vs 2 discordant sentences of 160: exact McNemar p = 0.065, while Newcombe's paired interval excludes 0
    a, b, ref = _variants(160, both_flip=2, only_a_flips=2, only_b_flips=9)
    pc = ev.paired_comparison(a, b, ref, names=("static", "dynamic"))
    assert pc.mcnemar_p == pytest.approx(0.0654, abs=1e-4) and pc.within_noise
    assert pc.difference_low > 0 and pc.borderline and pc.as_dict()["borderline"] is True
    assert pc.describe().endswith("exact McNemar p = 0.065: borderline: the exact test says within noise but the "
                                  "paired interval excludes 0")
    clear = ev.paired_comparison(*_variants(160, both_flip=2, only_a_flips=2, only_b_flips=3), names=("x", "y"))
    assert clear.within_noise and not clear.borderline and clear.describe().endswith(": within noise")


def test_paired_comparison_within_noise_and_on_correctness():
    # A predicts 0 on sentences 0-3, B on 0-1 and 4-7, fp32 never: A agrees with fp32 more often ...
    a, b, ref = _variants(40, both_flip=2, only_a_flips=2, only_b_flips=4)
    pc = ev.paired_comparison(a, b, ref, labels=[0] * 8 + [1] * 32, names=("x86", "qnnpack"))
    assert (pc.a_flips, pc.b_flips, pc.only_a_agrees, pc.only_b_agrees) == (4, 6, 4, 2)
    assert pc.within_noise and pc.mcnemar_p == ev.mcnemar_exact(4, 2) and pc.difference_low < 0 < pc.difference_high
    # ... but the first 8 sentences are labelled 0, so B is right more often: correctness is a separate test
    assert (pc.a_accuracy, pc.b_accuracy) == pytest.approx((36 / 40, 38 / 40))
    assert (pc.only_a_right, pc.only_b_right) == (2, 4) and pc.correctness_mcnemar_p == ev.mcnemar_exact(2, 4)
    assert pc.describe().endswith("within noise (accuracy 0.900 vs 0.950, McNemar p on correctness = 0.69)")


def test_paired_comparison_rejects_inputs_that_are_not_paired():
    ok = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="number of sentences.*same sentences"):
        ev.paired_comparison(ok, torch.zeros(4, 2), ok)
    with pytest.raises(ValueError, match="number of classes.*same task"):
        ev.paired_comparison(ok, ok, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="n > 0.*not argmax predictions"):
        ev.paired_comparison(torch.zeros(0, 2), torch.zeros(0, 2), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="n > 0"):
        ev.paired_comparison(torch.zeros(5), ok, ok)
    with pytest.raises(ValueError, match="4 labels for 5 predictions"):
        ev.paired_comparison(ok, ok, ok, labels=[0, 1, 0, 1])


# --- the same scores at a fixed batch size; the batch dependence of per-batch dynamic int8 ---------------------

TEXTS = ["a fine, warm film", "dull and long", "I loved every minute of it", "a waste of time", "not bad at all",
         "great cast, weak script", "the best thing this year", "flat"] * 3


def test_fixed_batch_size_gives_the_same_scores_twice(tiny_bert, course_tokenizer):
    first = ev.predict_logits(tiny_bert, course_tokenizer, TEXTS, max_len=16)
    second = ev.predict_logits(tiny_bert, course_tokenizer, TEXTS, max_len=16)
    assert first.shape == (len(TEXTS), 2) and torch.equal(first, second)


def test_per_batch_dynamic_int8_depends_on_the_batch_but_not_twice(tiny_bert, course_tokenizer):
    from helpers import deprecations

    deprecations.silence_known()
    int8 = torch.ao.quantization.quantize_dynamic(tiny_bert, {torch.nn.Linear}, dtype=torch.qint8)
    at = {b: ev.predict_logits(int8, course_tokenizer, TEXTS, max_len=16, batch_size=b) for b in (1, 8)}
    assert torch.equal(at[8], ev.predict_logits(int8, course_tokenizer, TEXTS, max_len=16, batch_size=8))
    assert not torch.equal(at[1], at[8])   # one activation scale per batch: other neighbours, other scale


def test_predict_accepts_a_forward_callable(tiny_bert, course_tokenizer):
    seen = []

    def forward(batch):
        seen.append(tuple(batch["input_ids"].shape))
        return tiny_bert(**batch).logits

    logits = ev.predict_logits(forward, course_tokenizer, TEXTS[:5], max_len=12, batch_size=2)
    assert seen == [(2, 12), (2, 12), (1, 12)]   # padded to max_len, in order
    assert torch.allclose(logits, ev.predict_logits(tiny_bert, course_tokenizer, TEXTS[:5], max_len=12))


def test_evaluate_records_split_and_batch(tiny_bert, course_tokenizer):
    split = data.Split(TEXTS[:6], [1, 0, 1, 0, 1, 0], "validation")
    ref = ev.predict_logits(tiny_bert, course_tokenizer, split.texts, 16)
    c = ev.evaluate(tiny_bert, ref, course_tokenizer, split, 16)
    assert (c.split, c.batch_size, c.agreement, c.flips) == ("validation", ev.EVAL_BATCH_SIZE, 1.0, 0)
    assert c.as_dict()["within_noise"] is True


def test_fp32_reference_scores_both_splits_once_and_describes_them(tiny_bert, course_tokenizer):
    validation = data.Split(TEXTS[:6], [1, 0, 1, 0, 1, 1], "validation")
    test = data.Split(TEXTS[:4], [0, 0, 1, 1], "test")
    ref = ev.fp32_reference(tiny_bert, course_tokenizer, validation, test, 16, batch_size=4)
    assert torch.equal(ref.validation_logits, ev.predict_logits(tiny_bert, course_tokenizer, validation.texts, 16, 4))
    assert torch.equal(ref.test_logits, ev.predict_logits(tiny_bert, course_tokenizer, test.texts, 16, 4))
    assert ref.validation_row == ev.accuracy_row(ref.validation_logits, validation.labels, "fp32, validation")
    assert (ref.n_validation, ref.n_test) == (6, 4)
    assert ref.describe().startswith("fp32 reference: 6 validation and 4 test sentences, batches of 4 padded to 16 "
                                     f"tokens; validation accuracy {ref.validation_row['accuracy']:.3f} (95% CI ")
    assert ref.protocol() == {"n_validation": 6, "n_test": 4, "batch_size": 4, "max_len": 16,
                              "fp32_validation": ref.validation_row}


# --- choosing on validation, judging on test ------------------------------------------------------------------

def _comparison(agreement, split="validation", n=100):
    same = round(agreement * n)
    low, high = ev.wilson_interval(same, n)
    return ev.Comparison(split=split, n=n, batch_size=32, agreement=same / n, agreement_low=low,
                         agreement_high=high, flips=n - same, kl=0.0, mean_abs_logit_diff=0.0)


def test_select_on_validation_prefers_within_the_eligible():
    options = {"slow-exact": _comparison(1.0), "fast-good": _comparison(0.99), "fastest-bad": _comparison(0.9)}
    speed = {"slow-exact": 1.0, "fast-good": 2.0, "fastest-bad": 3.0}
    assert ev.select_on_validation(options, prefer=speed.get) == "fast-good"
    assert ev.select_on_validation(options) == "slow-exact"
    assert ev.select_on_validation({"a": _comparison(0.9), "b": _comparison(0.95)}) == "b"   # none eligible


def test_select_refuses_the_test_split():
    with pytest.raises(ValueError, match="validation split only"):
        ev.select_on_validation({"a": _comparison(0.99), "b": _comparison(0.995, split="test")})


def test_real_splits_carry_their_names():
    splits = data.load_rotten_tomatoes()
    assert {name: s.name for name, s in splits.items()} == {n: n for n in ("train", "validation", "test")}
    assert splits["validation"].head(5).name == "validation"


def test_target_rule_needs_both_agreement_and_size():
    ok, why = ev.meets_target(_comparison(0.99, "test"), 0.25)
    assert ok and "0.25x" in why
    assert not ev.meets_target(_comparison(0.98, "test"), 0.25)[0]
    assert not ev.meets_target(_comparison(1.0, "test"), 0.31)[0]
    assert not ev.meets_target(_comparison(1.0, "test"), None)[0]
    with pytest.raises(ValueError, match="test split"):
        ev.meets_target(_comparison(1.0, "validation"), 0.2)
    text = ev.target_rule_text()
    assert f"{ev.TARGET_AGREEMENT:.2f}" in text and f"{ev.TARGET_SIZE_RATIO:.2f}" in text
    assert math.isclose(ev.TARGET_AGREEMENT, 0.99) and math.isclose(ev.TARGET_SIZE_RATIO, 0.30)
