"""The checkers of notebook 07's exercises."""

from __future__ import annotations

from ._core import _unanswered, report

__all__ = ["check_fake_quantize", "check_calibration_choice"]


def check_fake_quantize(answer, *, x, scale: float, zero_point: int, qmin: int, qmax: int,
                        name: str = "fake quantization and its clipped STE gradient") -> None:
    """Exercise: ``answer`` is ``(fake, grad)``, the fake-quantized values of ``x`` and the clipped straight-through
    gradient of ``fake.sum()`` with respect to ``x``, both compared with ``torch.fake_quantize_per_tensor_affine``
    and its autograd (exact to 1e-6)."""
    import torch

    hint = ("fake = (clamp(round(x * (1 / scale)) + zero_point, qmin, qmax) - zero_point) * scale; the gradient is 1.0 "
            "where round(x / scale) + zero_point lies inside [qmin, qmax] and 0.0 where the clamp saturates")
    if _unanswered(answer):
        return report(name, False, "no answer yet: replace the `...` with your code. " + hint)
    if not (isinstance(answer, (tuple, list)) and len(answer) == 2):
        return report(name, False, f"answer with the pair (fake, grad), got a {type(answer).__name__}. " + hint)
    fake, grad = answer
    if _unanswered(fake) or _unanswered(grad):
        return report(name, False, "no answer yet: replace the `...` with your code. " + hint)
    leaf = x.detach().clone().float().requires_grad_(True)
    reference = torch.fake_quantize_per_tensor_affine(leaf, scale, zero_point, qmin, qmax)
    reference.sum().backward()
    try:
        fake, grad = torch.as_tensor(fake, dtype=torch.float32), torch.as_tensor(grad, dtype=torch.float32)
        forward_error = (fake.detach() - reference.detach()).abs().max().item()
        grad_error = (grad.detach() - leaf.grad).abs().max().item()
    except (TypeError, ValueError, RuntimeError) as exc:
        return report(name, False, f"expected two tensors shaped like x ({type(exc).__name__}: {exc}). " + hint)
    detail = f"forward error {forward_error:.2g}, gradient error {grad_error:.2g}. "
    return report(name, max(forward_error, grad_error) <= 1e-6, detail + hint)


def check_calibration_choice(answer, *, comparisons: dict, seconds: dict, budget_s: float,
                             name: str = "calibration under a time budget") -> None:
    """Exercise: the calibration setting (a key of ``comparisons``) with the highest validation agreement among those
    whose build time in ``seconds`` is within ``budget_s`` (ties: any of the tied settings)."""
    hint = (f"keep the settings whose build took <= {budget_s:.1f} s, then take the one whose comparison has the "
            "highest .agreement; answer with its name (a key of calib_val)")
    if _unanswered(answer):
        return report(name, False, "no answer yet: replace the `...` with your code. " + hint)
    if answer not in comparisons:
        return report(name, False, f"{answer!r} is not one of {sorted(comparisons)}. " + hint)
    if any(c.split != "validation" for c in comparisons.values()):
        return report(name, False, "these comparisons were not all made on validation; choose on validation. " + hint)
    affordable = [k for k, s in seconds.items() if s <= budget_s]
    if answer not in affordable:
        return report(name, False, f"{answer!r} took {seconds[answer]:.1f} s, over the budget. " + hint)
    best = max(comparisons[k].agreement for k in affordable)
    return report(name, comparisons[answer].agreement == best,
                  f"{answer!r} agrees {comparisons[answer].agreement:.3f}, but an affordable setting reaches "
                  f"{best:.3f}. " + hint)
