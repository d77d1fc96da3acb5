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
