"""The two warnings every torch 2.13 quantization notebook meets, filtered by category and message only.

1. ``DeprecationWarning: torch.ao.quantization is deprecated ...`` from ``quantize_dynamic`` and friends: the eager
   API still works in 2.13, and its successor is torchao's ``quantize_``.
2. ``UserWarning: torch.quantize_per_tensor, torch.quantize_per_channel and other quantized tensor creation
   functions ... are deprecated``: raised when quantized tensors are created.

Notebooks show each warning once, explain it, and then call ``silence_known()``. Any other warning still shows.
"""

from __future__ import annotations

import warnings

AO_DEPRECATION = r"torch\.ao\.quantization is deprecated"
QTENSOR_DEPRECATION = r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor"

KNOWN = ((DeprecationWarning, AO_DEPRECATION), (UserWarning, QTENSOR_DEPRECATION))


def silence_known() -> None:
    """Ignore exactly the two known quantization deprecation warnings; everything else stays visible."""
    for category, message in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category)


def show_known() -> None:
    """Undo ``silence_known``: show the two warnings again (always, not once per location)."""
    for category, message in KNOWN:
        warnings.filterwarnings("always", message=message, category=category)
