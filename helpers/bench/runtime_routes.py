"""The routes that export the classifier to another runtime: ONNX Runtime (``helpers.onnx_route``, notebook 04) and
OpenVINO with NNCF (``helpers.openvino_route``, notebook 06). Registered in ``helpers.bench.routes``.

Each runtime gets as many threads as torch currently uses (``torch.get_num_threads()``, which the bench sets per
grid point), with one session or compiled model per thread count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from .. import measure
from .route_core import Built, Context, RouteUnavailable, given, timed

# --- ONNX Runtime -----------------------------------------------------------------------------------------------


def _onnx_route():
    try:
        from .. import onnx_route
    except ImportError as exc:
        raise RouteUnavailable(f"onnx_route helpers not available ({exc})") from exc
    return onnx_route


def _per_thread_count(make: Callable[[int], Callable[[dict], torch.Tensor]]) -> tuple[Callable, dict]:
    """A forward that runs ``make(threads)`` for the current torch thread count, made once per count."""
    runners: dict[int, Callable] = {}

    def forward(batch):
        threads = torch.get_num_threads()
        if threads not in runners:
            runners[threads] = make(threads)
        return runners[threads](batch)

    return forward, runners


def _ort_forward(onnx_route, path: Path) -> tuple[Callable[[dict], torch.Tensor], dict]:
    """A forward that runs an ORT session (``onnx_route.make_session``) with the current torch thread count."""
    import numpy as np

    def make(threads: int):
        session = onnx_route.make_session(path, threads=threads)
        names = [i.name for i in session.get_inputs()]

        def run(batch):
            feeds = {n: batch[n].numpy().astype(np.int64, copy=False) for n in names}
            (logits,) = session.run(list(onnx_route.OUTPUT_NAMES), feeds)
            return torch.from_numpy(np.asarray(logits, dtype=np.float32))
        return run

    return _per_thread_count(make)


@timed
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
    @timed
    def build(ctx: Context) -> Built:
        onnx_route = _onnx_route()
        path = Path(onnx_route.build_recipe(given(recipe), ctx.model, ctx.tokenizer, ctx.max_len))
        forward, sessions = _ort_forward(onnx_route, path)
        return Built(forward, measure.size_on_disk(path), keep=[sessions], notes=path.name)
    build.__doc__ = "ONNX Runtime int8 from an onnx_route recipe, on the fused graph."
    return build


# --- OpenVINO ---------------------------------------------------------------------------------------------------

def _openvino_forward(xml: Path, precision: str) -> tuple[Callable[[dict], torch.Tensor], dict]:
    """``OpenVinoClassifier(compile_classifier(xml, precision, threads))`` for the current torch thread count."""
    from .. import openvino_route

    return _per_thread_count(lambda threads: openvino_route.OpenVinoClassifier(
        openvino_route.compile_classifier(xml, precision, threads=threads)))


def openvino_builder(*, precision: str, int8: bool = False) -> Callable[[Context], Built]:
    """An OpenVINO route: the fp32 IR (``openvino_route.convert_classifier``: ``ov.convert_model`` +
    ``ov.save_model(compress_to_fp16=False)``) or, with ``int8``, NNCF's static int8 IR
    (``openvino_route.quantize_classifier(..., **RECOMMENDED_NNCF)``, calibrated on train sentences only: the
    context's ``train`` split when it has one, else its ``calibration_texts``), compiled with
    ``INFERENCE_PRECISION_HINT=precision`` ("f32" or "bf16") and the bench's thread count."""
    @timed
    def build(ctx: Context) -> Built:
        from .. import openvino_route

        if int8:
            calibration = ctx.train if ctx.train is not None else list(ctx.calibration_texts)
            if not len(calibration):
                raise ValueError("OpenVINO int8 needs train sentences for NNCF: pass Context(train=splits['train']) "
                                 "or Context(calibration_texts=...)")
            settings = dict(openvino_route.RECOMMENDED_NNCF)
            settings["subset_size"] = min(settings["subset_size"], len(calibration))
            xml = openvino_route.quantize_classifier(ctx.model, ctx.tokenizer, ctx.max_len, calibration, **settings)
            notes = (f"NNCF {settings['preset']} preset, {settings['subset_size']} train sentences, SmoothQuant "
                     f"alpha {settings['smooth_quant_alpha']}; hint {precision}")
        else:
            xml = openvino_route.convert_classifier(ctx.model, ctx.tokenizer, ctx.max_len)
            notes = f"INFERENCE_PRECISION_HINT {precision}"
        forward, compiled = _openvino_forward(xml, precision)
        return Built(forward, openvino_route.model_bytes(xml), keep=[compiled], notes=notes)
    build.__doc__ = (f"OpenVINO {'NNCF int8' if int8 else 'IR'} compiled with INFERENCE_PRECISION_HINT={precision}.")
    return build
