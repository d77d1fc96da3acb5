"""The inference routes notebook 06 and ``make bench`` compare, one builder each.

A *route* turns the fp32 classifier into something that maps a tokenized batch to logits:

| route                    | what it does                                                                    |
|--------------------------|---------------------------------------------------------------------------------|
| ``fp32``                 | the model as trained, eager PyTorch (the baseline)                              |
| ``fp32-compile``         | the same model through ``torch.compile`` (Inductor), still fp32                 |
| ``bf16``                 | the weights cast to bfloat16 (oneDNN uses AMX-BF16 tiles when the CPU has them)  |
| ``dynamic-int8-<engine>``| ``torch.ao.quantization.quantize_dynamic`` (deprecated API) on each engine      |
| ``torchao-da8w8[-compile]`` | ``torchao.quantize_(Int8DynamicActivationInt8WeightConfig())``, eager / compiled |
| ``torchao-da8w8-emb8-compile`` | the same, plus ``Int8WeightOnlyConfig`` on the embedding tables (per row), compiled |
| ``torchao-w8[-compile]`` | ``torchao.quantize_(Int8WeightOnlyConfig())``, eager / compiled                 |
| ``pt2e-x86-static``      | ``helpers.pt2e.build_static_int8``: ``torch.export``, ``X86InductorQuantizer``, compile |
| ``ort-fp32`` / ``ort-int8[-dynamic]`` | ONNX Runtime, through ``helpers.onnx_route`` (notebook 04)       |
| ``openvino-fp32`` / ``-bf16`` / ``-int8`` | OpenVINO (f32 or bf16 hint), NNCF int8 (``helpers.openvino_route``) |

The base types (``Context``, ``Built``, ``Route``) live in ``helpers.bench.route_core``, the ONNX Runtime and
OpenVINO builders in ``helpers.bench.runtime_routes``. A route's ``needs`` names the CPU capabilities
without which it has no fast kernel (``route_core.missing_capability`` says which one is missing here).

Each builder returns a ``Built``: ``forward(batch) -> logits`` (a float tensor), the bytes the route's model takes
on disk, and how long building took. Compiled routes compile on their first call; the bench times that call
separately from the steady state. A builder may raise: the bench records the message as data (see
``helpers.bench``).

What a builder quantizes with is passed as an object (a torchao config, an ONNX Runtime recipe) or, so that
torchao and onnxruntime are imported only when a route is built, as a function returning it.
"""

from __future__ import annotations

import copy
import gc
from typing import Callable, Sequence

import torch

from .. import deprecations, measure, pt2e
from .. import engine as engine_mod
from .route_core import Built, Context, Route, eager_forward, given, logits_of, timed
from .runtime_routes import (
    best_ort_int8_recipe,
    build_ort_fp32,
    dynamic_ort_int8_recipe,
    openvino_builder,
    ort_int8_builder,
)

# --- fp32 and bf16 --------------------------------------------------------------------------------------------

@timed
def build_fp32(ctx: Context) -> Built:
    model = ctx.model.eval()
    return Built(eager_forward(model), measure.state_dict_bytes(model))


@timed
def build_fp32_compile(ctx: Context) -> Built:
    """``torch.compile(model)`` (Inductor) on the fp32 model: the compiled fp32 baseline. Compiles on the first
    call of each new shape (then with dynamic shapes, so the grid's shapes share one graph)."""
    model = ctx.model.eval()
    return Built(eager_forward(torch.compile(model)), measure.state_dict_bytes(model), notes="torch.compile, fp32")


@timed
def build_bf16(ctx: Context) -> Built:
    """A bf16 copy of the weights. Activations run in bf16 too; on an AMX CPU oneDNN's matmuls use AMX-BF16 tiles."""
    model = copy.deepcopy(ctx.model).to(torch.bfloat16).eval()
    return Built(eager_forward(model), measure.state_dict_bytes(model))


# --- torch.ao eager dynamic int8 --------------------------------------------------------------------------------

def dynamic_int8_builder(engine: str) -> Callable[[Context], Built]:
    @timed
    def build(ctx: Context) -> Built:
        with deprecations.known_silenced(), engine_mod.using(engine):
            model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(ctx.model).eval(), {torch.nn.Linear},
                                                           dtype=torch.qint8)

        def forward(batch):
            with engine_mod.using(engine):
                return logits_of(model(**batch))

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
    @timed
    def build(ctx: Context) -> Built:
        import torchao.quantization as tq

        model = copy.deepcopy(ctx.model).eval()
        chosen = given(config)
        tq.quantize_(model, chosen)
        if int8_embeddings:
            tq.quantize_(model, tq.Int8WeightOnlyConfig(), filter_fn=is_embedding)
        size = measure.state_dict_bytes(model)
        notes = type(chosen).__name__ + (" + int8 embeddings" if int8_embeddings else "")
        if not compiled:
            return Built(eager_forward(model), size, notes=notes + ", eager")
        compiled_forward = eager_forward(torch.compile(model, dynamic=True))

        def forward(batch):
            # freezing set globally while Dynamo traces (each new shape), so the int8 weights become constants that
            # Inductor can pre-pack: options={"freezing": True} would reach Inductor only (helpers.pt2e)
            with torch.no_grad(), pt2e.inductor_freezing():
                return compiled_forward(batch)
        return Built(forward, size, notes=notes + " + torch.compile (freezing)")
    build.__doc__ = (f"torchao.quantization.quantize_(model, config)"
                     f"{' and Int8WeightOnlyConfig on nn.Embedding' if int8_embeddings else ''}"
                     f"{' then torch.compile' if compiled else ''}.")
    return build


# --- pt2e -------------------------------------------------------------------------------------------------------

def pt2e_static_builder(calibration_batches: int = 2, batch_size: int = 32,
                        dynamic_shapes: bool = True) -> Callable[[Context], Built]:
    """The ``pt2e-x86-static`` route: ``helpers.pt2e.build_static_int8`` (eager attention, non-strict
    ``torch.export``, ``X86InductorQuantizer`` with the default static config, ``prepare_pt2e``, calibration on
    ``calibration_batches`` train batches of ``batch_size`` padded to ``max_len``, ``convert_pt2e``, then
    ``torch.compile`` with ``torch._inductor.config.freezing = True`` under ``torch.no_grad()``). With
    ``dynamic_shapes`` one program serves every (batch, seq) of the grid; the calibration batches take as many of
    the context's ``calibration_texts`` as fit."""
    @timed
    def build(ctx: Context) -> Built:
        from .. import pt2e

        texts = list(ctx.calibration_texts)
        if not texts:
            raise ValueError("static int8 (pt2e) needs calibration texts: pass Context(calibration_texts=...) with "
                             "train-split sentences")
        size = min(batch_size, len(texts))
        n = max(1, min(calibration_batches, len(texts) // size))
        calibration = pt2e.calibration_batches(ctx.tokenizer, texts, n, size, ctx.max_len)
        static = pt2e.build_static_int8(ctx.model, calibration, dynamic_shapes=dynamic_shapes)
        shapes = "dynamic shapes" if dynamic_shapes else f"batch {size} x seq {ctx.max_len}"
        return Built(static.program, static.size_bytes, keep=[static.converted],
                     notes=f"X86InductorQuantizer default config, {n} x {size} train sentences, {shapes}, freezing")
    build.__doc__ = pt2e_static_builder.__doc__
    return build


# --- the registry -----------------------------------------------------------------------------------------------

def _dynamic_routes() -> list[Route]:
    return [Route(name=f"dynamic-int8-{e}", family="torch.ao eager", precision="int8 dynamic", compiled=False,
                  build=dynamic_int8_builder(e), description=f"torch.ao quantize_dynamic, {e} engine")
            for e in ("x86", "fbgemm", "onednn", "qnnpack")]


def _torchao_route(name: str, precision: str, config, compiled: bool, description: str,
                   int8_embeddings: bool = False) -> Route:
    # torchao's dynamic int8 multiplies with torch._int_mm, which needs an int8 dot-product instruction to be fast
    needs = ("int8-dot",) if precision == "int8 dynamic" else ()
    return Route(name=name, family="torchao", precision=precision, compiled=compiled, description=description,
                 build=torchao_builder(config=config, compiled=compiled, int8_embeddings=int8_embeddings), needs=needs)


def _openvino_routes() -> list[Route]:
    return [Route(name="openvino-fp32", family="openvino", precision="fp32", compiled=False,
                  build=openvino_builder(precision="f32"),
                  description="OpenVINO fp32 (INFERENCE_PRECISION_HINT f32)"),
            Route(name="openvino-bf16", family="openvino", precision="bf16", compiled=False,
                  build=openvino_builder(precision="bf16"), needs=("bf16",),
                  description="OpenVINO with INFERENCE_PRECISION_HINT bf16"),
            Route(name="openvino-int8", family="openvino", precision="int8 static", compiled=False,
                  build=openvino_builder(precision="f32", int8=True),
                  description="OpenVINO int8: nncf.quantize (TRANSFORMER, RECOMMENDED_NNCF), calibrated on train")]


#: The fp32 routes "the best fp32 route of the same run" is chosen from (the fastest that ran, per grid point).
FP32_BASELINES = ("fp32", "fp32-compile", "ort-fp32", "openvino-fp32")


def all_routes() -> list[Route]:
    """Every route, in the order the bench runs them (fp32 first: the others are compared with it)."""
    return [
        Route(name="fp32", family="baseline", precision="fp32", compiled=False, build=build_fp32,
              description="PyTorch eager fp32 (the baseline)"),
        Route(name="fp32-compile", family="baseline", precision="fp32", compiled=True, build=build_fp32_compile,
              description="PyTorch fp32 through torch.compile (Inductor)"),
        Route(name="bf16", family="bf16", precision="bf16", compiled=False, build=build_bf16, needs=("bf16",),
              description="weights and activations cast to bfloat16, eager"),
        *_dynamic_routes(),
        _torchao_route("torchao-da8w8", "int8 dynamic", int8_dynamic_config, False,
                       "torchao quantize_ int8 dyn-act/int8 weight, eager"),
        _torchao_route("torchao-w8", "int8 weight-only", int8_weight_only_config, False,
                       "torchao quantize_ int8 weight-only, eager"),
        _torchao_route("torchao-da8w8-compile", "int8 dynamic", int8_dynamic_config, True,
                       "torchao int8 dyn-act/int8 weight + torch.compile"),
        _torchao_route("torchao-da8w8-emb8-compile", "int8 dynamic", int8_dynamic_config, True,
                       "torchao int8 dyn-act/int8 weight, int8 embedding tables, + torch.compile",
                       int8_embeddings=True),
        _torchao_route("torchao-w8-compile", "int8 weight-only", int8_weight_only_config, True,
                       "torchao int8 weight-only + torch.compile"),
        Route(name="pt2e-x86-static", family="pt2e", precision="int8 static", compiled=True,
              build=pt2e_static_builder(),
              description="torch.export + X86InductorQuantizer (static int8) + torch.compile with freezing"),
        Route(name="ort-fp32", family="onnxruntime", precision="fp32", compiled=False, build=build_ort_fp32,
              description="ONNX Runtime fp32, fused attention"),
        Route(name="ort-int8", family="onnxruntime", precision="int8 dynamic", compiled=False,
              build=ort_int8_builder(recipe=best_ort_int8_recipe),
              description="ONNX Runtime int8, notebook 04's recipe (block-wise feed-forward, rest dynamic)"),
        Route(name="ort-int8-dynamic", family="onnxruntime", precision="int8 dynamic", compiled=False,
              build=ort_int8_builder(recipe=dynamic_ort_int8_recipe),
              description="ONNX Runtime quantize_dynamic (one activation scale per batch)"),
        *_openvino_routes(),
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
    ("torch.ao.quantization.quantize_fx:prepare_fx", "FX graph mode static int8 (pt2e takes a Quantizer: "
     "X86InductorQuantizer on x86)", "torchao.quantization.pt2e.quantize_pt2e:prepare_pt2e"),
    ("torch.ao.quantization:prepare_qat", "quantization-aware training, static int8 (get_default_x86_inductor_"
     "quantization_config(is_qat=True))", "torchao.quantization.pt2e.quantize_pt2e:prepare_qat_pt2e"),
    ("torch.ao.quantization:prepare_qat", "quantization-aware training for quantize_ configs (notebook 07)",
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
