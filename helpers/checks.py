"""Exercise checkers: they tell the learner "correct" or give a specific hint, and never crash a notebook.

Each notebook ends with exercises; a check cell calls one of these. By default a wrong answer prints a hint and
returns False, so a student copy runs top to bottom. With ``INT8_COURSE_STRICT_CHECKS=1`` (set by ``make test`` and
``make run`` for the instructor notebooks, whose solutions are filled in) a wrong answer raises
``ExerciseNotSolved`` so the suite notices a broken solution.
"""

from __future__ import annotations

import math
import os

STRICT_ENV_VAR = "INT8_COURSE_STRICT_CHECKS"

#: The latest verdict per exercise name in this kernel (True: correct), for tests and summaries.
outcomes: dict[str, bool] = {}


class ExerciseNotSolved(AssertionError):
    """A check failed while strict checking was on."""


def strict() -> bool:
    return os.environ.get(STRICT_ENV_VAR, "") not in ("", "0", "false", "no")


def _unanswered(answer) -> bool:
    return answer is None or answer is Ellipsis


def report(name: str, passed: bool, hint: str, success: str = "") -> None:
    """Print the verdict for exercise ``name`` and keep it in ``outcomes``; in strict mode a failure raises.

    Returns None so that a check at the end of a cell prints only its verdict."""
    outcomes[name] = bool(passed)
    if passed:
        print(f"✅ {name}: correct. {success}".rstrip())
        return
    message = f"❌ {name}: not yet. Hint: {hint}"
    if strict():
        raise ExerciseNotSolved(message)
    print(message)


def check_equal(name: str, answer, expected, hint: str, success: str = "") -> None:
    if _unanswered(answer):
        return report(name, False, "no answer yet: replace the `...` with your code. " + hint, success)
    return report(name, answer == expected, hint, success)


def check_close(name: str, answer, expected: float, hint: str, rel: float = 1e-3, abs_tol: float = 1e-6,
                success: str = "") -> None:
    if _unanswered(answer):
        return report(name, False, "no answer yet: replace the `...` with your code. " + hint, success)
    try:
        ok = math.isclose(float(answer), float(expected), rel_tol=rel, abs_tol=abs_tol)
    except (TypeError, ValueError):
        return report(name, False, f"expected a number, got {type(answer).__name__}. " + hint, success)
    return report(name, ok, hint, success)


def check_true(name: str, condition, hint: str, success: str = "") -> None:
    if _unanswered(condition):
        return report(name, False, "no answer yet: replace the `...` with your code. " + hint, success)
    return report(name, bool(condition), hint, success)


# --- notebook 01 ---

def _call_01(fn, *args):
    """``(fn(*args), None)``, or ``(None, "ExcType: message")`` when the learner's code raises."""
    try:
        return fn(*args), None
    except Exception as err:  # the learner's code may raise anything; the hint names it
        return None, f"{type(err).__name__}: {err}"


def _probe_weights_01():
    """Rows that catch the usual slips: one-sided rows (max|w| is -min, not max), an all-zero row (scale 0)."""
    import torch

    w = torch.randn(6, 16, generator=torch.Generator().manual_seed(1))
    w[1] = -w[1].abs()  # all negative: max(w) is below 0, max|w| comes from the minimum
    w[2] = w[2].abs() * 3  # all positive
    w[3] = 0.0  # all zero: the observer clamps the scale to float32 eps
    return w


def check_per_channel_scales(name: str, per_channel_scales, weights) -> None:
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
    cases = [("the probe rows", _probe_weights_01())] + [(f"weights[{i}]", w.detach()) for i, w in enumerate(weights)]
    for label, w in cases:
        got, error = _call_01(per_channel_scales, w)
        if error:
            return report(name, False, f"per_channel_scales({label}) raised {error}. " + base)
        if _unanswered(got):
            return report(name, False, start + base)
        observer = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        observer(w)
        expected = observer.calculate_qparams()[0].to(torch.float32)
        hint = _scales_hint_01(got, expected, w, label)
        if hint:
            return report(name, False, hint)
    rows = sum(len(w) for _, w in cases)
    return report(name, True, "", f"bit-exact with PerChannelMinMaxObserver on {len(cases)} tensors ({rows} rows).")


def _scales_hint_01(got, expected, w, label: str) -> str | None:
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


def _mean_sqnr_01(batches, lo: float, hi: float, bits: int) -> float:
    from . import int8

    return sum(int8.sqnr_db(b, int8.fake_quantize(b, bits, "affine", clip=(lo, hi))) for b in batches) / len(batches)


def sqnr_by_ratio(batches, lo: float, hi: float, ratios, bits: int) -> dict[float, float]:
    """Mean SQNR (dB) over ``batches`` of the static affine range ``(r * lo, r * hi)`` for each ratio ``r``
    (``helpers.int8.fake_quantize`` with ``clip``): the reference for ``check_clip_ratio_choice``."""
    return {r: _mean_sqnr_01(batches, r * lo, r * hi, bits) for r in ratios}


def _probe_batches_01(kind: str):
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


def check_clip_ratio_choice(name: str, choose_clip_ratio, val_batches, test_batches, lo: float, hi: float,
                            ratios, bits: int) -> None:
    """Notebook 01: ``choose_clip_ratio(batches, lo, hi, ratios, bits)`` returns the ratio ``r`` whose static range
    ``(r * lo, r * hi)`` gives the highest mean SQNR over ``batches``. Checked on the validation batches and on two
    synthetic sets with known answers; the test batches only report how the choice fares on unseen data."""
    start = "no answer yet: replace the `...` with your code. "
    base = ("for each ratio r, quantize every batch with the range (r * lo, r * hi) at `bits` bits, average the "
            "SQNR over the batches, and return the r with the highest mean.")
    if _unanswered(choose_clip_ratio):
        return report(name, False, start + base)
    got, error = _call_01(choose_clip_ratio, val_batches, lo, hi, list(ratios), bits)
    if error:
        return report(name, False, f"choose_clip_ratio raised {error}. " + base[0].upper() + base[1:])
    if _unanswered(got):
        return report(name, False, start + base)
    if got not in ratios:
        return report(name, False, f"it returned {got!r}, which is not one of the candidate ratios {list(ratios)}.")
    on_val = sqnr_by_ratio(val_batches, lo, hi, ratios, bits)
    best = max(on_val, key=on_val.get)
    if on_val[got] < on_val[best] - 0.01:
        on_test = sqnr_by_ratio(test_batches, lo, hi, ratios, bits)
        if got == max(on_test, key=on_test.get):
            hint = "that ratio is the best on the test batches, not on validation: choose on validation only."
        elif got == min(on_val, key=on_val.get):
            hint = "that ratio has the lowest SQNR on validation: SQNR is higher-is-better, take the maximum."
        else:
            hint = f"ratio {got} gives {on_val[got]:.2f} dB on validation but {best} gives {on_val[best]:.2f} dB. " + base
        return report(name, False, hint)
    for kind in ("uniform", "outliers"):
        batches = _probe_batches_01(kind)
        b_lo, b_hi = min(b.min().item() for b in batches), max(b.max().item() for b in batches)
        probe = sqnr_by_ratio(batches, b_lo, b_hi, ratios, bits)
        probe_got, error = _call_01(choose_clip_ratio, batches, b_lo, b_hi, list(ratios), bits)
        if error or probe_got not in ratios or probe[probe_got] < max(probe.values()) - 0.01:
            return report(name, False, f"right on these batches, but on {kind} synthetic data it returned "
                                       f"{error or probe_got!r}; compute the choice from the batches you are given.")
    on_test = sqnr_by_ratio(test_batches, lo, hi, [got, 1.0], bits)
    return report(name, True, "", f"ratio {got}: on the test batches {on_test[got]:.2f} dB vs {on_test[1.0]:.2f} dB "
                                  f"with the calibrated range unclipped (ratio 1.0).")


# --- notebook 02 ---
# The learner's functions are called through `_call_01` (notebook 01's section): an exception becomes a hint.

#: (supported engines, platform.machine(), the engines a correct pick may return) for ``check_engine_picker``.
ENGINE_CASES_02 = (
    (("qnnpack", "onednn", "x86", "fbgemm"), "x86_64", ("x86",)),  # torch 2.x on x86-64: qnnpack is listed first
    (("qnnpack", "fbgemm"), "x86_64", ("fbgemm",)),  # an older x86-64 build without the x86 engine
    (("qnnpack", "none"), "arm64", ("qnnpack",)),  # the source notes' machine: macOS on Apple silicon
    (("qnnpack", "onednn"), "aarch64", ("qnnpack",)),  # Linux on ARM
)
#: Builds with no usable engine: a correct pick raises instead of returning "none".
NO_ENGINE_CASES_02 = (((), "x86_64"), (("none",), "arm64"))


def _toy_lstm_02():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.LSTM(8, 8, 1))


def check_engine_picker(pick_engine, name: str = "exercise 1") -> None:
    """Notebook 02: ``pick_engine(supported, machine)`` returns the engine to assign to
    ``torch.backends.quantized.engine``. Checked on simulated builds, then used as the fix on the notes' simulated
    machine (``helpers.engine.simulate_build``), where ``quantize_dynamic`` must no longer crash."""
    import torch

    from . import engine

    if _unanswered(pick_engine) or _unanswered(pick_engine(["x86"], "x86_64")):
        return report(name, False, "no answer yet: replace the `...` with your code. Return one engine from the "
                      "list: x86 first on x86-64, qnnpack on ARM.")
    for supported, machine, good in ENGINE_CASES_02:
        got, error = _call_01(pick_engine, list(supported), machine)
        if error:
            return report(name, False, f"pick_engine({list(supported)}, {machine!r}) raised {error}")
        if got not in good:
            hint = (f"pick_engine({list(supported)}, {machine!r}) returned {got!r}; expected {good[0]!r}. ")
            hint += ("'none' is not an engine. " if got == "none" else
                     "qnnpack runs on x86-64 too but far slower than x86/fbgemm: prefer x86, then fbgemm, there. "
                     if machine == "x86_64" else "On ARM, qnnpack is the engine to use. ")
            return report(name, False, hint)
    for supported, machine in NO_ENGINE_CASES_02:
        try:
            got = pick_engine(list(supported), machine)
        except (RuntimeError, ValueError) as err:
            if not str(err).strip():
                return report(name, False, f"with supported={list(supported)} you raised {type(err).__name__} "
                              "without a message: say that no engine is available and what to install.")
            continue
        except Exception as err:  # any other exception is what the learner should replace
            return report(name, False, f"with supported={list(supported)} your function raised "
                          f"{type(err).__name__}; raise RuntimeError with a message that says no quantized engine is "
                          "available and what to install (an official PyTorch build).")
        return report(name, False, f"with supported={list(supported)} there is no engine to use, but you returned "
                      f"{got!r}; raise RuntimeError with a message that says what to install, instead of letting "
                      "quantize_dynamic fail later with NoQEngine.")
    with engine.simulate_build():  # the notes' machine: qnnpack only, no engine active
        torch.backends.quantized.engine = pick_engine(torch.backends.quantized.supported_engines, "arm64")
        try:
            torch.ao.quantization.quantize_dynamic(_toy_lstm_02(), {torch.nn.LSTM}, dtype=torch.qint8)
        except RuntimeError as err:
            return report(name, False, f"on the simulated notes' machine quantize_dynamic still fails: {err}")
    return report(name, True, "", "Your pick is the fix: on the simulated notes' machine the recipe now quantizes "
                  "instead of crashing with NoQEngine, and a build with no engine fails early with a clear message.")


def _qconfig_for_02(module):
    """The qconfig a notebook-02 layer can take: dynamic for LSTM and Linear, weight-only for an embedding."""
    import torch

    if isinstance(module, torch.nn.Embedding):
        return torch.ao.quantization.float_qparams_weight_only_qconfig
    if isinstance(module, (torch.nn.LSTM, torch.nn.Linear)):
        return torch.ao.quantization.default_dynamic_qconfig
    return None


def layer_choice_02(fp32_model, val_ids, fp32_val_logits, min_agreement: float | None = None,
                    min_layer_shrink: float = 0.5) -> tuple[frozenset, dict]:
    """The answer ``check_layer_choice`` expects: among the non-empty sets of ``fp32_model``'s children that pay off
    in size (int8 file at most ``min_layer_shrink`` x fp32's), the one ``evaluation.select_on_validation`` picks
    with the smallest file preferred. Returns (the chosen child names, {names: (validation Comparison, bytes)})."""
    import copy
    import itertools

    import torch

    from . import evaluation, lstm, measure

    paying = []
    for child_name, child in fp32_model.named_children():
        qconfig = _qconfig_for_02(child)
        if qconfig is None:
            continue
        quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(copy.deepcopy(child)),
                                                           {type(child): qconfig})[0]
        if measure.state_dict_bytes(quantized) <= min_layer_shrink * measure.state_dict_bytes(child):
            paying.append(child_name)
    scored = {}
    for k in range(1, len(paying) + 1):
        for names in itertools.combinations(paying, k):
            spec = {type(getattr(fp32_model, n)): _qconfig_for_02(getattr(fp32_model, n)) for n in names}
            candidate = torch.ao.quantization.quantize_dynamic(fp32_model, spec)
            comparison = evaluation.compare(fp32_val_logits, lstm.predict(candidate, val_ids),
                                            split=evaluation.VALIDATION)
            scored[frozenset(names)] = (comparison, measure.state_dict_bytes(candidate))
    min_agreement = evaluation.TARGET_AGREEMENT if min_agreement is None else min_agreement
    chosen = evaluation.select_on_validation({names: c for names, (c, _) in scored.items()},
                                             prefer=lambda names: -scored[names][1], min_agreement=min_agreement)
    return chosen, scored


def check_layer_choice(fp32_model, chosen_model, val_ids, fp32_val_logits, name: str = "exercise 2",
                       min_agreement: float | None = None, min_layer_shrink: float = 0.5) -> None:
    """Notebook 02: ``chosen_model`` (``quantize_dynamic`` of ``fp32_model`` with the learner's ``qconfig_spec``)
    quantizes no layer that fails to shrink, and among the layers that do, exactly the set chosen on the validation
    split: the smallest file whose agreement with fp32 reaches ``min_agreement`` (the protocol's target by default;
    ``evaluation.select_on_validation``'s rule when none does)."""
    from . import evaluation, measure

    if _unanswered(chosen_model):
        return report(name, False, "no answer yet: replace the `...` with your code. Build each candidate with "
                      "torch.ao.quantization.quantize_dynamic(fp32_model, qconfig_spec), score it on validation and "
                      "choose with evaluation.select_on_validation.")
    min_agreement = evaluation.TARGET_AGREEMENT if min_agreement is None else min_agreement
    fp32_children = dict(fp32_model.named_children())
    if set(dict(chosen_model.named_children())) != set(fp32_children):
        return report(name, False, "chosen_model does not have fp32_model's layers; quantize a copy of fp32_model.")
    quantized = set()
    for child_name, child in chosen_model.named_children():
        if type(child) is not type(fp32_children[child_name]):
            ratio = measure.state_dict_bytes(child) / measure.state_dict_bytes(fp32_children[child_name])
            if ratio > min_layer_shrink:
                return report(name, False, f"`{child_name}` is quantized, but its file is {ratio:.2f}x its fp32 "
                              "file: it does not pay off in size, and it adds rounding. Leave its type out of "
                              "qconfig_spec (the breakdown table above says which layers shrink).")
            quantized.add(child_name)
    expected, scored = layer_choice_02(fp32_model, val_ids, fp32_val_logits, min_agreement, min_layer_shrink)
    if quantized == expected:
        comparison, size = scored[expected]
        return report(name, True, "", f"{', '.join(sorted(expected))} in int8: {size / measure.state_dict_bytes(fp32_model):.2f}x "
                      f"fp32's file, {comparison.agreement:.1%} agreement on validation.")
    mine = scored.get(frozenset(quantized))
    if mine is not None and mine[0].agreement < min_agreement:
        return report(name, False, f"quantizing {sorted(quantized)} agrees with fp32 on {mine[0].agreement:.3f} of "
                      f"validation (< {min_agreement:.2f}). Score each candidate on validation and keep only those "
                      "that reach the bar.")
    return report(name, False, f"you quantized {sorted(quantized) or 'nothing'}; another candidate that pays off "
                  f"keeps agreement >= {min_agreement:.2f} on validation with a smaller file (or, if none reaches it, "
                  "agrees more). Score every combination of the layers that shrink, and let "
                  "evaluation.select_on_validation(..., prefer=smaller file) choose.")


def check_int8_size_prediction(predict_int8_bytes, extra_lstms=(), name: str = "exercise 3",
                               tolerance: float = 0.01) -> None:
    """Notebook 02: ``predict_int8_bytes(lstm_module)`` predicts the bytes of ``torch.save(state_dict)`` of the
    dynamically quantized ``nn.LSTM``, within ``tolerance`` (relative), for LSTMs of several shapes plus
    ``extra_lstms`` (the notebook passes its classifier's)."""
    import copy

    import torch

    from . import measure

    if _unanswered(predict_int8_bytes) or _unanswered(predict_int8_bytes(torch.nn.LSTM(4, 4))):
        return report(name, False, "no answer yet: replace the `...` with your code. Count the LSTM's weights and "
                      "biases with named_parameters().")
    torch.manual_seed(0)
    cases = [torch.nn.LSTM(32, 64, 1), torch.nn.LSTM(128, 512, 1), torch.nn.LSTM(256, 256, 3), *extra_lstms]
    for module in cases:
        quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(copy.deepcopy(module)),
                                                           {torch.nn.LSTM}, dtype=torch.qint8)[0]
        predicted, failure = _call_01(predict_int8_bytes, module)
        if failure or not isinstance(predicted, (int, float)):
            return report(name, False, f"predict_int8_bytes({module}) gave {failure or repr(predicted)}; return a "
                          "number of bytes.")
        actual = measure.state_dict_bytes(quantized)
        error = (predicted - actual) / actual
        if abs(error) > tolerance:
            shape = f"LSTM({module.input_size}, {module.hidden_size}, num_layers={module.num_layers})"
            direction = ("too small: biases stay fp32 (4 bytes each), and every file carries a fixed overhead (the "
                         "toy's 'everything else' column)" if error < 0 else
                         "too large: an int8 weight takes 1 byte, a bias 4; the overhead is a few kilobytes")
            return report(name, False, f"for {shape} you predicted {predicted:,.0f} bytes, the file has {actual:,} "
                          f"({100 * error:+.1f}%): {direction}.")
    return report(name, True, "", f"Within {tolerance:.0%} on {len(cases)} LSTMs: 1 byte per weight, 4 per bias, plus a "
                  "few kilobytes of container and packed-parameter metadata.")


# --- notebook 03 ---------------------------------------------------------------------------------------------------

def _names_text(names, limit: int = 3) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_qconfig_spec(name: str, spec, fp32_model, tokenizer, split, fp32_logits, max_len: int, kept_group: str,
                       kept_layers, expected_agreement: float) -> None:
    """Notebook 03: ``spec`` is a ``qconfig_spec`` for ``quantize_dynamic`` that keeps exactly ``kept_layers`` (the
    group chosen on validation) float and quantizes every other Linear per tensor. The check builds the model from
    the spec, looks at which Linears stayed float, scores it on the validation ``split`` and compares its agreement
    with fp32 with ``expected_agreement`` (the sweep's, for the same choice)."""
    import copy

    import torch
    from torch.ao.quantization import quantize_dynamic

    from . import bert_quant, evaluation

    if getattr(split, "name", None) != evaluation.VALIDATION:
        raise ValueError(f"the check scores the choice on the validation split, got {getattr(split, 'name', None)!r}")
    if _unanswered(spec):
        return report(name, False, "no answer yet: replace the `...` with a dict {module name: qconfig}.")
    if not isinstance(spec, dict) or not spec:
        return report(name, False, f"qconfig_spec is a non-empty dict (module name -> qconfig); got "
                                   f"{type(spec).__name__}. Build it from fp32_model.named_modules().")
    try:
        model = quantize_dynamic(copy.deepcopy(fp32_model), spec, dtype=torch.qint8)
    except (AssertionError, AttributeError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        return report(name, False, f"quantize_dynamic refused the spec ({type(exc).__name__}: {exc}). Map each "
                                   "Linear's name to default_dynamic_qconfig (the qconfig object, not its name).")
    kept, wanted = set(bert_quant.float_linears(model)), set(kept_layers)
    if kept != wanted:
        missing, extra = wanted - kept, kept - wanted
        hint = f"the group chosen on validation is {kept_group!r} ({len(wanted)} Linears); "
        if missing:
            hint += f"these of its layers were quantized, leave them out of the spec: {_names_text(missing)}. "
        if extra:
            hint += f"these Linears stayed float but are not in the group, put them in the spec: {_names_text(extra)}."
        return report(name, False, hint.strip())
    other = [n for n, m in model.named_modules() if isinstance(m, torch.ao.nn.quantized.Embedding)
             or (isinstance(m, torch.ao.nn.quantized.dynamic.Linear) and m.weight().qscheme() != torch.per_tensor_affine)]
    if other:
        return report(name, False, f"{_names_text(other)} got another qconfig than the sweep used: give every other "
                                   "Linear default_dynamic_qconfig (one weight scale per tensor), nothing else.")
    got = evaluation.evaluate(model, fp32_logits, tokenizer, split, max_len)
    ok = abs(got.agreement - expected_agreement) <= 1.5 / got.n
    return report(name, ok, f"the layers are right but the agreement on validation is {got.agreement:.4f}, the sweep "
                            f"measured {expected_agreement:.4f}; score with the same engine and batch size.",
                  success=f"{kept_group} stays float ({len(wanted)} Linears) and the model agrees with fp32 on "
                          f"{got.agreement:.1%} of the {got.n} validation sentences.")


def check_size_prediction(name: str, predicted_bytes, measured_bytes: int, fp32_model, rel: float = 0.01) -> None:
    """Notebook 03: a file size predicted from parameter counts (int8 Linear weights and embedding rows, a float
    scale and offset per embedding row, everything else fp32) against the measured ``measured_bytes``."""
    from torch import nn

    if _unanswered(predicted_bytes):
        return report(name, False, "no answer yet: replace the `...` with your prediction in bytes.")
    try:
        predicted = float(predicted_bytes)
    except (TypeError, ValueError):
        return report(name, False, f"expected a number of bytes, got {type(predicted_bytes).__name__}.")
    error = predicted / measured_bytes - 1
    if abs(error) <= rel:
        return report(name, True, "", success=f"{predicted / 1e6:.2f} MB predicted, {measured_bytes / 1e6:.2f} MB "
                                              f"measured ({error:+.1%}); the rest is the file format's overhead.")
    rows = sum(m.num_embeddings for m in fp32_model.modules() if isinstance(m, nn.Embedding))
    table_values = sum(m.weight.numel() for m in fp32_model.modules() if isinstance(m, nn.Embedding))
    if abs(predicted + 8 * rows - measured_bytes) <= rel * measured_bytes:
        hint = (f"close: add the per-row quantization parameters of the embeddings, a float32 scale and a float32 "
                f"offset for each of the {rows} rows (8 bytes per row).")
    elif predicted > 1.5 * measured_bytes and abs(predicted - 3 * table_values - measured_bytes) < 0.1 * measured_bytes:
        hint = "the embedding tables are int8 in this variant too: 1 byte per value, not 4."
    elif predicted > 3 * measured_bytes:
        hint = "that is about the fp32 size: count 1 byte per value for Linear weights and embedding tables."
    else:
        hint = (f"{error:+.1%} off. Per parameter: the weight of an nn.Linear and of an nn.Embedding 1 byte per "
                "value, each embedding row 8 more bytes (a float32 scale and offset), every other parameter "
                "(biases, LayerNorm) 4 bytes.")
    return report(name, False, hint)


# --- notebook 05 ---

class _RunsShellCommand(str):
    """Pickles as a call to ``os.system(<this string>)``: what a malicious checkpoint hides among its tensors."""

    def __reduce__(self):
        return os.system, (str(self),)


def write_code_running_checkpoint(path, marker) -> None:
    """A state_dict-like file whose pickle runs ``touch <marker>`` through ``os.system`` when it is unpickled.
    ``torch.load(weights_only=True)`` refuses it (``os`` is a blocked module), so ``marker`` never appears."""
    import shlex

    import torch

    torch.save({"classifier.weight": torch.zeros(2, 2),
                "classifier.bias": _RunsShellCommand(f"touch {shlex.quote(str(marker))}")}, path)


def check_repaired_load(name: str, load_int8, state_file, int8_model, inputs: dict) -> None:
    """``load_int8(path)`` must rebuild the int8 model from a ``torch.save(int8_model.state_dict())`` file, with
    logits bit-identical to ``int8_model``'s on ``inputs``, and must refuse a file whose pickle would run code."""
    import tempfile
    from pathlib import Path

    import torch

    if _unanswered(load_int8) or not callable(load_int8):
        return report(name, False, "no answer yet: define load_int8(path) and return the loaded model.")
    rebuild = ("build the float architecture, quantize it the way the saved model was quantized "
               "(quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)), then "
               "load_state_dict(torch.load(path, weights_only=True)) with the default strict=True.")
    try:
        model = load_int8(state_file)
    except Exception as exc:  # the learner's code may fail in any way; the hint names the failure
        return report(name, False, f"load_int8 raised {type(exc).__name__}: {str(exc).splitlines()[0][:160]}. "
                                   + rebuild)
    if not isinstance(model, torch.nn.Module):
        return report(name, False, f"load_int8 returned a {type(model).__name__}; return the model itself.")
    if not any(k.endswith("._packed_params._packed_params") for k in model.state_dict()):
        return report(name, False, "the model you return has float Linear layers, so the int8 weights had nowhere "
                                   "to go (strict=False hides that). " + rebuild)
    with torch.inference_mode():
        same = torch.equal(model.eval()(**inputs).logits, int8_model.eval()(**inputs).logits)
    if not same:
        return report(name, False, "the model loads but its logits differ from the int8 model's: " + rebuild)
    with tempfile.TemporaryDirectory() as scratch:
        marker, trap = Path(scratch) / "payload-ran", Path(scratch) / "quantized_state.pt"
        write_code_running_checkpoint(trap, marker)
        try:
            returned = load_int8(trap)
        except Exception:  # refusing is right; which exception depends on how the learner loads
            returned = None
        if marker.exists():
            return report(name, False, "loading a booby-trapped file ran the shell command hidden in its pickle. "
                                       "Pass weights_only=True to torch.load: it refuses anything but tensors.")
    if returned is not None:
        return report(name, False, "load_int8 returned a model from a file whose pickle calls os.system; let "
                                   "torch.load(..., weights_only=True) raise instead of catching its error.")
    return report(name, True, "", "Bit-identical logits, and a file that hides code is refused.")


def _safetensors_tensors(path) -> tuple[dict, int]:
    """``({name: (dtype, shape)}, header bytes)`` from a safetensors file (8-byte length, then the JSON header)."""
    import json
    import struct

    with open(path, "rb") as f:
        length = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(length))
    return {k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"}, 8 + length


def check_safetensors_size(name: str, predicted_bytes, path, rel: float = 0.01) -> None:
    """The predicted size of an int8 ``model.safetensors`` (torchao weights) must be within ``rel`` of the file's, or
    of its tensor bytes (the file without its JSON header)."""
    actual = os.path.getsize(path)
    if _unanswered(predicted_bytes):
        return report(name, False, "no answer yet: compute predicted_bytes from the fp32 model's parameters.")
    try:
        predicted = float(predicted_bytes)
    except (TypeError, ValueError):
        return report(name, False, f"expected a number of bytes, got {type(predicted_bytes).__name__}.")
    tensors, header = _safetensors_tensors(path)
    numel = {k: math.prod(shape) for k, (_, shape) in tensors.items()}
    int8_weights = sum(n for k, n in numel.items() if k.endswith("_weight_qdata"))
    all_fp32 = 4 * sum(n for k, n in numel.items() if not k.endswith(("_weight_scale", "_weight_zero_point")))
    embeddings = 4 * sum(n for k, n in numel.items() if "embeddings" in k)
    error = (predicted - actual) / actual
    if abs(error) <= rel or abs(predicted - (actual - header)) <= rel * (actual - header):
        return report(name, True, "", f"predicted {predicted / 1e6:.2f} MB, the file has {actual / 1e6:.2f} MB, "
                                      f"{header / 1e3:.0f} kB of it the JSON header.")
    if abs(predicted - all_fp32) <= rel * all_fp32:
        hint = "that is the fp32 size: the Linear weights are stored as int8, one byte per element."
    elif predicted < actual - 0.5 * embeddings:
        hint = ("too small: only the nn.Linear weights become int8; the embeddings (word, position, token type) "
                "and every bias and LayerNorm stay float32, 4 bytes per element.")
    else:
        hint = (f"off by {100 * error:+.1f}%: count {int8_weights:,} int8 weight elements at 1 byte, one float32 "
                "scale and one int8 zero point per output row of each Linear, and 4 bytes for everything else.")
    return report(name, False, hint)


def check_weight_scale(name: str, weight_scale) -> None:
    """``weight_scale(layer)`` must return the scale of a dynamic int8 Linear's *weight*: a float for a per-tensor
    weight, the per-row scales for a per-channel one (never the layer's own ``scale``, its output qparam)."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if _unanswered(weight_scale) or not callable(weight_scale):
        return report(name, False, "no answer yet: define weight_scale(layer).")
    torch.manual_seed(5)
    float_model = torch.nn.Sequential(torch.nn.Linear(16, 8)).eval()
    per_tensor = quantize_dynamic(float_model, {torch.nn.Linear}, dtype=torch.qint8)[0]
    per_channel = quantize_dynamic(float_model, {torch.nn.Linear: per_channel_dynamic_qconfig})[0]
    unpack = "layer.weight() unpacks the int8 weight from _packed_params; "
    for layer, expected in ((per_tensor, torch.tensor(per_tensor.weight().q_scale())),
                            (per_channel, per_channel.weight().q_per_channel_scales())):
        try:
            got = torch.as_tensor(weight_scale(layer), dtype=torch.float64).flatten()
        except (TypeError, ValueError, RuntimeError, AttributeError) as exc:
            return report(name, False, f"weight_scale raised {type(exc).__name__}: {exc}. " + unpack
                          + "its q_scale() or q_per_channel_scales() holds the scale.")
        if got.numel() == 1 and float(got) == float(layer.scale):
            return report(name, False, f"layer.scale ({layer.scale}) is the output scale, which dynamic "
                                       "quantization never uses. " + unpack + "read the scale from that tensor.")
        if got.shape != expected.flatten().shape or not torch.allclose(got, expected.double().flatten()):
            return report(name, False, f"wrong for a {layer.weight().qscheme()} weight: " + unpack
                          + "check weight.qscheme(): per-tensor -> q_scale(), per-channel -> q_per_channel_scales().")
    return report(name, True, "", "The weight's scale lives inside the packed weight, not in the layer's scale.")
