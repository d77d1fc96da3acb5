"""The checkers of notebook 04's exercises: a calibration reader with its static model, a predicted file size."""

from __future__ import annotations

from ._core import _unanswered, report

__all__ = ["check_static_int8", "check_onnx_size_prediction"]


def _reader_batches(reader, limit: int = 10_000) -> tuple[list[dict], str | None]:
    """Every batch a calibration reader yields after ``rewind()`` (if it has one), or an error text."""
    if callable(getattr(reader, "rewind", None)):
        reader.rewind()
    batches = []
    for _ in range(limit):
        try:
            batch = reader.get_next()
        except Exception as err:  # the learner's reader may raise anything; the hint names it
            return batches, f"get_next() raised {type(err).__name__}: {err}"
        if batch is None:
            return batches, None
        batches.append(batch)
    return batches, f"get_next() still returned data after {limit} calls: return None when the sentences run out"


def _check_feeds(batches: list[dict], input_names, max_len: int) -> str | None:
    """What is wrong with a reader's batches (names, types, shapes), or None."""
    import numpy as np

    if not batches:
        return ("get_next() returned None at once. quantize_static has read your reader already: give it a "
                "rewind() that starts again, or build a fresh reader")
    for i, batch in enumerate(batches):
        if not isinstance(batch, dict) or set(batch) != set(input_names):
            got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            return f"batch {i} holds {got}; each get_next() returns a dict with exactly the keys {list(input_names)}"
        for name, array in batch.items():
            if not isinstance(array, np.ndarray) or array.dtype != np.int64:
                kind = getattr(array, "dtype", type(array).__name__)
                return f"batch {i}: {name} is {kind}; ONNX Runtime wants numpy int64 arrays (.astype(np.int64))"
            if array.ndim != 2 or array.shape[1] != max_len or array.shape[0] != len(batch[input_names[0]]):
                return (f"batch {i}: {name} has shape {array.shape}; expected [batch, {max_len}] for every input "
                        f"(tokenizer(..., padding='max_length', truncation=True, max_length={max_len}))")
    return None


def check_static_int8(reader, *, name: str, model_path, input_names, max_len: int, tokenizer, splits,
                      fp32_val_logits, min_agreement: float = 0.9) -> None:
    """Notebook 04: a learner's ``CalibrationDataReader`` and the static int8 model ``quantize_static`` made with
    it. The reader's batches must be dicts of int64 ``[batch, max_len]`` arrays keyed by the model's inputs, made of
    training sentences only; the file must hold QDQ nodes, run in ONNX Runtime and agree with fp32 on at least
    ``min_agreement`` of the validation split."""
    from pathlib import Path

    from .. import onnx_route

    if _unanswered(reader) or _unanswered(model_path):
        return report(name, False, "no answer yet: replace the `...` with your code. Subclass CalibrationDataReader "
                      "(get_next returns a dict of int64 arrays, then None), then call quantize_static with it.")
    if not callable(getattr(reader, "get_next", None)):
        return report(name, False, f"my_reader is a {type(reader).__name__}; it needs a get_next() method "
                      "(subclass onnxruntime.quantization.CalibrationDataReader)")
    batches, error = _reader_batches(reader)
    error = error or _check_feeds(batches, list(input_names), max_len)
    if error:
        return report(name, False, error)
    encoded = tokenizer(list(splits["train"].texts), padding="max_length", truncation=True, max_length=max_len)
    train = {tuple(row) for row in encoded["input_ids"]}
    foreign = sum(tuple(row) not in train for b in batches for row in b["input_ids"].tolist())
    if foreign:
        return report(name, False, f"{foreign} calibration sentences are not from splits['train']: calibrate on "
                      "training sentences only, so validation and test stay unseen")
    path = Path(model_path)
    if not path.is_file():
        return report(name, False, f"no file at {path.name}: pass quantize_static the output path my_static_path")
    ops = onnx_route.graph_summary(path)["ops"]
    if not ops.get("QuantizeLinear") or not ops.get("DequantizeLinear"):
        return report(name, False, f"{path.name} has no QuantizeLinear/DequantizeLinear pairs: pass "
                      "quant_format=QuantFormat.QDQ to quantize_static")
    comparison = onnx_route.score(path, fp32_val_logits, tokenizer, splits["validation"], max_len)
    n_batches, n_rows = len(batches), sum(len(b["input_ids"]) for b in batches)
    return report(name, comparison.agreement >= min_agreement,
                  f"the model runs, but agrees with fp32 on only {comparison.agreement:.1%} of validation sentences "
                  f"(expected >= {min_agreement:.0%}): calibrate on more sentences, or try CalibrationMethod.MinMax",
                  success=f"{n_rows} training sentences in {n_batches} batches; "
                          f"{comparison.describe('your static int8 model')}")


def check_onnx_size_prediction(predicted_mb, *, name: str, model_path, tolerance: float = 0.05) -> None:
    """Notebook 04: a predicted file size (MB) against the measured size of the dynamic int8 model that keeps the
    embeddings in fp32 (``EmbedLayerNormalization`` left unquantized, ``QAttention`` for the attention)."""
    from pathlib import Path

    from .. import measure, onnx_route

    if _unanswered(predicted_mb) or _unanswered(model_path):
        return report(name, False, "no answer yet: replace the `...` with your code. Predict the size first, then "
                      "build the model with quantize_dynamic(..., op_types_to_quantize=['MatMul', 'Attention']).")
    path = Path(model_path)
    if not path.is_file():
        return report(name, False, f"no file at {path.name}: build the model into no_embed_path")
    ops = onnx_route.graph_summary(path)["ops"]
    if "QEmbedLayerNormalization" in ops or "EmbedLayerNormalization" not in ops:
        return report(name, False, "the embeddings should stay fp32: leave EmbedLayerNormalization out of "
                      "op_types_to_quantize (quantize MatMul and Attention only) and start from PRE_ONNX")
    if "QAttention" not in ops:
        return report(name, False, "the attention should be int8 (QAttention): include 'Attention' in "
                      "op_types_to_quantize")
    measured = measure.mb(measure.size_on_disk(path))
    try:
        error = abs(float(predicted_mb) - measured) / measured
    except (TypeError, ValueError):
        return report(name, False, f"predicted_mb should be a number of megabytes, got {type(predicted_mb).__name__}")
    return report(name, error <= tolerance,
                  f"you predicted {float(predicted_mb):.1f} MB, the file has {measured:.1f} MB. Start from the int8 "
                  "file's size and add 3 bytes for every embedding value kept in fp32 (4 bytes instead of 1): the "
                  "tables EmbedLayerNormalization reads, in onnx_route.initializers(PRE_ONNX)",
                  success=f"predicted {float(predicted_mb):.1f} MB, measured {measured:.1f} MB ({error:.1%} off).")
