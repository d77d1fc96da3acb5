"""The checkers of notebook 03's exercises."""

from __future__ import annotations

from ._core import _unanswered, number_answer, report

__all__ = ["check_qconfig_spec", "check_size_prediction"]


def _names_text(names, limit: int = 3) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_qconfig_spec(spec, *, name: str, fp32_model, tokenizer, split, fp32_logits, max_len: int, kept_group: str,
                       kept_layers, expected_agreement: float) -> None:
    """Notebook 03: ``spec`` is a ``qconfig_spec`` for ``quantize_dynamic`` that keeps exactly ``kept_layers`` (the
    group chosen on validation) float and quantizes every other Linear per tensor. The check builds the model from
    the spec, looks at which Linears stayed float, scores it on the validation ``split`` and compares its agreement
    with fp32 with ``expected_agreement`` (the sweep's, for the same choice)."""
    import copy

    import torch
    from torch.ao.quantization import quantize_dynamic

    from .. import bert_quant, evaluation

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
    dynamic_linear = torch.ao.nn.quantized.dynamic.Linear
    other = [n for n, m in model.named_modules() if isinstance(m, torch.ao.nn.quantized.Embedding)
             or (isinstance(m, dynamic_linear) and m.weight().qscheme() != torch.per_tensor_affine)]
    if other:
        return report(name, False, f"{_names_text(other)} got another qconfig than the sweep used: give every other "
                                   "Linear default_dynamic_qconfig (one weight scale per tensor), nothing else.")
    got = evaluation.evaluate(model, fp32_logits, tokenizer, split, max_len)
    ok = abs(got.agreement - expected_agreement) <= 1.5 / got.n
    return report(name, ok, f"the layers are right but the agreement on validation is {got.agreement:.4f}, the sweep "
                            f"measured {expected_agreement:.4f}; score with the same engine and batch size.",
                  success=f"{kept_group} stays float ({len(wanted)} Linears) and the model agrees with fp32 on "
                          f"{got.agreement:.1%} of the {got.n} validation sentences.")


def check_size_prediction(predicted_bytes, *, name: str, measured_bytes: int, fp32_model, rel: float = 0.01) -> None:
    """Notebook 03: a file size predicted from parameter counts (int8 Linear weights and embedding rows, a float
    scale and offset per embedding row, everything else fp32) against the measured ``measured_bytes``."""
    from torch import nn

    predicted = number_answer(name, predicted_bytes, "no answer yet: replace the `...` with your prediction in bytes.")
    if predicted is None:
        return
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
