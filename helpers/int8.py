"""int8 arithmetic by hand: ``x ≈ scale * (q - zero_point)``.

- ``qrange``            the integer range for a bit width
- ``qparams_from_range``  scale and zero point from a float range (affine or symmetric)
- ``qparams``           the same, observed from a tensor, per tensor or per channel (``axis``)
- ``quantize`` / ``dequantize`` / ``fake_quantize``
- ``quant_error``       MSE, max abs error and SQNR (dB) of a round trip

The formulas match PyTorch's ``MinMaxObserver`` and ``torch.quantize_per_tensor`` / ``torch.quantize_per_channel``:
the range always contains 0 (so 0.0 is exact), rounding is half-to-even, codes are clamped to the range.
"""

from __future__ import annotations

import math

import torch

SCHEMES = ("affine", "symmetric")
_EPS = torch.finfo(torch.float32).eps


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an integer from 2 to 16, got {bits!r}")


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def _check_tensor(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {x.dtype}; convert it with x.float() first")
    if x.numel() == 0:
        raise ValueError("cannot quantize an empty tensor: there is no range to observe")


def qrange(bits: int = 8, signed: bool = True) -> tuple[int, int]:
    """The integer codes for ``bits``: signed -128..127 or unsigned 0..255 at 8 bits."""
    _check_bits(bits)
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def default_signed(scheme: str) -> bool:
    """PyTorch's convention: symmetric weights are qint8 (signed), affine activations are quint8 (unsigned)."""
    return scheme == "symmetric"


def qparams_from_range(min_val, max_val, bits: int = 8, scheme: str = "affine", signed: bool | None = None):
    """Scale and zero point that map ``[min_val, max_val]`` onto the integer range.

    ``min_val``/``max_val`` are floats or tensors (one entry per channel). Returns ``(scale, zero_point)`` as
    float32 and int64 tensors of the same shape.
    """
    _check_bits(bits)
    _check_scheme(scheme)
    signed = default_signed(scheme) if signed is None else signed
    min_val = torch.as_tensor(min_val, dtype=torch.float32)
    max_val = torch.as_tensor(max_val, dtype=torch.float32)
    if bool((min_val > max_val).any()):
        raise ValueError(f"inverted range: min {min_val.tolist()} is greater than max {max_val.tolist()}")
    if not bool(torch.isfinite(min_val).all() and torch.isfinite(max_val).all()):
        raise ValueError("the range must be finite; remove inf/nan values before quantizing")
    qmin, qmax = qrange(bits, signed)
    min_neg = torch.clamp(min_val, max=0.0)  # the range must contain 0 so that 0.0 (padding, ReLU) is exact
    max_pos = torch.clamp(max_val, min=0.0)
    if scheme == "symmetric":
        amax = torch.maximum(-min_neg, max_pos)
        scale = torch.clamp(amax / ((qmax - qmin) / 2), min=_EPS)
        zero_point = torch.full_like(scale, 0 if signed else (qmin + qmax + 1) // 2, dtype=torch.int64)
    else:
        scale = torch.clamp((max_pos - min_neg) / float(qmax - qmin), min=_EPS)
        zero_point = (qmin - torch.round(min_neg / scale)).to(torch.int64).clamp(qmin, qmax)
    return scale, zero_point


def qparams(x: torch.Tensor, bits: int = 8, scheme: str = "affine", axis: int | None = None,
            signed: bool | None = None, clip: tuple[float, float] | None = None):
    """Observe ``x`` (min/max, or the ``clip`` range) and return ``(scale, zero_point)``.

    ``axis=None`` gives one pair per tensor; ``axis=k`` one pair per slice along dimension ``k`` (per channel).
    """
    _check_tensor(x)
    if clip is not None:
        lo, hi = clip
        if axis is not None:
            n = x.shape[axis]
            return qparams_from_range(torch.full((n,), float(lo)), torch.full((n,), float(hi)), bits, scheme, signed)
        return qparams_from_range(lo, hi, bits, scheme, signed)
    if axis is None:
        return qparams_from_range(x.min(), x.max(), bits, scheme, signed)
    flat = x.detach().movedim(axis, 0).reshape(x.shape[axis], -1)
    return qparams_from_range(flat.min(dim=1).values, flat.max(dim=1).values, bits, scheme, signed)


def _broadcast(p: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    if axis is None or p.dim() == 0:
        return p
    shape = [1] * x.dim()
    shape[axis] = -1
    return p.reshape(shape)


def _codes(x: torch.Tensor, scale, zero_point, bits: int, signed: bool, axis: int | None) -> torch.Tensor:
    """The integer codes as float32 values (exact: every code is far below 2**24), for quantize and fake_quantize."""
    _check_tensor(x)
    qmin, qmax = qrange(bits, signed)
    scale = _broadcast(torch.as_tensor(scale, dtype=torch.float32), x, axis)
    zero_point = _broadcast(torch.as_tensor(zero_point, dtype=torch.int64), x, axis)
    if bool((scale <= 0).any()):
        raise ValueError("scale must be positive")
    return (torch.round(x.float() * (1.0 / scale)) + zero_point).clamp_(qmin, qmax)


def quantize(x: torch.Tensor, scale, zero_point, bits: int = 8, signed: bool = True, axis: int | None = None):
    """Integer codes ``clamp(round(x / scale) + zero_point)``, as an int64 tensor.

    Like PyTorch's kernels, it multiplies by the float32 reciprocal of the scale, so ties round exactly as
    ``torch.quantize_per_tensor`` / ``torch.quantize_per_channel`` do.
    """
    return _codes(x, scale, zero_point, bits, signed, axis).to(torch.int64)


def dequantize(q: torch.Tensor, scale, zero_point, axis: int | None = None) -> torch.Tensor:
    """Floats back from codes: ``scale * (q - zero_point)``."""
    scale = _broadcast(torch.as_tensor(scale, dtype=torch.float32), q, axis)
    zero_point = _broadcast(torch.as_tensor(zero_point, dtype=torch.int64), q, axis)
    return scale * (q - zero_point).to(torch.float32)


def fake_quantize(x: torch.Tensor, bits: int = 8, scheme: str = "symmetric", axis: int | None = None,
                  clip: tuple[float, float] | None = None) -> torch.Tensor:
    """Quantize and dequantize in one go: what the model "sees" after int8 rounding.

    Equal to ``dequantize(quantize(...))``, computed in float32 without the int64 detour (the codes are exact)."""
    signed = default_signed(scheme)
    scale, zp = qparams(x, bits, scheme, axis, signed, clip)
    codes = _codes(x, scale, zp, bits, signed, axis)
    return _broadcast(scale, x, axis) * (codes - _broadcast(zp, x, axis))


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10 log10(sum x^2 / sum (x - x_hat)^2)``. Higher is better."""
    noise = torch.sum((x.float() - x_hat.float()) ** 2).item()
    signal = torch.sum(x.float() ** 2).item()
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def quant_error(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """How far a round trip landed: mean squared error, max absolute error, SQNR in dB."""
    if x.shape != x_hat.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    diff = x.float() - x_hat.float()
    noise = diff.pow(2).sum().item()
    signal = x.float().pow(2).sum().item()
    sqnr = math.inf if noise == 0 else 10 * math.log10(signal / noise)
    return {"mse": noise / diff.numel(), "max_abs": diff.abs().max().item(), "sqnr_db": sqnr}
