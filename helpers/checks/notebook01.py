"""The checkers of notebook 01's exercises."""

from __future__ import annotations

from ._core import _unanswered, call_learner, report

__all__ = ["check_per_channel_scales", "check_clip_ratio_choice"]


def _probe_weights():
    """Rows that catch the usual slips: one-sided rows (max|w| is -min, not max), an all-zero row (scale 0)."""
    import torch

    w = torch.randn(6, 16, generator=torch.Generator().manual_seed(1))
    w[1] = -w[1].abs()  # all negative: max(w) is below 0, max|w| comes from the minimum
    w[2] = w[2].abs() * 3  # all positive
    w[3] = 0.0  # all zero: the observer clamps the scale to float32 eps
    return w


def check_per_channel_scales(per_channel_scales, *, name: str, weights) -> None:
    """Notebook 01: ``per_channel_scales(w)`` returns one float32 scale per output row of ``w``, bit-exactly those
    of ``torch.ao.quantization.observer.PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8,
    qscheme=torch.per_channel_symmetric)``. Checked on each tensor of ``weights`` and on probe rows (one-sided and
    all-zero rows)."""
    import torch
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    start = "no answer yet: replace the `...` with your code. "
    base = "Return a float32 tensor with one scale per output row: max|w| of the row divided by 127.5."
    if _unanswered(per_channel_scales):
        return report(name, False, start + base)
    cases = [("the probe rows", _probe_weights())] + [(f"weights[{i}]", w.detach()) for i, w in enumerate(weights)]
    for label, w in cases:
        got, error = call_learner(per_channel_scales, w)
        if error:
            return report(name, False, f"per_channel_scales({label}) raised {error}. " + base)
        if _unanswered(got):
            return report(name, False, start + base)
        observer = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        observer(w)
        expected = observer.calculate_qparams()[0].to(torch.float32)
        hint = _scales_hint(got, expected, w, label)
        if hint:
            return report(name, False, hint)
    rows = sum(len(w) for _, w in cases)
    return report(name, True, "", f"bit-exact with PerChannelMinMaxObserver on {len(cases)} tensors ({rows} rows).")


def _scales_hint(got, expected, w, label: str) -> str | None:
    """None when ``got`` equals the observer's scales bit for bit, else the most specific hint."""
    import torch

    if not isinstance(got, torch.Tensor):
        return f"per_channel_scales({label}) returned a {type(got).__name__}; return a torch.Tensor."
    if got.shape != expected.shape:
        return (f"per_channel_scales({label}) has shape {tuple(got.shape)}; expected {tuple(expected.shape)}: one "
                f"scale per output row (reduce over dim=1 of the [out_features, in_features] weight).")
    if got.dtype != torch.float32:
        return f"the scales are {got.dtype}; the observer works in float32 (keep the weight's dtype)."
    if torch.equal(got, expected):
        return None
    zero_rows = w.abs().amax(dim=1) == 0
    nonzero = ~zero_rows
    if bool(zero_rows.any()) and torch.equal(got[nonzero], expected[nonzero]):
        return ("an all-zero row gives max|w| = 0 and a scale of 0 (division by zero when quantizing): clamp the "
                "scales to at least torch.finfo(torch.float32).eps, as the observer does.")
    ratio = got[nonzero] / expected[nonzero]
    k = ratio.median().item()
    if torch.allclose(ratio, torch.full_like(ratio, k), rtol=1e-5):  # the same factor off on every row
        if abs(k - 1) < 1e-5:
            return ("close but not bit-exact: compute in float32 as max|w| / 127.5 (a float32 tensor divided by "
                    "the Python float 127.5), then clamp to float32 eps.")
        for divisor in (127, 255, 128):
            if abs(k - 127.5 / divisor) < 1e-5:
                return (f"you divided by {divisor}; a symmetric qint8 range [-a, a] spans (qmax - qmin) / 2 = 127.5 "
                        f"steps on each side of 0, so scale = a / 127.5.")
        return f"your scales are {k:.4g} times the observer's: scale = max|w| / 127.5 for each row."
    return (f"per_channel_scales({label}) differs from the observer's scales. Use each row's largest magnitude, "
            f"max(|min|, |max|) (w.abs().amax(dim=1)), not its max: rows can be one-sided.")


def _mean_sqnr(batches, lo: float, hi: float, bits: int) -> float:
    from .. import int8

    return sum(int8.sqnr_db(b, int8.fake_quantize(b, bits, "affine", clip=(lo, hi))) for b in batches) / len(batches)


def _sqnr_by_ratio(batches, lo: float, hi: float, ratios, bits: int) -> dict[float, float]:
    """Mean SQNR (dB) over ``batches`` of the static affine range ``(r * lo, r * hi)`` for each ratio ``r``
    (``helpers.int8.fake_quantize`` with ``clip``): the reference for ``check_clip_ratio_choice``."""
    return {r: _mean_sqnr(batches, r * lo, r * hi, bits) for r in ratios}


def _probe_batches(kind: str):
    """Synthetic batches whose best ratio differs from real activations': uniform data (little clipping pays) or
    Gaussian data with rare huge values (clipping hard pays at 4 bits)."""
    import torch

    gen = torch.Generator().manual_seed(2)
    if kind == "uniform":
        return [torch.rand(512, generator=gen) * 2 - 1 for _ in range(4)]
    batches = [torch.randn(512, generator=gen) for _ in range(4)]
    for b in batches:
        b[:2] = torch.tensor([40.0, -40.0])
    return batches


def check_clip_ratio_choice(choose_clip_ratio, *, name: str, val_batches, test_batches, lo: float, hi: float,
                            ratios, bits: int) -> None:
    """Notebook 01: ``choose_clip_ratio(batches, lo, hi, ratios, bits)`` returns the ratio ``r`` whose static range
    ``(r * lo, r * hi)`` gives the highest mean SQNR over ``batches``. Checked on the validation batches and on two
    synthetic sets with known answers; the test batches only report how the choice fares on unseen data."""
    start = "no answer yet: replace the `...` with your code. "
    base = ("for each ratio r, quantize every batch with the range (r * lo, r * hi) at `bits` bits, average the "
            "SQNR over the batches, and return the r with the highest mean.")
    if _unanswered(choose_clip_ratio):
        return report(name, False, start + base)
    got, error = call_learner(choose_clip_ratio, val_batches, lo, hi, list(ratios), bits)
    if error:
        return report(name, False, f"choose_clip_ratio raised {error}. " + base[0].upper() + base[1:])
    if _unanswered(got):
        return report(name, False, start + base)
    if got not in ratios:
        return report(name, False, f"it returned {got!r}, which is not one of the candidate ratios {list(ratios)}.")
    on_val = _sqnr_by_ratio(val_batches, lo, hi, ratios, bits)
    best = max(on_val, key=on_val.get)
    if on_val[got] < on_val[best] - 0.01:
        on_test = _sqnr_by_ratio(test_batches, lo, hi, ratios, bits)
        if got == max(on_test, key=on_test.get):
            hint = "that ratio is the best on the test batches, not on validation: choose on validation only."
        elif got == min(on_val, key=on_val.get):
            hint = "that ratio has the lowest SQNR on validation: SQNR is higher-is-better, take the maximum."
        else:
            hint = (f"ratio {got} gives {on_val[got]:.2f} dB on validation but {best} gives {on_val[best]:.2f} dB. "
                    + base)
        return report(name, False, hint)
    for kind in ("uniform", "outliers"):
        batches = _probe_batches(kind)
        b_lo, b_hi = min(b.min().item() for b in batches), max(b.max().item() for b in batches)
        probe = _sqnr_by_ratio(batches, b_lo, b_hi, ratios, bits)
        probe_got, error = call_learner(choose_clip_ratio, batches, b_lo, b_hi, list(ratios), bits)
        if error or probe_got not in ratios or probe[probe_got] < max(probe.values()) - 0.01:
            return report(name, False, f"right on these batches, but on {kind} synthetic data it returned "
                                       f"{error or probe_got!r}; compute the choice from the batches you are given.")
    on_test = _sqnr_by_ratio(test_batches, lo, hi, [got, 1.0], bits)
    return report(name, True, "", f"ratio {got}: on the test batches {on_test[got]:.2f} dB vs {on_test[1.0]:.2f} dB "
                                  f"with the calibrated range unclipped (ratio 1.0).")
