"""The inference routes notebook 06 and ``make bench`` compare, one builder each.

A *route* turns the fp32 classifier into something that maps a tokenized batch to logits:

| route                    | what it does                                                                    |
|--------------------------|---------------------------------------------------------------------------------|
| ``fp32``                 | the model as trained, eager PyTorch (the baseline)                              |
| ``bf16``                 | the weights cast to bfloat16 (oneDNN uses AMX-BF16 tiles when the CPU has them)  |
| ``dynamic-int8-<engine>``| ``torch.ao.quantization.quantize_dynamic`` (deprecated API) on each engine      |
| ``torchao-da8w8[-compile]`` | ``torchao.quantize_(Int8DynamicActivationInt8WeightConfig())``, eager / compiled |
| ``torchao-da8w8-emb8-compile`` | the same, plus ``Int8WeightOnlyConfig`` on the embedding tables (per row), compiled |
| ``torchao-w8[-compile]`` | ``torchao.quantize_(Int8WeightOnlyConfig())``, eager / compiled                 |
| ``pt2e-x86-static``      | ``torch.export`` + ``X86InductorQuantizer`` (static int8) + ``torch.compile``   |
| ``ort-fp32`` / ``ort-int8[-dynamic]`` | ONNX Runtime, through ``helpers.onnx_route`` (notebook 04)       |

Each builder returns a ``Built``: ``forward(batch) -> logits`` (a float tensor), the bytes the route's model takes
on disk, and how long building took. Compiled routes compile on their first call; the bench times that call
separately from the steady state. A builder may raise: the bench records the message as data (see
``helpers.bench``).

What a builder quantizes with is passed as an object (a torchao config, an ONNX Runtime recipe) or, so that
torchao and onnxruntime are imported only when a route is built, as a function returning it.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from . import deprecations, finetune, measure
from . import engine as engine_mod

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class RouteUnavailable(RuntimeError):
    """A route cannot be built on this stack (a missing helper or package); recorded as a failure row."""


@dataclass
class Context:
    """What every builder gets: the fp32 classifier, its tokenizer, the sequence length it was trained at, and a
    few training texts for calibration (static int8 needs them; the test split is never used for calibration)."""
    model: torch.nn.Module
    tokenizer: object
    max_len: int
    calibration_texts: Sequence[str] = ()
    workdir: Path | None = None

    def encode(self, texts: Sequence[str], seq: int) -> dict[str, torch.Tensor]:
        enc = finetune.encode(self.tokenizer, texts, seq)
        return {k: enc[k] for k in INPUTS if k in enc}


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
    """One way to run the classifier. Built with keyword arguments only: ``Route(name=..., build=..., ...)``."""
    name: str
    family: str       # "baseline", "bf16", "torch.ao eager", "torchao", "pt2e", "onnxruntime"
    precision: str    # "fp32", "bf16", "int8 dynamic", "int8 weight-only", "int8 static"
    compiled: bool    # uses torch.compile (slow first call; skipped by --quick)
    build: Callable[[Context], Built]
    description: str

    @property
    def is_int8(self) -> bool:
        return is_int8_precision(self.precision)


def _given(obj):
    """The object itself, or what a zero-argument function (or class) returns when ``obj`` is one."""
    return obj() if callable(obj) else obj


def _logits(out) -> torch.Tensor:
    logits = out.logits if hasattr(out, "logits") else (out["logits"] if isinstance(out, dict) else out[0])
    return logits.float()


def _eager_forward(model) -> Callable[[dict], torch.Tensor]:
    def forward(batch):
        return _logits(model(**batch))
    return forward


def _timed(build: Callable[[Context], Built]) -> Callable[[Context], Built]:
    def wrapper(ctx: Context) -> Built:
        start = time.perf_counter()
        built = build(ctx)
        built.build_seconds = time.perf_counter() - start
        return built
    wrapper.__doc__ = build.__doc__
    return wrapper


# --- fp32 and bf16 --------------------------------------------------------------------------------------------

@_timed
def build_fp32(ctx: Context) -> Built:
    model = ctx.model.eval()
    return Built(_eager_forward(model), measure.state_dict_bytes(model))


@_timed
def build_bf16(ctx: Context) -> Built:
    """A bf16 copy of the weights. Activations run in bf16 too; on an AMX CPU oneDNN's matmuls use AMX-BF16 tiles."""
    model = copy.deepcopy(ctx.model).to(torch.bfloat16).eval()
    return Built(_eager_forward(model), measure.state_dict_bytes(model))


# --- torch.ao eager dynamic int8 --------------------------------------------------------------------------------

def dynamic_int8_builder(engine: str) -> Callable[[Context], Built]:
    @_timed
    def build(ctx: Context) -> Built:
        deprecations.silence_known()
        with engine_mod.using(engine):
            model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(ctx.model).eval(), {torch.nn.Linear},
                                                           dtype=torch.qint8)

        def forward(batch):
            with engine_mod.using(engine):
                return _logits(model(**batch))

        return Built(forward, measure.state_dict_bytes(model), notes=f"engine {engine}")
    build.__doc__ = f"torch.ao.quantization.quantize_dynamic (nn.Linear -> int8) with the {engine} engine."
    return build


# --- torchao ----------------------------------------------------------------------------------------------------

def is_embedding(module: torch.nn.Module, fqn: str = "") -> bool:
    """``filter_fn`` for ``torchao.quantize_`` that picks the embedding tables (``quantize_``'s default picks
    ``nn.Linear`` only)."""
    return isinstance(module, torch.nn.Embedding)


def int8_dynamic_config():
    """``torchao.quantization.Int8DynamicActivationInt8WeightConfig()``: int8 weights, int8 activations per token."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig

    return Int8DynamicActivationInt8WeightConfig()


def int8_weight_only_config():
    """``torchao.quantization.Int8WeightOnlyConfig()``: int8 weights, computed in floating point."""
    from torchao.quantization import Int8WeightOnlyConfig

    return Int8WeightOnlyConfig()


def torchao_builder(*, config, compiled: bool, int8_embeddings: bool = False) -> Callable[[Context], Built]:
    """A route through ``torchao.quantization.quantize_(model, config)``. ``config`` is a torchao config object, or
    a zero-argument function returning one (``int8_dynamic_config``, ``int8_weight_only_config``) so that torchao
    is imported only when the route is built.

    ``int8_embeddings`` also stores the embedding tables in int8, one scale per row (``Int8WeightOnlyConfig``
    on ``nn.Embedding``). In MiniLM the word embeddings are half of all weights, so without them the file stays
    near 0.65x fp32. Eager, each call would dequantize the whole table; compiled, inductor fuses the row lookup
    with the scale, so only the rows a batch uses are dequantized."""
    @_timed
    def build(ctx: Context) -> Built:
        import torchao.quantization as tq

        model = copy.deepcopy(ctx.model).eval()
        chosen = _given(config)
        tq.quantize_(model, chosen)
        if int8_embeddings:
            tq.quantize_(model, tq.Int8WeightOnlyConfig(), filter_fn=is_embedding)
        size = measure.state_dict_bytes(model)
        # freezing lets inductor treat the int8 weights as constants (pre-packed for the CPU kernels)
        run = torch.compile(model, dynamic=True, options={"freezing": True}) if compiled else model
        notes = type(chosen).__name__ + (" + int8 embeddings" if int8_embeddings else "")
        return Built(_eager_forward(run), size, notes=notes + (" + torch.compile" if compiled else ", eager"))
    build.__doc__ = (f"torchao.quantization.quantize_(model, config)"
                     f"{' and Int8WeightOnlyConfig on nn.Embedding' if int8_embeddings else ''}"
                     f"{' then torch.compile' if compiled else ''}.")
    return build


# --- pt2e -------------------------------------------------------------------------------------------------------

def pt2e_quantizer(linear_only: bool = True):
    """An ``X86InductorQuantizer`` with the default static config, on every op (``linear_only=False``) or only
    on ``nn.Linear`` layers (``set_module_type_qconfig``)."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    quantizer = xiq.X86InductorQuantizer()
    config = xiq.get_default_x86_inductor_quantization_config()
    if linear_only:
        quantizer.set_module_type_qconfig(torch.nn.Linear, config)
    else:
        quantizer.set_global(config)
    return quantizer


def export_for_pt2e(model, example: dict[str, torch.Tensor], dynamic: bool = True):
    """``torch.export`` the classifier with keyword inputs; ``dynamic`` makes batch and sequence symbolic so one
    compiled graph serves every shape of the bench."""
    from torch.export import Dim

    shapes = None
    if dynamic:
        batch, seq = Dim("batch", min=1, max=1024), Dim("seq", min=2, max=512)
        shapes = {k: {0: batch, 1: seq} for k in example}
    return torch.export.export(model, (), dict(example), dynamic_shapes=shapes, strict=False)


def pt2e_builder(linear_only: bool = True, dynamic: bool = True, calibration_batches: int = 4) -> Callable[[Context], Built]:
    @_timed
    def build(ctx: Context) -> Built:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        texts = list(ctx.calibration_texts)
        if not texts:
            raise ValueError("static int8 (pt2e) needs calibration texts: pass Context(calibration_texts=...)")
        example = ctx.encode(texts[:8], ctx.max_len)
        model = copy.deepcopy(ctx.model).eval()
        with torch.no_grad():
            graph = export_for_pt2e(model, example, dynamic).module()
            prepared = prepare_pt2e(graph, pt2e_quantizer(linear_only))
            per = max(1, len(texts) // calibration_batches)
            for i in range(0, len(texts), per):
                prepared(**ctx.encode(texts[i:i + per], ctx.max_len))
            converted = convert_pt2e(prepared)
        size = _exported_bytes(converted, example, dynamic)
        # Freezing folds the int8 weights into constants so inductor can pre-pack them for oneDNN (qlinear).
        compiled = torch.compile(converted, dynamic=dynamic, options={"freezing": True})
        return Built(_eager_forward(compiled), size, keep=[converted],
                     notes=f"X86InductorQuantizer ({'Linear only' if linear_only else 'global'}), freezing")
    build.__doc__ = ("torch.export -> prepare_pt2e(X86InductorQuantizer) -> calibrate -> convert_pt2e -> "
                     "torch.compile (inductor, freezing): static int8 through oneDNN.")
    return build


def _exported_bytes(graph_module, example, dynamic: bool) -> int:
    """Size of the quantized program saved with ``torch.export.save`` (int8 weights plus scales)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt2"
        program = export_for_pt2e(graph_module, example, dynamic)
        torch.export.save(program, path)
        return path.stat().st_size


# --- ONNX Runtime -----------------------------------------------------------------------------------------------

def _onnx_route():
    try:
        from . import onnx_route
    except ImportError as exc:
        raise RouteUnavailable(f"onnx_route helpers not available ({exc})") from exc
    return onnx_route


def _ort_forward(onnx_route, path: Path) -> tuple[Callable[[dict], torch.Tensor], dict]:
    """A forward that runs an ORT session with as many intra-op threads as torch currently uses, so the bench's
    thread setting (``measure.latency(threads=...)``) applies to ORT too. One session per thread count."""
    import numpy as np

    sessions: dict[int, object] = {}

    def forward(batch):
        threads = torch.get_num_threads()
        if threads not in sessions:
            sessions[threads] = onnx_route.make_session(path, threads=threads)
        session = sessions[threads]
        names = [i.name for i in session.get_inputs()]
        feeds = {n: batch[n].numpy().astype(np.int64, copy=False) for n in names}
        (logits,) = session.run(list(onnx_route.OUTPUT_NAMES), feeds)
        return torch.from_numpy(np.asarray(logits, dtype=np.float32))

    return forward, sessions


@_timed
def build_ort_fp32(ctx: Context) -> Built:
    """ONNX Runtime fp32 on the transformer-optimized graph (fused attention), graph optimizations "all"."""
    onnx_route = _onnx_route()
    optimized = onnx_route.prepare(ctx.model, ctx.tokenizer, ctx.max_len)["optimized"]
    forward, sessions = _ort_forward(onnx_route, optimized)
    return Built(forward, measure.size_on_disk(optimized), keep=[sessions], notes=optimized.name)


def best_ort_int8_recipe() -> dict:
    """``helpers.onnx_route.BEST_INT8_RECIPE``: notebook 04's pick (block-wise feed-forward, the rest dynamic)."""
    return _onnx_route().BEST_INT8_RECIPE


def dynamic_ort_int8_recipe() -> dict:
    """``helpers.onnx_route.DYNAMIC_INT8_RECIPE``: plain ``quantize_dynamic``, one activation scale per batch."""
    return _onnx_route().DYNAMIC_INT8_RECIPE


def ort_int8_builder(*, recipe) -> Callable[[Context], Built]:
    """An ORT int8 route from a ``helpers.onnx_route`` recipe (``onnx_route.build_recipe``). ``recipe`` is the
    recipe itself, or a zero-argument function returning it (``best_ort_int8_recipe``, ``dynamic_ort_int8_recipe``)
    so that onnx_route and onnxruntime are imported only when the route is built."""
    @_timed
    def build(ctx: Context) -> Built:
        onnx_route = _onnx_route()
        path = Path(onnx_route.build_recipe(_given(recipe), ctx.model, ctx.tokenizer, ctx.max_len))
        forward, sessions = _ort_forward(onnx_route, path)
        return Built(forward, measure.size_on_disk(path), keep=[sessions], notes=path.name)
    build.__doc__ = "ONNX Runtime int8 from an onnx_route recipe, on the fused graph."
    return build


# --- the registry -----------------------------------------------------------------------------------------------

def _dynamic_routes() -> list[Route]:
    return [Route(name=f"dynamic-int8-{e}", family="torch.ao eager", precision="int8 dynamic", compiled=False,
                  build=dynamic_int8_builder(e), description=f"torch.ao quantize_dynamic, {e} engine")
            for e in ("x86", "fbgemm", "onednn", "qnnpack")]


def _torchao_route(name: str, precision: str, config, compiled: bool, description: str,
                   int8_embeddings: bool = False) -> Route:
    return Route(name=name, family="torchao", precision=precision, compiled=compiled, description=description,
                 build=torchao_builder(config=config, compiled=compiled, int8_embeddings=int8_embeddings))


def all_routes() -> list[Route]:
    """Every route, in the order the bench runs them (fp32 first: the others are compared with it)."""
    return [
        Route(name="fp32", family="baseline", precision="fp32", compiled=False, build=build_fp32,
              description="PyTorch eager fp32 (the baseline)"),
        Route(name="bf16", family="bf16", precision="bf16", compiled=False, build=build_bf16,
              description="weights and activations cast to bfloat16, eager"),
        *_dynamic_routes(),
        _torchao_route("torchao-da8w8", "int8 dynamic", int8_dynamic_config, False,
                       "torchao quantize_ int8 dyn-act/int8 weight, eager"),
        _torchao_route("torchao-w8", "int8 weight-only", int8_weight_only_config, False,
                       "torchao quantize_ int8 weight-only, eager"),
        _torchao_route("torchao-da8w8-compile", "int8 dynamic", int8_dynamic_config, True,
                       "torchao int8 dyn-act/int8 weight + torch.compile"),
        _torchao_route("torchao-da8w8-emb8-compile", "int8 dynamic", int8_dynamic_config, True,
                       "torchao int8 dyn-act/int8 weight, int8 embedding tables, + torch.compile", int8_embeddings=True),
        _torchao_route("torchao-w8-compile", "int8 weight-only", int8_weight_only_config, True,
                       "torchao int8 weight-only + torch.compile"),
        Route(name="pt2e-x86-static", family="pt2e", precision="int8 static", compiled=True, build=pt2e_builder(),
              description="torch.export + X86InductorQuantizer (Linear layers) + torch.compile"),
        Route(name="ort-fp32", family="onnxruntime", precision="fp32", compiled=False, build=build_ort_fp32,
              description="ONNX Runtime fp32, fused attention"),
        Route(name="ort-int8", family="onnxruntime", precision="int8 dynamic", compiled=False,
              build=ort_int8_builder(recipe=best_ort_int8_recipe),
              description="ONNX Runtime int8, notebook 04's recipe (block-wise feed-forward, rest dynamic)"),
        Route(name="ort-int8-dynamic", family="onnxruntime", precision="int8 dynamic", compiled=False,
              build=ort_int8_builder(recipe=dynamic_ort_int8_recipe),
              description="ONNX Runtime quantize_dynamic (one activation scale per batch)"),
    ]


def registry() -> dict[str, Route]:
    return {r.name: r for r in all_routes()}


def select(names: Sequence[str] | None = None, include_compiled: bool = True) -> list[Route]:
    """Routes by name (in registry order; ``fp32`` is always included as the baseline). Unknown names raise."""
    reg = registry()
    if names:
        unknown = [n for n in names if n not in reg]
        if unknown:
            raise ValueError(f"unknown route(s) {unknown}; choose from {list(reg)}")
        wanted = set(names) | {"fp32"}
        chosen = [r for r in reg.values() if r.name in wanted]
    else:
        chosen = list(reg.values())
    return [r for r in chosen if include_compiled or not r.compiled]


def release() -> None:
    """Free what a finished route held (compiled graphs, copies of the model)."""
    gc.collect()
    with contextlib.suppress(Exception):
        torch._dynamo.reset()


# --- torch.ao.quantization -> torchao, checked on the installed versions ------------------------------------------

#: (old eager API, what it did, torchao successor as "module:attribute")
MIGRATION = (
    ("torch.ao.quantization:quantize_dynamic", "dynamic int8 nn.Linear (weights int8, activations per batch)",
     "torchao.quantization:Int8DynamicActivationInt8WeightConfig"),
    ("torch.ao.quantization:prepare", "eager static int8 (QuantStub/DeQuantStub, observers, convert)",
     "torchao.quantization.pt2e.quantize_pt2e:prepare_pt2e"),
    ("torch.ao.quantization:convert", "swap observed modules for quantized ones",
     "torchao.quantization.pt2e.quantize_pt2e:convert_pt2e"),
    ("torch.ao.quantization.quantize_fx:prepare_fx", "FX graph mode static int8",
     "torchao.quantization.pt2e.quantizer.x86_inductor_quantizer:X86InductorQuantizer"),
    ("torch.ao.quantization:prepare_qat", "quantization-aware training",
     "torchao.quantization.qat:QATConfig"),
    ("torch.ao.quantization:get_default_qconfig", "per-backend qconfig (fbgemm/qnnpack/x86)",
     "torchao.quantization.pt2e.quantizer.x86_inductor_quantizer:get_default_x86_inductor_quantization_config"),
)


def _resolve(spec: str):
    import importlib

    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def api_state(spec: str) -> str:
    """"present", "present, deprecated" or "missing (<error>)" for ``module:attribute`` on this install.

    Deprecated means marked with ``typing_extensions.deprecated`` (the ``__deprecated__`` attribute), which is how
    torch 2.13 marks the ``torch.ao.quantization`` entry points; calling one emits the DeprecationWarning."""
    try:
        obj = _resolve(spec)
    except (ImportError, AttributeError) as exc:
        return f"missing ({type(exc).__name__})"
    return "present, deprecated" if getattr(obj, "__deprecated__", None) else "present"


def migration_table() -> list[dict]:
    """``torch.ao.quantization`` eager/FX APIs and their torchao successors, each with its state on this install."""
    import torchao

    rows = []
    for old, what, new in MIGRATION:
        rows.append({"torch.ao API": old.replace(":", "."), "what it does": what,
                     f"torch {torch.__version__.split('+')[0]}": api_state(old),
                     "torchao successor": new.replace(":", "."),
                     f"torchao {torchao.__version__}": api_state(new)})
    return rows
