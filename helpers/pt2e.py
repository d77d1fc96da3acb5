"""Static int8 post-training quantization through ``torch.export`` and pt2e (notebook 07, part 1).

The recipe, each step a library call that the notebook first shows in a cell; these helpers wrap them afterwards
for sweeps and for ``make bench``:

1. ``model.set_attn_implementation("eager")`` (``eager_attention``): attention as plain matmuls and a softmax
   instead of one SDPA op. Not required to compile (SDPA exports and compiles too), and the default config does
   not quantize those matmuls either (see ``make_quantizer``); ``quantize_static(attention="sdpa")`` keeps SDPA.
2. ``torch.export.export(ClassifierLogits(model), (input_ids, attention_mask), strict=False)`` (``export``):
   positional inputs, logits out, **static shapes**: the program serves one (batch, seq)
   (``dynamic_shapes=True``: one program for every shape).
3. ``X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())`` (``make_quantizer``):
   activations uint8 per tensor, scales fixed from calibration (``HistogramObserver``); weights int8 per output
   channel (``PerChannelMinMaxObserver``); ``reduce_range``: 7-bit activations, for CPUs without VNNI. Variants:
   the dynamic config, Linear layers only, layers kept in fp32 with ``set_module_name_qconfig(name, None)``,
   another activation observer.
4. ``prepare_pt2e(graph_module, quantizer)`` inserts observers; ``calibrate`` runs train batches through them;
   ``observer_table`` shows what a few of them saw.
5. ``convert_pt2e(prepared)`` replaces observers by quantize/dequantize pairs with the scales they chose.
6. ``torch.compile`` through Inductor (``compile_static``), with ``torch._inductor.config.freezing = True`` set
   *globally* while the first call compiles (see ``inductor_freezing`` for why ``options={"freezing": True}`` is
   not enough), under ``torch.no_grad()``. Inductor then fuses dequantize -> linear -> quantize into oneDNN int8
   kernels (``onednn.qlinear_pointwise``) with pre-packed int8 weights.

``build_static_int8`` runs the whole recipe (the ``pt2e-x86-static`` bench route). ``smooth_ffn_output``
(``helpers.smoothquant``) is SmoothQuant by hand for the feed-forward output projections (torchao 0.18's SmoothQuant is
a ``quantize_`` prototype for its own tensor subclasses, not a pt2e pass).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from . import models

#: The two inputs the exported program takes, in order.
INPUT_NAMES = ("input_ids", "attention_mask")
#: Activation observers ``make_quantizer`` accepts: the x86 default (a histogram searched for the range with the
#: least L2 quantization error, so far outliers may be clipped) and plain running min/max (every value in range).
OBSERVERS = ("histogram", "minmax")


# --- 1-2: the model as an exportable program ------------------------------------------------------------------

class ClassifierLogits(nn.Module):
    """A Hugging Face sequence classifier as ``forward(input_ids, attention_mask) -> logits``.

    ``torch.export`` takes positional example inputs and returns plain tensors best; the classifier takes keyword
    arguments and returns a ``ModelOutput``. ``token_type_ids`` is left out: with a single sentence it is all
    zeros, which is the model's default."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


#: The prefix module names carry inside the exported program (the wrapper's attribute).
WRAPPED = "model"


def eager_attention(model: nn.Module) -> nn.Module:
    """``model.set_attn_implementation("eager")``, in place; returns the model. Attention becomes two ``matmul``
    ops and a softmax instead of one ``scaled_dot_product_attention`` op; both stay fp32 under the default
    config (``torch.matmul`` is int8-capable only with ``set_module_type_qconfig(torch.matmul, config)``)."""
    model.set_attn_implementation("eager")
    return model


def positional(batch: dict[str, torch.Tensor] | Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` from a tokenizer's dict (or a pair already in that order)."""
    if isinstance(batch, dict):
        missing = [k for k in INPUT_NAMES if k not in batch]
        if missing:
            raise KeyError(f"the batch has no {missing}; tokenize with return_tensors='pt' (helpers.models.encode)")
        return batch["input_ids"], batch["attention_mask"]
    input_ids, attention_mask = batch
    return input_ids, attention_mask


def export(model: nn.Module, example: dict[str, torch.Tensor] | Sequence[torch.Tensor], dynamic_shapes: bool = False):
    """``torch.export.export(ClassifierLogits(model), (input_ids, attention_mask), strict=False)``: non-strict
    export (Python runs normally, torch ops are traced), static shapes (the example's batch and seq). With
    ``dynamic_shapes`` the batch and sequence dimensions are symbolic instead (``torch.export.Dim``; the sequence
    up to the model's ``max_position_embeddings``), so one program serves every shape (the bench's grid)."""
    wrapped = ClassifierLogits(model).eval()
    shapes = None
    if dynamic_shapes:
        from torch.export import Dim

        longest = getattr(getattr(model, "config", None), "max_position_embeddings", 512)
        batch, seq = Dim("batch", min=1, max=1024), Dim("seq", min=2, max=longest)
        shapes = ({0: batch, 1: seq}, {0: batch, 1: seq})
    with torch.no_grad():
        return torch.export.export(wrapped, positional(example), dynamic_shapes=shapes, strict=False)


# --- 3: the quantizer -------------------------------------------------------------------------------------------

def quantization_config(dynamic: bool = False, observer: str = "histogram", reduce_range: bool = False):
    """``get_default_x86_inductor_quantization_config(is_dynamic=dynamic, reduce_range=reduce_range)``, with the
    activation observer swapped for ``MinMaxObserver`` when ``observer="minmax"`` (static only: a dynamic config
    has no observer to swap; its activation scale is computed on every call).

    ``reduce_range=True`` quantizes activations to 7 bits (0..127). torchao advises it for CPUs without VNNI
    (``helpers.cpu.has_int8_dot``): there oneDNN's int8 GEMM multiplies u8 x s8 pairs with ``vpmaddubsw``, which
    adds two products into a *saturating* int16, so with 8-bit activations the compiled program can drift from what
    the converted graph describes. Whether the lost bit or the occasional saturation costs more depends on the model:
    measure both on validation. The default is torchao's, 8 bits."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.observer import MinMaxObserver

    if observer not in OBSERVERS:
        raise ValueError(f"unknown observer {observer!r}; choose from {OBSERVERS}")
    config = xiq.get_default_x86_inductor_quantization_config(is_dynamic=dynamic, reduce_range=reduce_range)
    if observer == "histogram":
        return config
    if dynamic:
        raise ValueError("the dynamic config measures each batch at run time and has no observer to choose; "
                         "use observer='histogram' (the default) with dynamic=True")
    # prepare_pt2e passes the spec's dtype, quant_min and quant_max to the observer it constructs
    spec = dataclasses.replace(config.input_activation,
                               observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2 ** -12))
    return dataclasses.replace(config, input_activation=spec, output_activation=spec)


def make_quantizer(dynamic: bool = False, observer: str = "histogram", linear_only: bool = False,
                   keep_fp32: Iterable[str] = (), reduce_range: bool = False):
    """An ``X86InductorQuantizer``:

    - by default ``set_global(get_default_x86_inductor_quantization_config())``: the ops of its default set
      static int8: ``linear``, ``conv2d`` and element-wise ``mul`` of two same-shape tensors (in BERT: every
      Linear). ``matmul`` (attention) is int8-capable but not in the default set;
    - ``linear_only``: ``set_module_type_qconfig(nn.Linear, config)`` instead (the route's old recipe; in BERT
      the same layers);
    - ``keep_fp32``: module names of the *classifier* (``"bert.encoder.layer.0.output.dense"``) to leave in fp32,
      each with ``set_module_name_qconfig("model." + name, None)`` (the exported program wraps the classifier
      in ``ClassifierLogits``, whose attribute is ``model``);
    - ``reduce_range``: 7-bit activations, see ``quantization_config``."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    config = quantization_config(dynamic, observer, reduce_range)
    quantizer = xiq.X86InductorQuantizer()
    if linear_only:
        quantizer.set_module_type_qconfig(nn.Linear, config)
    else:
        quantizer.set_global(config)
    for name in keep_fp32:
        quantizer.set_module_name_qconfig(f"{WRAPPED}.{name}", None)
    return quantizer


# --- 4: calibration and what the observers saw --------------------------------------------------------------------

def calibration_batches(tokenizer, texts: Sequence[str], n_batches: int, batch_size: int, seq_len: int) -> list[dict]:
    """``n_batches`` full batches of ``batch_size`` texts, each padded to ``seq_len`` (a static program takes one
    shape). Take the texts from the train split: calibration is part of building the model."""
    need = n_batches * batch_size
    if n_batches < 1 or len(texts) < need:
        raise ValueError(f"{n_batches} calibration batches of {batch_size} need {need} texts, got {len(texts)}")
    return [models.encode(tokenizer, texts[i:i + batch_size], seq_len) for i in range(0, need, batch_size)]


def calibrate(prepared: torch.fx.GraphModule, batches: Sequence[dict], progress: bool = True) -> int:
    """Run each batch through the prepared (observed) program, so its observers record the activations' ranges.
    Returns the number of batches."""
    from tqdm.auto import tqdm

    with torch.no_grad():
        for batch in tqdm(batches, desc="calibrate", disable=not progress, leave=False):
            prepared(*positional(batch))
    return len(batches)


def observer_table(prepared: torch.fx.GraphModule, first: int = 6) -> list[dict]:
    """The first ``first`` observers ``prepare_pt2e`` inserted, in graph order: the graph node that feeds each,
    its type, and the min / max it has seen (per-channel weight observers: the range over all channels)."""
    from torchao.quantization.pt2e.observer import ObserverBase

    rows = []
    for node in prepared.graph.nodes:
        if node.op != "call_module":
            continue
        module = getattr(prepared, node.target)
        if not isinstance(module, ObserverBase):
            continue
        low, high = getattr(module, "min_val", None), getattr(module, "max_val", None)
        seen = low is not None and low.numel() > 0 and bool(torch.isfinite(low).all())
        source = node.args[0]
        rows.append({"observer": node.target, "observes": getattr(source, "name", str(source)),
                     "type": type(module).__name__,
                     "min seen": float(low.min()) if seen else None,
                     "max seen": float(high.max()) if seen else None})
        if len(rows) >= first:
            break
    return rows


# --- 6: compile --------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def inductor_freezing():
    """``torch._inductor.config.freezing = True`` for the block (the previous value restored afterwards), with
    ``torchao.quantization.pt2e.inductor_passes.x86`` imported (it registers the int8 fusion patterns; importing
    ``X86InductorQuantizer`` already does it, the explicit import only makes it visible).

    Why the *global* setting, not ``torch.compile(..., options={"freezing": True})``: ``options`` reach Inductor
    only, but Dynamo decides while tracing whether the module's tensors (here the int8 weights) become graph
    constants or graph inputs, and it reads the global flag (``torch._dynamo.utils.is_parameter_freezing``). With
    ``options`` alone the weights arrive as inputs: Inductor's freezing passes still rewrite
    dequantize -> linear into ``onednn.qlinear_prepack(weight)`` + ``onednn.qlinear_pointwise``, but the prepack
    can no longer be folded away at compile time, and Inductor fails on it
    (``UnsupportedOperatorException: onednn.qlinear_prepack.default``)."""
    import importlib

    import torch._inductor.config as inductor_config

    importlib.import_module("torchao.quantization.pt2e.inductor_passes.x86")  # registers the int8 fusion passes

    before = inductor_config.freezing
    inductor_config.freezing = True
    try:
        yield
    finally:
        inductor_config.freezing = before


class CompiledClassifier:
    """A compiled int8 program as ``program(batch) -> logits`` (``batch``: a tokenizer's dict or
    ``(input_ids, attention_mask)``). Every call runs under ``torch.no_grad()`` and ``inductor_freezing()``, so a
    recompilation (a new shape of a dynamic-shape program) also sees the freezing setting.

    With ``batch_size`` and ``seq_len`` it serves exactly that shape (a static-shape export): a batch with fewer
    rows is padded with copies of its first row and the extra logits dropped (static scales do not depend on the
    other rows, so padding changes nothing); another sequence length or more rows raise a ``ValueError`` naming
    both shapes, since the exported program cannot run them (a new shape would also recompile, for minutes).
    Without them (a dynamic-shape export) any shape is accepted."""

    def __init__(self, compiled, batch_size: int | None = None, seq_len: int | None = None):
        self.compiled, self.batch_size, self.seq_len = compiled, batch_size, seq_len

    @property
    def shape(self) -> tuple[int, int] | None:
        return None if self.batch_size is None else (self.batch_size, self.seq_len)

    def check(self, input_ids: torch.Tensor) -> None:
        if self.shape is None:
            return
        rows, seq = input_ids.shape
        if seq != self.seq_len or rows > self.batch_size or rows < 1:
            raise ValueError(
                f"this static int8 program was exported for batch {self.batch_size} x seq {self.seq_len}, got "
                f"batch {rows} x seq {seq}; pad every batch to seq {self.seq_len} (padding='max_length', "
                f"max_length={self.seq_len}) with at most {self.batch_size} rows, or build another program "
                f"for that shape (or one with dynamic_shapes=True)")

    def __call__(self, batch: dict[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
        input_ids, attention_mask = positional(batch)
        self.check(input_ids)
        rows = input_ids.shape[0]
        if self.shape is not None and rows < self.batch_size:
            fill = self.batch_size - rows
            input_ids = torch.cat([input_ids, input_ids[:1].expand(fill, -1)])
            attention_mask = torch.cat([attention_mask, attention_mask[:1].expand(fill, -1)])
        with inductor_freezing(), torch.no_grad():
            logits = self.compiled(input_ids, attention_mask)
        return logits[:rows].float()


def static_scorer(program, example: dict | Sequence[torch.Tensor]) -> CompiledClassifier:
    """``program`` (a converted GraphModule, or ``torch.compile`` of one, exported at ``example``'s static shape)
    as ``fn(batch) -> logits`` for ``helpers.evaluation``: a ``CompiledClassifier`` for ``example``'s (batch, seq),
    so a short last batch is padded to the exported batch size instead of failing the export's shape guard."""
    input_ids, _ = positional(example)
    return CompiledClassifier(program, *input_ids.shape)


def compile_static(converted: torch.fx.GraphModule, example: dict | Sequence[torch.Tensor],
                   dynamic_shapes: bool = False) -> CompiledClassifier:
    """``torch.compile(converted)`` under ``inductor_freezing()`` and ``torch.no_grad()``, compiled right away by
    one call with ``example`` (``torch.compile`` is lazy: the first call compiles, so it must happen inside the
    freezing setting). Returns the program for ``example``'s shape, or for any shape with ``dynamic_shapes``
    (then ``torch.compile(converted, dynamic=True)``, for a program exported with ``dynamic_shapes=True``)."""
    input_ids, attention_mask = positional(example)
    if dynamic_shapes:
        program = CompiledClassifier(torch.compile(converted, dynamic=True))
    else:
        program = CompiledClassifier(torch.compile(converted), *input_ids.shape)
    program((input_ids, attention_mask))
    return program


# --- size --------------------------------------------------------------------------------------------------------

def drop_unused_weights(converted: torch.fx.GraphModule) -> int:
    """Delete, in place, the parameters and buffers no graph node reads; return how many bytes they held.

    ``convert_pt2e`` folds each quantized weight into an int8 buffer (``_frozen_param0``, ...) that the graph
    reads, but leaves the original fp32 weight on the module as an unused parameter: saved as is, the file would
    hold both."""
    used = {node.target for node in converted.graph.nodes if node.op == "get_attr"}
    dropped = 0
    for name, tensor in list(converted.named_parameters()) + list(converted.named_buffers()):
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            delattr(converted.get_submodule(owner) if owner else converted, leaf)
            dropped += tensor.numel() * tensor.element_size()
    return dropped


def program_bytes(converted: torch.fx.GraphModule, example: dict | Sequence[torch.Tensor]) -> int:
    """Bytes of the converted model saved with ``torch.export.save`` (re-exported at ``example``'s shape, after
    ``drop_unused_weights`` on a copy): what you would ship. It holds the int8 weights of the quantized layers with
    their per-channel fp32 scales, and everything the quantizer left in fp32: the embedding tables (about half of
    MiniLM), LayerNorms, biases and any layer kept in fp32."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # deep-copying a GraphModule goes through torch's pytree specs, which warn about their own deprecated
        # ``LeafSpec`` check (a FutureWarning that prints the interpreter's path); nothing the caller can change
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                category=FutureWarning)
        path = Path(tmp) / "model.pt2"
        lean = copy.deepcopy(converted)
        drop_unused_weights(lean)
        with torch.no_grad():
            program = torch.export.export(lean, positional(example), strict=False)
        torch.export.save(program, path)
        return path.stat().st_size


# --- the whole recipe -----------------------------------------------------------------------------------------

@dataclass
class StaticInt8:
    """What ``build_static_int8`` made: the compiled program (call it with a tokenized batch), the converted
    GraphModule, its size saved with ``torch.export.save``, and how long each stage took."""
    program: CompiledClassifier
    converted: torch.fx.GraphModule
    size_bytes: int
    quantize_seconds: float
    compile_seconds: float
    calibration_batches: int

    @property
    def shape(self) -> tuple[int, int] | None:
        """The (batch, seq) the program serves; None for a dynamic-shape program."""
        return self.program.shape


def quantize_static(model: nn.Module, calibration: Sequence[dict], dynamic: bool = False,
                    observer: str = "histogram", linear_only: bool = False, keep_fp32: Iterable[str] = (),
                    reduce_range: bool = False, dynamic_shapes: bool = False, attention: str = "eager",
                    progress: bool = False) -> torch.fx.GraphModule:
    """Steps 1-5 on a copy of ``model``: eager attention (``attention="sdpa"`` keeps the model's SDPA),
    ``export`` at the first calibration batch's shape (or with symbolic shapes), ``prepare_pt2e`` with
    ``make_quantizer(dynamic, observer, linear_only, keep_fp32, reduce_range)``, ``calibrate``, ``convert_pt2e``,
    ``drop_unused_weights``. Returns the converted GraphModule (not compiled)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not calibration:
        raise ValueError("static int8 needs calibration batches "
                         "(tokenized train texts, helpers.pt2e.calibration_batches)")
    if attention not in ("eager", "sdpa"):
        raise ValueError(f"attention is 'eager' or 'sdpa', got {attention!r}")
    model = copy.deepcopy(model).eval()
    if attention == "eager":
        eager_attention(model)
    graph = export(model, calibration[0], dynamic_shapes).module()
    prepared = prepare_pt2e(graph, make_quantizer(dynamic, observer, linear_only, keep_fp32, reduce_range))
    calibrate(prepared, calibration, progress=progress)
    converted = convert_pt2e(prepared)
    drop_unused_weights(converted)  # the fp32 originals of the int8 weights
    return converted


def build_static_int8(model: nn.Module, calibration: Sequence[dict], example: dict | None = None,
                      **options) -> StaticInt8:
    """The whole pt2e recipe (the ``pt2e-x86-static`` bench route): ``quantize_static`` (``options``: ``dynamic``,
    ``observer``, ``linear_only``, ``keep_fp32``, ``reduce_range``, ``dynamic_shapes``, ``attention``,
    ``progress``), then ``compile_static``. With static shapes (the default) the program serves the shape of
    ``example`` (default: the first calibration batch), which must equal the calibration batches' shape; build
    one program per shape, or pass ``dynamic_shapes=True`` for one program that serves every shape."""
    example = example if example is not None else calibration[0]
    start = time.perf_counter()
    converted = quantize_static(model, calibration, **options)
    quantized = time.perf_counter()
    program = compile_static(converted, example, options.get("dynamic_shapes", False))
    compiled = time.perf_counter()
    return StaticInt8(program, converted, program_bytes(converted, example), quantized - start, compiled - quantized,
                      len(calibration))
