"""The checkers of notebook 05's exercises."""

from __future__ import annotations

import math
import os

from ._core import _unanswered, number_answer, report

__all__ = ["check_repaired_load", "check_safetensors_size", "check_weight_scale"]


class _RunsShellCommand(str):
    """Pickles as a call to ``os.system(<this string>)``: what a malicious checkpoint hides among its tensors."""

    def __reduce__(self):
        return os.system, (str(self),)


def _write_code_running_checkpoint(path, marker) -> None:
    """A state_dict-like file whose pickle runs ``touch <marker>`` through ``os.system`` when it is unpickled.
    ``torch.load(weights_only=True)`` refuses it (``os`` is a blocked module), so ``marker`` never appears."""
    import shlex

    import torch

    torch.save({"classifier.weight": torch.zeros(2, 2),
                "classifier.bias": _RunsShellCommand(f"touch {shlex.quote(str(marker))}")}, path)


def check_repaired_load(load_int8, *, name: str, state_file, int8_model, inputs: dict) -> None:
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
        _write_code_running_checkpoint(trap, marker)
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


def check_safetensors_size(predicted_bytes, *, name: str, path, rel: float = 0.01) -> None:
    """The predicted size of an int8 ``model.safetensors`` (torchao weights) must be within ``rel`` of the file's, or
    of its tensor bytes (the file without its JSON header)."""
    actual = os.path.getsize(path)
    predicted = number_answer(name, predicted_bytes,
                              "no answer yet: compute predicted_bytes from the fp32 model's parameters.")
    if predicted is None:
        return
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


def check_weight_scale(weight_scale, *, name: str) -> None:
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
