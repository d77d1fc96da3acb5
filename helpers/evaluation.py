"""The course's evaluation protocol: one way, used everywhere, to judge a quantized model against fp32.

On a few hundred sentences one example is 0.2 accuracy points, so raw accuracy differences are mostly noise. The
protocol therefore judges *fidelity*: how often the quantized model predicts what fp32 predicts.

- **Agreement with fp32** on a whole split: the fraction of sentences with the same predicted class. It is
  two-sided: whichever way the flips go, accuracy can move by at most ``1 - agreement``.
- **Accuracy** with a 95% Wilson interval, and the fp32-vs-int8 difference tested with McNemar's exact test on the
  discordant pairs (the sentences exactly one of the two models gets right). ``p >= 0.05``: within noise.
- **Two variants against each other** (``paired_comparison``): both are scored on the same sentences, so they are
  compared as paired data (McNemar on the sentences where only one agrees with fp32, Newcombe's paired interval),
  never by whether their two Wilson intervals overlap.
- **Soft measures** beside agreement: mean KL divergence of the softmax outputs and mean |Δlogit|.
- **One evaluation batch size and one padding rule** (``EVAL_BATCH_SIZE`` sentences per batch, every batch padded
  to the model's ``max_len``). Dynamic int8 with one activation scale per batch (``quantize_dynamic``) scores
  differently at other batch sizes; fixing both makes scores comparable across notebooks.
- **Choose on validation, report on test.** ``select_on_validation`` refuses comparisons made on another split; the
  test split is scored once, for the final table.
- **One target rule:** agreement >= ``TARGET_AGREEMENT`` on test *and* a file at most ``TARGET_SIZE_RATIO`` x fp32's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import torch

from . import models

#: Sentences per evaluation batch, everywhere (notebooks and ``make bench``).
EVAL_BATCH_SIZE = 32
#: The target rule: agreement with fp32 on the test split, and file size relative to fp32.
TARGET_AGREEMENT = 0.99
TARGET_SIZE_RATIO = 0.30
#: Two-sided 95%.
Z_95 = 1.959963984540054
SIGNIFICANCE = 0.05
VALIDATION = "validation"


def target_rule_text() -> str:
    """The target rule in words, built from the constants (never typed elsewhere)."""
    return (f"agreement with fp32 >= {TARGET_AGREEMENT:.2f} on the test split and a file <= "
            f"{TARGET_SIZE_RATIO:.2f}x fp32's")


# --- statistics -------------------------------------------------------------------------------------------------

def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion ``successes / n`` (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and behaves at 0 and n successes."""
    if n <= 0:
        raise ValueError(f"need at least one trial for an interval, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs.

    ``b``: fp32 right and the candidate wrong; ``c``: the reverse. Under "no difference" each discordant pair is a
    fair coin, so the p-value is a two-sided binomial test of ``min(b, c)`` in ``b + c`` flips at 1/2."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_difference_interval(both: int, only_a: int, only_b: int, neither: int,
                               z: float = Z_95) -> tuple[float, float]:
    """95% interval for ``p_a - p_b``, two proportions measured on the *same* items (Newcombe 1998, method 10).

    The four counts are the paired 2x2 table: items where both succeed, only A, only B, neither. Newcombe's
    "square-and-add" combines the two Wilson intervals, like the unpaired method, but subtracts their covariance
    through the phi coefficient of the table (corrected towards 0 by n/2, as in the paper). Because the two
    proportions share most items, the interval is far narrower than two overlapping Wilson intervals suggest."""
    counts = (both, only_a, only_b, neither)
    if min(counts) < 0 or sum(counts) == 0:
        raise ValueError(f"need four counts >= 0 with at least one item, got {counts}")
    n = sum(counts)
    p_a, p_b = (both + only_a) / n, (both + only_b) / n
    low_a, high_a = wilson_interval(both + only_a, n, z)
    low_b, high_b = wilson_interval(both + only_b, n, z)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    corrected = cross - n / 2 if cross > n / 2 else min(cross, 0)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    down = math.sqrt((p_a - low_a) ** 2 - 2 * phi * (p_a - low_a) * (high_b - p_b) + (high_b - p_b) ** 2)
    up = math.sqrt((high_a - p_a) ** 2 - 2 * phi * (high_a - p_a) * (p_b - low_b) + (p_b - low_b) ** 2)
    return max(-1.0, p_a - p_b - down), min(1.0, p_a - p_b + up)


def max_accuracy_change(agreement: float) -> float:
    """The most accuracy can move, up or down, when predictions agree with fp32 on a fraction ``agreement``."""
    if not 0.0 <= agreement <= 1.0:
        raise ValueError(f"agreement is a fraction in [0, 1], got {agreement}")
    return 1.0 - agreement


# --- one comparison -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """A candidate scored against fp32 on one split, with the protocol's settings recorded."""
    split: str
    n: int
    batch_size: int
    agreement: float
    agreement_low: float
    agreement_high: float
    flips: int
    kl: float
    mean_abs_logit_diff: float
    accuracy: float | None = None
    accuracy_low: float | None = None
    accuracy_high: float | None = None
    reference_accuracy: float | None = None
    fp32_only_right: int | None = None   # McNemar's b
    candidate_only_right: int | None = None  # McNemar's c
    mcnemar_p: float | None = None

    @property
    def accuracy_change(self) -> float | None:
        if self.accuracy is None or self.reference_accuracy is None:
            return None
        return self.accuracy - self.reference_accuracy

    @property
    def within_noise(self) -> bool | None:
        """True when McNemar's test cannot tell the two accuracies apart at the 5% level."""
        return None if self.mcnemar_p is None else self.mcnemar_p >= SIGNIFICANCE

    def as_dict(self) -> dict:
        return {**asdict(self), "accuracy_change": self.accuracy_change, "within_noise": self.within_noise}

    def row(self, name: str | None = None) -> dict:
        """A table row: agreement with its interval and flips; accuracy with its interval; McNemar's p."""
        out = {"route": name} if name is not None else {}
        out.update({"agreement": self.agreement,
                    "agreement 95% CI": f"{self.agreement_low:.3f}–{self.agreement_high:.3f}",
                    "flips": f"{self.flips}/{self.n}", "KL": self.kl, "mean |Δlogit|": self.mean_abs_logit_diff})
        if self.accuracy is not None:
            out.update({"accuracy": self.accuracy,
                        "accuracy 95% CI": f"{self.accuracy_low:.3f}–{self.accuracy_high:.3f}",
                        "Δ accuracy (points)": 100 * self.accuracy_change, "McNemar p": self.mcnemar_p})
        return out

    def describe(self, name: str = "the candidate") -> str:
        """One sentence, computed from the numbers: agreement, the bound it puts on accuracy, and whether the
        accuracy difference is within noise."""
        text = (f"{name} agrees with fp32 on {self.n - self.flips} of {self.n} {self.split} sentences "
                f"({self.agreement:.2%}, {self.flips} flipped; 95% CI {self.agreement_low:.1%}–"
                f"{self.agreement_high:.1%}), so its "
                f"accuracy can differ from fp32's by at most {100 * max_accuracy_change(self.agreement):.1f} points")
        if self.accuracy_change is not None:
            verdict = "within noise" if self.within_noise else "a real difference"
            text += (f"; measured {100 * self.accuracy_change:+.1f} points, McNemar p = {self.mcnemar_p:.2g} "
                     f"({verdict} at the 5% level)")
        return text + "."


def _softmax_stats(reference: torch.Tensor, candidate: torch.Tensor) -> tuple[float, float]:
    log_p = torch.log_softmax(reference.double(), dim=1)
    log_q = torch.log_softmax(candidate.double(), dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1).mean().item()
    return max(0.0, kl), (reference.double() - candidate.double()).abs().mean().item()


def _checked_logits(**logits) -> list[torch.Tensor]:
    """The named logit arrays (tensors or numpy) as tensors, after checking they are [n, classes] with n > 0 and
    agree on n (the same sentences) and on the classes (the same task)."""
    tensors = {name: torch.as_tensor(x) for name, x in logits.items()}
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if any(len(shape) != 2 or shape[0] == 0 for shape in shapes.values()):
        raise ValueError(f"need [n, classes] logits with n > 0, got shapes {shapes}; pass each model's logits on the "
                         "same non-empty list of sentences (not argmax predictions)")
    for axis, what, fix in ((0, "sentences", "score every model on the same sentences, in the same order"),
                            (1, "classes", "compare classifiers of the same task")):
        if len({shape[axis] for shape in shapes.values()}) > 1:
            raise ValueError(f"the logits differ in their number of {what}: {shapes}; {fix}")
    return list(tensors.values())


def _checked_labels(labels, n: int) -> torch.Tensor:
    y = torch.as_tensor(labels)
    if len(y) != n:
        raise ValueError(f"{len(y)} labels for {n} predictions; pass the labels of the sentences that were scored")
    return y


def _discordant(first_ok: torch.Tensor, second_ok: torch.Tensor) -> tuple[int, int]:
    """McNemar's two discordant counts: items only the first gets right, and items only the second does."""
    return int((first_ok & ~second_ok).sum()), int((second_ok & ~first_ok).sum())


def compare(reference_logits: torch.Tensor, logits: torch.Tensor, labels: Sequence[int] | torch.Tensor | None = None,
            split: str = VALIDATION, batch_size: int = EVAL_BATCH_SIZE) -> Comparison:
    """Score ``logits`` (the candidate) against ``reference_logits`` (fp32) on the same sentences, in order.

    With ``labels`` it adds accuracy with Wilson intervals and McNemar's exact test."""
    reference_logits, logits = _checked_logits(reference=reference_logits, candidate=logits)
    n = len(logits)
    ref_pred, pred = reference_logits.argmax(dim=1), logits.argmax(dim=1)
    same = int((ref_pred == pred).sum())
    low, high = wilson_interval(same, n)
    kl, dlogit = _softmax_stats(reference_logits, logits)
    fields = dict(split=split, n=n, batch_size=batch_size, agreement=same / n, agreement_low=low,
                  agreement_high=high, flips=n - same, kl=kl, mean_abs_logit_diff=dlogit)
    if labels is not None:
        y = _checked_labels(labels, n)
        right, ref_right = pred == y, ref_pred == y
        b, c = _discordant(ref_right, right)
        acc_low, acc_high = wilson_interval(int(right.sum()), n)
        fields.update(accuracy=right.float().mean().item(), accuracy_low=acc_low, accuracy_high=acc_high,
                      reference_accuracy=ref_right.float().mean().item(), fp32_only_right=b,
                      candidate_only_right=c, mcnemar_p=mcnemar_exact(b, c))
    return Comparison(**fields)


# --- two variants against the same reference ----------------------------------------------------------------

@dataclass(frozen=True)
class PairedComparison:
    """Variants A and B scored on the same sentences against the same reference (fp32).

    Each sentence gives a pair (A agrees with fp32?, B agrees?), so the honest test looks only at the discordant
    sentences, where exactly one of them agrees: McNemar's exact test. Two overlapping Wilson intervals say nothing
    here: they ignore that both variants get the same easy sentences right."""
    a_name: str
    b_name: str
    n: int
    a_flips: int
    b_flips: int
    only_a_agrees: int
    only_b_agrees: int
    mcnemar_p: float   # on agreement with the reference
    agreement_difference: float   # A's agreement minus B's
    difference_low: float   # Newcombe 1998 method 10, 95%
    difference_high: float
    a_accuracy: float | None = None
    b_accuracy: float | None = None
    only_a_right: int | None = None
    only_b_right: int | None = None
    correctness_mcnemar_p: float | None = None   # on accuracy against the labels, not on agreement

    @property
    def within_noise(self) -> bool:
        """True when McNemar's test cannot tell the two agreements apart at the 5% level."""
        return self.mcnemar_p >= SIGNIFICANCE

    @property
    def borderline(self) -> bool:
        """True when the exact test and the paired interval disagree (one says "differs", the other does not): the
        exact test is conservative, so near p = 0.05 the two can fall on either side. Read such a case as "not
        settled by this split", not as a verdict."""
        interval_excludes_zero = self.difference_low > 0 or self.difference_high < 0
        return interval_excludes_zero == self.within_noise

    def as_dict(self) -> dict:
        return {**asdict(self), "within_noise": self.within_noise, "borderline": self.borderline}

    def describe(self) -> str:
        """One line, computed from the numbers: flips, discordant counts, the paired difference and the verdict."""
        verdict = "within noise" if self.within_noise else "a real difference"
        if self.borderline:
            verdict = (f"borderline: the exact test says {verdict} but the paired interval "
                       f"{'excludes' if self.within_noise else 'includes'} 0")
        text = (f"{self.a_name} vs {self.b_name}: {self.a_flips} vs {self.b_flips} flips on {self.n} sentences; "
                f"{self.only_a_agrees} agree with fp32 only under {self.a_name}, {self.only_b_agrees} only under "
                f"{self.b_name}; agreement difference "
                f"{100 * self.agreement_difference:+.1f} points (95% CI {100 * self.difference_low:+.1f} to "
                f"{100 * self.difference_high:+.1f}); exact McNemar p = {self.mcnemar_p:.2g}: {verdict}")
        if self.a_accuracy is not None:
            text += (f" (accuracy {self.a_accuracy:.3f} vs {self.b_accuracy:.3f}, McNemar p on correctness = "
                     f"{self.correctness_mcnemar_p:.2g})")
        return text


def paired_comparison(a_logits, b_logits, reference_logits, labels: Sequence[int] | torch.Tensor | None = None,
                      names: tuple[str, str] = ("A", "B")) -> PairedComparison:
    """Compare two variants' agreement with the same reference on the same sentences, as paired data.

    Use it instead of comparing two ``Comparison`` intervals by eye. With ``labels`` it also reports each variant's
    accuracy and McNemar's p on correctness (``correctness_mcnemar_p``), a different question from agreement."""
    a_logits, b_logits, reference_logits = _checked_logits(a=a_logits, b=b_logits, reference=reference_logits)
    a_pred, b_pred, ref_pred = (x.argmax(dim=1) for x in (a_logits, b_logits, reference_logits))
    a_ok, b_ok = a_pred == ref_pred, b_pred == ref_pred
    n, only_a, only_b = len(ref_pred), *_discordant(a_ok, b_ok)
    both = int((a_ok & b_ok).sum())
    low, high = paired_difference_interval(both, only_a, only_b, n - both - only_a - only_b)
    fields = dict(a_name=names[0], b_name=names[1], n=n, a_flips=n - int(a_ok.sum()), b_flips=n - int(b_ok.sum()),
                  only_a_agrees=only_a, only_b_agrees=only_b, mcnemar_p=mcnemar_exact(only_a, only_b),
                  agreement_difference=(only_a - only_b) / n, difference_low=low, difference_high=high)
    if labels is not None:
        y = _checked_labels(labels, n)
        a_right, b_right = a_pred == y, b_pred == y
        right_a, right_b = _discordant(a_right, b_right)
        fields.update(a_accuracy=a_right.float().mean().item(), b_accuracy=b_right.float().mean().item(),
                      only_a_right=right_a, only_b_right=right_b, correctness_mcnemar_p=mcnemar_exact(right_a, right_b))
    return PairedComparison(**fields)


def accuracy_row(logits: torch.Tensor, labels, name: str = "fp32") -> dict:
    """The reference's own row: accuracy with its Wilson interval (fp32 agrees with itself)."""
    right = int((torch.as_tensor(logits).argmax(dim=1) == torch.as_tensor(labels)).sum())
    low, high = wilson_interval(right, len(labels))
    return {"route": name, "accuracy": right / len(labels), "accuracy 95% CI": f"{low:.3f}–{high:.3f}"}


# --- scoring a model the same way everywhere ------------------------------------------------------------------

def predict_logits(model_or_forward, tokenizer, texts: Sequence[str], max_len: int,
                   batch_size: int = EVAL_BATCH_SIZE, progress: bool = False) -> torch.Tensor:
    """Logits for ``texts`` under the protocol: batches of ``batch_size`` in the given order, each padded to
    ``max_len``. ``model_or_forward`` is a Hugging Face model (called with the tokenizer's tensors) or any
    callable taking that dict of tensors and returning logits (an ONNX Runtime or OpenVINO wrapper, say)."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to score")
    if isinstance(model_or_forward, torch.nn.Module):
        model_or_forward.eval()
    out = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(texts), batch_size), desc="score", disable=not progress, leave=False):
            batch = models.encode(tokenizer, texts[i:i + batch_size], max_len)
            result = model_or_forward(**batch) if isinstance(model_or_forward, torch.nn.Module) \
                else model_or_forward(batch)
            logits = getattr(result, "logits", result)
            out.append(torch.as_tensor(logits).float())
    return torch.cat(out)


@dataclass(frozen=True)
class Fp32Reference:
    """fp32's logits on the validation and test examples a notebook scores, computed once: every quantized variant
    is compared with them, sentence by sentence. ``validation_row`` is fp32's accuracy on validation."""

    validation_logits: torch.Tensor
    test_logits: torch.Tensor
    validation_row: dict
    max_len: int
    batch_size: int

    @property
    def n_validation(self) -> int:
        return len(self.validation_logits)

    @property
    def n_test(self) -> int:
        return len(self.test_logits)

    def describe(self) -> str:
        row = self.validation_row
        return (f"fp32 reference: {self.n_validation} validation and {self.n_test} test sentences, batches of "
                f"{self.batch_size} padded to {self.max_len} tokens; validation accuracy {row['accuracy']:.3f} "
                f"(95% CI {row['accuracy 95% CI']})")

    def protocol(self) -> dict:
        """The record a notebook's results JSON keeps under ``"protocol"``."""
        return {"n_validation": self.n_validation, "n_test": self.n_test, "batch_size": self.batch_size,
                "max_len": self.max_len, "fp32_validation": self.validation_row}


def fp32_reference(model, tokenizer, validation, test, max_len: int,
                   batch_size: int = EVAL_BATCH_SIZE) -> Fp32Reference:
    """``predict_logits`` of the fp32 ``model`` on the ``validation`` and ``test`` splits (``helpers.data.Split``),
    with fp32's validation accuracy row."""
    val_logits = predict_logits(model, tokenizer, validation.texts, max_len, batch_size)
    test_logits = predict_logits(model, tokenizer, test.texts, max_len, batch_size)
    return Fp32Reference(val_logits, test_logits, accuracy_row(val_logits, validation.labels, "fp32, validation"),
                         max_len, batch_size)


def evaluate(model_or_forward, reference_logits: torch.Tensor, tokenizer, split, max_len: int,
             batch_size: int = EVAL_BATCH_SIZE, progress: bool = False) -> Comparison:
    """Score a candidate on a whole ``helpers.data.Split`` against fp32's logits on the same split."""
    logits = predict_logits(model_or_forward, tokenizer, split.texts, max_len, batch_size, progress)
    return compare(reference_logits, logits, split.labels, split=split.name or "unnamed", batch_size=batch_size)


# --- choosing and judging -------------------------------------------------------------------------------------

def select_on_validation(comparisons: Mapping[str, Comparison], prefer: Callable[[str], float] | None = None,
                         min_agreement: float = TARGET_AGREEMENT) -> str:
    """The option to pick, from comparisons made on the validation split only.

    Among the options with agreement >= ``min_agreement``, the one ``prefer`` scores highest (speed, say; by default
    the highest agreement); if none reaches ``min_agreement``, the one with the highest agreement. Raises if any
    comparison was made on another split: choices read validation, never test."""
    if not comparisons:
        raise ValueError("nothing to choose from: pass at least one comparison")
    wrong = {name: c.split for name, c in comparisons.items() if c.split != VALIDATION}
    if wrong:
        raise ValueError(f"choices are made on the {VALIDATION} split only, but {wrong} were scored elsewhere; "
                         f"score the options on splits['{VALIDATION}'] and keep the test split for the final table")
    eligible = [name for name, c in comparisons.items() if c.agreement >= min_agreement]
    if not eligible:
        return max(comparisons, key=lambda name: comparisons[name].agreement)
    key = prefer or (lambda name: comparisons[name].agreement)
    return max(eligible, key=key)


def meets_target(comparison: Comparison, size_ratio: float | None) -> tuple[bool, str]:
    """The course's one target rule, with the reason in words (computed, never typed)."""
    if comparison.split == VALIDATION:
        raise ValueError("the target is judged on the test split; this comparison was made on validation")
    agree_ok = comparison.agreement >= TARGET_AGREEMENT
    size_ok = size_ratio is not None and size_ratio <= TARGET_SIZE_RATIO
    size_text = ("file size not measured" if size_ratio is None else
                 f"file {size_ratio:.2f}x fp32 ({'<=' if size_ok else '>'} {TARGET_SIZE_RATIO:.2f}x)")
    reason = f"agreement {comparison.agreement:.3f} ({'>=' if agree_ok else '<'} {TARGET_AGREEMENT:.2f}), {size_text}"
    return agree_ok and size_ok, reason
