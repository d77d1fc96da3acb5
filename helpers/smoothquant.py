"""SmoothQuant by hand, for the feed-forward output projections of a BERT-style encoder (notebook 07).

SmoothQuant moves part of each input channel's activation peak into the matching weight column:
``linear(x) == linear'(x / s)`` with ``W'[:, j] = W[:, j] * s_j``, so a per-tensor activation scale no longer has to
cover a 40-90 standard-deviation outlier channel. torchao 0.18's SmoothQuant is a ``quantize_`` prototype for its own
tensor subclasses, not a pt2e pass, so the course writes the few lines itself.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn


def ffn_output_layers(model: nn.Module) -> list[str]:
    """Names of the feed-forward output projections (``encoder.layer.N.output.dense``): the Linear layers whose
    input (the GELU output) has the largest outliers."""
    names = [n for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and n.endswith(".output.dense") and ".attention." not in n]
    if not names:
        raise ValueError(f"{type(model).__name__} has no '*.output.dense' feed-forward layers (not a BERT encoder?)")
    return names


def input_channel_absmax(model: nn.Module, layer_names: Sequence[str],
                         batches: Sequence[dict]) -> dict[str, torch.Tensor]:
    """``max |x_j|`` over calibration batches, per input channel j, of each named Linear layer's input."""
    modules = dict(model.named_modules())
    absmax: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(module, args):
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(dim=0)
            absmax[name] = x if name not in absmax else torch.maximum(absmax[name], x)
        return record

    handles = [modules[n].register_forward_pre_hook(hook(n)) for n in layer_names]
    try:
        with torch.no_grad():
            for batch in batches:
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        for h in handles:
            h.remove()
    return absmax


class SmoothedLinear(nn.Module):
    """``linear(x / s)`` with the weight's columns multiplied by ``s``: the same function as the original Linear,
    but its input now has the per-channel peaks divided by ``s``. ``inv_scale`` holds ``1 / s``; the multiply is
    a broadcast ``aten.mul`` that Inductor fuses into the op before it, and that the quantizer leaves in fp32."""

    def __init__(self, linear: nn.Linear, scale: torch.Tensor):
        super().__init__()
        self.linear = copy.deepcopy(linear)
        with torch.no_grad():
            self.linear.weight.mul_(scale)  # column j times s_j
        self.register_buffer("inv_scale", 1.0 / scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inv_scale)


def smoothing_scale(act_absmax: torch.Tensor, weight: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """SmoothQuant's per-input-channel factor ``s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha)``: ``alpha`` of
    each channel's activation peak moves into the weight column (alpha = 0.5 splits it evenly)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha is between 0 and 1 (0.5 is SmoothQuant's default), got {alpha}")
    w_absmax = weight.detach().abs().amax(dim=0)
    eps = torch.finfo(torch.float32).eps
    return (act_absmax.clamp(min=eps) ** alpha / w_absmax.clamp(min=eps) ** (1 - alpha)).clamp(min=1e-5)


def smooth_ffn_output(model: nn.Module, batches: Sequence[dict], alpha: float = 0.5,
                      layer_names: Sequence[str] | None = None) -> nn.Module:
    """A copy of ``model`` with SmoothQuant applied to the feed-forward output projections (``*.output.dense``).

    Their input is a GELU output, so ``s`` cannot be folded into the op before it the way SmoothQuant folds it
    into a LayerNorm: ``GELU(z / s) != GELU(z) / s`` (only ReLU-like functions commute with a positive scale). The
    ``1 / s`` multiply therefore stays explicit (``SmoothedLinear``); in fp32 the function is unchanged."""
    names = list(layer_names) if layer_names is not None else ffn_output_layers(model)
    absmax = input_channel_absmax(model, names, batches)
    smoothed = copy.deepcopy(model)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = smoothed.get_submodule(parent_name)
        linear = getattr(parent, child)
        setattr(parent, child, SmoothedLinear(linear, smoothing_scale(absmax[name], linear.weight, alpha)))
    return smoothed.eval()
