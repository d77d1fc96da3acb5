"""The checkers of notebook 02's exercises."""

from __future__ import annotations

from ._core import _unanswered, call_learner, report

__all__ = ["check_engine_picker", "check_layer_choice", "check_int8_size_prediction"]

#: (supported engines, platform.machine(), the engines a correct pick may return) for ``check_engine_picker``.
_ENGINE_CASES = (
    (("qnnpack", "onednn", "x86", "fbgemm"), "x86_64", ("x86",)),  # torch 2.x on x86-64: qnnpack is listed first
    (("qnnpack", "fbgemm"), "x86_64", ("fbgemm",)),  # an older x86-64 build without the x86 engine
    (("qnnpack", "none"), "arm64", ("qnnpack",)),  # the source notes' machine: macOS on Apple silicon
    (("qnnpack", "onednn"), "aarch64", ("onednn", "qnnpack")),  # Linux on ARM: onednn (Arm Compute Library) is fast
)
#: Builds with no usable engine: a correct pick raises instead of returning "none".
_NO_ENGINE_CASES = (((), "x86_64"), (("none",), "arm64"))


def _toy_lstm():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.LSTM(8, 8, 1))


def check_engine_picker(pick_engine, *, name: str = "exercise 1") -> None:
    """Notebook 02: ``pick_engine(supported, machine)`` returns the engine to assign to
    ``torch.backends.quantized.engine``. Checked on simulated builds, then used as the fix on the notes' simulated
    machine (``helpers.engine.simulate_build``), where ``quantize_dynamic`` must no longer crash."""
    import torch

    from .. import engine

    if _unanswered(pick_engine) or _unanswered(pick_engine(["x86"], "x86_64")):
        return report(name, False, "no answer yet: replace the `...` with your code. Return one engine from the "
                      "list: x86 first on x86-64, qnnpack on ARM.")
    for supported, machine, good in _ENGINE_CASES:
        got, error = call_learner(pick_engine, list(supported), machine)
        if error:
            return report(name, False, f"pick_engine({list(supported)}, {machine!r}) raised {error}")
        if got not in good:
            hint = (f"pick_engine({list(supported)}, {machine!r}) returned {got!r}; expected {good[0]!r}. ")
            hint += ("'none' is not an engine. " if got == "none" else
                     "qnnpack runs on x86-64 too but far slower than x86/fbgemm: prefer x86, then fbgemm, there. "
                     if machine == "x86_64" else "On ARM, qnnpack is the engine to use. ")
            return report(name, False, hint)
    for supported, machine in _NO_ENGINE_CASES:
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
            torch.ao.quantization.quantize_dynamic(_toy_lstm(), {torch.nn.LSTM}, dtype=torch.qint8)
        except RuntimeError as err:
            return report(name, False, f"on the simulated notes' machine quantize_dynamic still fails: {err}")
    return report(name, True, "", "Your pick is the fix: on the simulated notes' machine the recipe now quantizes "
                  "instead of crashing with NoQEngine, and a build with no engine fails early with a clear message.")


def _qconfig_for(module):
    """The qconfig a notebook-02 layer can take: dynamic for LSTM and Linear, weight-only for an embedding."""
    import torch

    if isinstance(module, torch.nn.Embedding):
        return torch.ao.quantization.float_qparams_weight_only_qconfig
    if isinstance(module, (torch.nn.LSTM, torch.nn.Linear)):
        return torch.ao.quantization.default_dynamic_qconfig
    return None


def _layer_choice(fp32_model, val_ids, fp32_val_logits, min_agreement: float | None = None,
                    min_layer_shrink: float = 0.5) -> tuple[frozenset, dict]:
    """The answer ``check_layer_choice`` expects: among the non-empty sets of ``fp32_model``'s children that pay off
    in size (int8 file at most ``min_layer_shrink`` x fp32's), the one ``evaluation.select_on_validation`` picks
    with the smallest file preferred. Returns (the chosen child names, {names: (validation Comparison, bytes)})."""
    import copy
    import itertools

    import torch

    from .. import evaluation, lstm, measure

    paying = []
    for child_name, child in fp32_model.named_children():
        qconfig = _qconfig_for(child)
        if qconfig is None:
            continue
        quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(copy.deepcopy(child)),
                                                           {type(child): qconfig})[0]
        if measure.state_dict_bytes(quantized) <= min_layer_shrink * measure.state_dict_bytes(child):
            paying.append(child_name)
    scored = {}
    for k in range(1, len(paying) + 1):
        for names in itertools.combinations(paying, k):
            spec = {type(getattr(fp32_model, n)): _qconfig_for(getattr(fp32_model, n)) for n in names}
            candidate = torch.ao.quantization.quantize_dynamic(fp32_model, spec)
            comparison = evaluation.compare(fp32_val_logits, lstm.predict(candidate, val_ids),
                                            split=evaluation.VALIDATION)
            scored[frozenset(names)] = (comparison, measure.state_dict_bytes(candidate))
    min_agreement = evaluation.TARGET_AGREEMENT if min_agreement is None else min_agreement
    chosen = evaluation.select_on_validation({names: c for names, (c, _) in scored.items()},
                                             prefer=lambda names: -scored[names][1], min_agreement=min_agreement)
    return chosen, scored


def check_layer_choice(chosen_model, *, fp32_model, val_ids, fp32_val_logits, name: str = "exercise 2",
                       min_agreement: float | None = None, min_layer_shrink: float = 0.5) -> None:
    """Notebook 02: ``chosen_model`` (``quantize_dynamic`` of ``fp32_model`` with the learner's ``qconfig_spec``)
    quantizes no layer that fails to shrink, and among the layers that do, exactly the set chosen on the validation
    split: the smallest file whose agreement with fp32 reaches ``min_agreement`` (the protocol's target by default;
    ``evaluation.select_on_validation``'s rule when none does)."""
    from .. import evaluation, measure

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
    expected, scored = _layer_choice(fp32_model, val_ids, fp32_val_logits, min_agreement, min_layer_shrink)
    if quantized == expected:
        comparison, size = scored[expected]
        ratio = size / measure.state_dict_bytes(fp32_model)
        return report(name, True, "", f"{', '.join(sorted(expected))} in int8: {ratio:.2f}x "
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


def check_int8_size_prediction(predict_int8_bytes, *, extra_lstms=(), name: str = "exercise 3",
                               tolerance: float = 0.01) -> None:
    """Notebook 02: ``predict_int8_bytes(lstm_module)`` predicts the bytes of ``torch.save(state_dict)`` of the
    dynamically quantized ``nn.LSTM``, within ``tolerance`` (relative), for LSTMs of several shapes plus
    ``extra_lstms`` (the notebook passes its classifier's)."""
    import copy

    import torch

    from .. import measure

    if _unanswered(predict_int8_bytes) or _unanswered(predict_int8_bytes(torch.nn.LSTM(4, 4))):
        return report(name, False, "no answer yet: replace the `...` with your code. Count the LSTM's weights and "
                      "biases with named_parameters().")
    torch.manual_seed(0)
    cases = [torch.nn.LSTM(32, 64, 1), torch.nn.LSTM(128, 512, 1), torch.nn.LSTM(256, 256, 3), *extra_lstms]
    for module in cases:
        quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(copy.deepcopy(module)),
                                                           {torch.nn.LSTM}, dtype=torch.qint8)[0]
        predicted, failure = call_learner(predict_int8_bytes, module)
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
    return report(name, True, "", f"Within {tolerance:.0%} on {len(cases)} LSTMs: 1 byte per weight, 4 per bias, "
                  "plus a few kilobytes of container and packed-parameter metadata.")
