"""What every inference route is made of: the ``Context`` a builder gets, the ``Built`` it returns, the ``Route``
record, and the CPU capabilities a route needs to run fast and right.

``helpers.bench.routes`` (the PyTorch routes and the registry) and ``helpers.bench.runtime_routes`` (ONNX Runtime,
OpenVINO) build on these.

**CPU capabilities.** Some routes have a fast, correct kernel only on some CPUs:

- ``"bf16"``: bf16 matmuls need native bf16: AVX-512 BF16 or AMX-BF16, ARM BF16 (``helpers.cpu.has_native_bf16``).
  Without it they are emulated (oneDNN's ``gemm:jit:bf16`` on AVX-512) or run in torch's generic code (AVX2),
  slower than fp32; OpenVINO emulates bf16 on AVX-512 and runs f32 instead on AVX2.
- ``"int8-dot"``: ``torch._int_mm`` (torchao's dynamic int8) needs an int8 dot-product instruction: AVX-512 VNNI,
  AVX-VNNI, AMX, ARM dotprod or i8mm (``helpers.cpu.has_int8_dot``). Without one, oneDNN's x86 AVX2 path sums pairs
  of u8 x s8 products into a saturating int16 (``vpmaddubsw``), so full-range int8 operands give wrong sums. fbgemm,
  oneDNN's quantized Linear, ONNX Runtime and OpenVINO have AVX2 int8 kernels of their own, with 7-bit options
  against the same overflow, and need nothing.

``missing_capability(route)`` reads the flags of ``helpers.cpu.features()`` and says why a route would be
slow or wrong here, or returns None; the bench skips such a route with that reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence, get_args

import torch

from .. import cpu, models
from ..models import INPUT_NAMES

#: The names a ``Route`` may use, in one place; ``Route`` refuses any other.
Capability = Literal["bf16", "int8-dot"]
Precision = Literal["fp32", "bf16", "int8 dynamic", "int8 weight-only", "int8 static"]
Family = Literal["baseline", "bf16", "torch.ao eager", "torchao", "pt2e", "onnxruntime", "openvino"]

#: What each capability needs, in words (the reason a route is skipped without it).
CAPABILITIES = {
    "bf16": "native bf16 arithmetic (avx512_bf16, amx_bf16 or ARM bf16 flag): without it bf16 matmuls are "
            "emulated or run in generic code, slower than fp32",
    "int8-dot": "an int8 dot-product instruction (avx512_vnni, avx_vnni, amx_int8, or ARM asimddp or i8mm flag): "
                "without one, torch._int_mm's x86 path adds u8 x s8 pairs into a saturating int16 (vpmaddubsw), so "
                "full-range int8 operands give wrong sums (torchao's reduce_range=True avoids it; not benched here)",
}


class RouteUnavailable(RuntimeError):
    """A route cannot be built on this stack (a missing helper or package); recorded as a failure row."""


@dataclass
class Context:
    """What every builder gets: the fp32 classifier, its tokenizer, the sequence length it was trained at, and a
    few training texts for calibration (static int8 needs them; the test split is never used for calibration).
    ``train`` is the whole train split (``helpers.data.Split``), for a route whose recommended calibration needs
    more sentences than ``calibration_texts`` holds (NNCF's 300); None: ``calibration_texts`` only."""
    model: torch.nn.Module
    tokenizer: object
    max_len: int
    calibration_texts: Sequence[str] = ()
    workdir: Path | None = None
    train: object | None = None

    def encode(self, texts: Sequence[str], seq: int) -> dict[str, torch.Tensor]:
        enc = models.encode(self.tokenizer, texts, seq)
        return {k: enc[k] for k in INPUT_NAMES if k in enc}


@dataclass
class Built:
    forward: Callable[[dict], torch.Tensor]
    size_bytes: int
    build_seconds: float = 0.0
    notes: str = ""
    keep: list = field(default_factory=list)  # objects that must outlive the forward (sessions, models)


def is_int8_precision(precision: str) -> bool:
    """Whether a route's ``precision`` ("int8 dynamic", "int8 weight-only", "int8 static", ...) is an int8 one."""
    return precision.startswith("int8")


@dataclass(frozen=True, kw_only=True)
class Route:
    """One way to run the classifier. Built with keyword arguments only: ``Route(name=..., build=..., ...)``.
    ``needs``: the ``CAPABILITIES`` without which the route has no fast kernel (it is skipped there)."""
    name: str
    family: Family
    precision: Precision
    compiled: bool    # uses torch.compile (slow first call; skipped by --quick)
    build: Callable[[Context], Built]
    description: str
    needs: tuple[Capability, ...] = ()

    def __post_init__(self):
        for what, value, allowed in (("family", self.family, Family), ("precision", self.precision, Precision),
                                     *(("capability", need, Capability) for need in self.needs)):
            if value not in get_args(allowed):
                raise ValueError(f"route {self.name!r}: unknown {what} {value!r}; known: {list(get_args(allowed))} "
                                 "(helpers.bench.route_core)")

    @property
    def is_int8(self) -> bool:
        return is_int8_precision(self.precision)


#: How each capability is read from a ``helpers.cpu.features()`` mapping.
CAPABILITY_CHECKS = {"bf16": cpu.has_native_bf16, "int8-dot": cpu.has_int8_dot}


def has_capability(capability: str, features: Mapping[str, object]) -> bool:
    """Whether the CPU described by ``features`` (``helpers.cpu.features()``) has ``capability``."""
    if capability not in CAPABILITY_CHECKS:
        raise ValueError(f"unknown capability {capability!r}; known: {sorted(CAPABILITIES)}")
    return CAPABILITY_CHECKS[capability](features)


def missing_capability(route: Route, features: Mapping[str, object] | None = None) -> str | None:
    """Why ``route`` would be slow or wrong on this CPU (the first of its ``needs`` the CPU lacks), or None."""
    features = cpu.features() if features is None else features
    for capability in route.needs:
        if not has_capability(capability, features):
            return f"this CPU lacks {CAPABILITIES[capability]}"
    return None


def given(obj):
    """The object itself, or what a zero-argument function (or class) returns when ``obj`` is one."""
    return obj() if callable(obj) else obj


def logits_of(out) -> torch.Tensor:
    """The float logits of a model's output (a ``ModelOutput``, a dict or a tuple)."""
    logits = out.logits if hasattr(out, "logits") else (out["logits"] if isinstance(out, dict) else out[0])
    return logits.float()


def eager_forward(model) -> Callable[[dict], torch.Tensor]:
    def forward(batch):
        return logits_of(model(**batch))
    return forward


def timed(build: Callable[[Context], Built]) -> Callable[[Context], Built]:
    """A builder that records how long building took in ``Built.build_seconds``."""
    def wrapper(ctx: Context) -> Built:
        start = time.perf_counter()
        built = build(ctx)
        built.build_seconds = time.perf_counter() - start
        return built
    wrapper.__doc__ = build.__doc__
    return wrapper
