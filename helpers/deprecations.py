"""The two warnings every torch 2.13 quantization notebook meets, filtered by category and message only.

1. ``DeprecationWarning: torch.ao.quantization is deprecated ...`` from ``quantize_dynamic`` and friends: the eager
   API still works in 2.13, and its successor is torchao's ``quantize_``.
2. ``UserWarning: torch.quantize_per_tensor, torch.quantize_per_channel and other quantized tensor creation
   functions ... are deprecated``: raised when quantized tensors are created.

Notebooks show each warning once, explain it, and then call ``silence_known()``. Any other warning still shows.
``tally`` lists the warnings a ``warnings.catch_warnings(record=True)`` block recorded, each kind once with a count.
"""

from __future__ import annotations

import contextlib
import warnings

AO_DEPRECATION = r"torch\.ao\.quantization is deprecated"
QTENSOR_DEPRECATION = r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor"

KNOWN = ((DeprecationWarning, AO_DEPRECATION), (UserWarning, QTENSOR_DEPRECATION))


def silence_known() -> None:
    """Ignore exactly the two known quantization deprecation warnings for the rest of the session (a notebook's
    choice, after it has shown them); everything else stays visible. Helpers use ``known_silenced()``."""
    for category, message in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category)


@contextlib.contextmanager
def known_silenced():
    """``silence_known()`` inside a ``warnings.catch_warnings()`` block: the filters are restored on leaving."""
    with warnings.catch_warnings():
        silence_known()
        yield


def tally(caught, width: int | None = None) -> list[dict]:
    """The warnings a ``warnings.catch_warnings(record=True)`` block recorded, one row per kind: ``warning`` (the
    category's name), ``message`` (its first line, cut to ``width`` characters) and ``times`` it fired, in the
    order the kinds were first seen."""
    counts: dict[tuple[str, str], int] = {}
    for w in caught:
        key = (w.category.__name__, (str(w.message).splitlines() or [""])[0][:width])
        counts[key] = counts.get(key, 0) + 1
    return [{"warning": category, "message": message, "times": n} for (category, message), n in counts.items()]


# --- import-time log noise ----------------------------------------------------------------------------------------
# torchao 0.18 (imported by transformers when installed) tries to load its CUDA-only kernels on this CPU build and
# logs "Failed to load .../_C_mxfp8...so" / "_C_cutlass_90a"; it also registers Enum types with torch's pytree, which
# logs "... is an Enum subclass and is now natively supported by torch.compile". Both are harmless on CPU.
IMPORT_NOISE = (
    ("torchao", ("Failed to load", "_C_")),
    ("torch.utils._pytree", ("is an Enum subclass and is now natively supported",)),
)


class _DropMessages:
    def __init__(self, fragments: tuple[str, ...]):
        self.fragments = fragments

    def filter(self, record) -> bool:
        message = record.getMessage()
        return not all(f in message for f in self.fragments)


def silence_import_noise() -> None:
    """Drop exactly the two harmless import-time log messages above; other log records pass."""
    import logging

    for logger_name, fragments in IMPORT_NOISE:
        logger = logging.getLogger(logger_name)
        if not any(isinstance(f, _DropMessages) and f.fragments == fragments for f in logger.filters):
            logger.addFilter(_DropMessages(fragments))
