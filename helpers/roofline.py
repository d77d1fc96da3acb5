"""The roofline: how close each inference route gets to this machine's peak matmul throughput.

A speedup says route B beats route A; it does not say whether B is good. For that, compare what a route achieves
with what the hardware can do:

1. **Peak** (``measure_peak``, ``measure_peaks``): the matmul throughput PyTorch reaches on this machine, per
   precision and thread count, timed in the same run as the routes:

   - ``fp32``: ``torch.mm`` on float32 (MKL on x86);
   - ``bf16``: ``torch.mm`` on bfloat16;
   - ``int8``: the faster of ``torch._int_mm`` (int8 x int8 -> int32) and the quantized engine's GEMM
     (fbgemm's ``quantized.linear_dynamic``), both timed; ``helpers.peaks`` measures them and is re-exported here.

2. **Work** (``model_ops``): the multiply-accumulates (MACs) of one forward pass of a BERT-style classifier, counted
   from its ``transformers`` config: every ``nn.Linear`` (Q, K, V, attention output, FFN in and out, pooler,
   classifier) plus the two attention matmuls (Q @ K^T and attention @ V). 1 MAC = 2 operations; GOPs = 2 x MACs / 1e9.

3. **Achieved** (``achieved``) = GOPs / measured seconds, and its **fraction of the roofline of its own precision**
   (``roofline_fraction``). ``time_split`` turns the same numbers into time: how long the GEMMs would take at peak,
   and how much of the measured latency is everything else (activation quantization, softmax, LayerNorm, GELU,
   memory traffic, framework overhead).

Which peak a route is charged against (``peak_precision_for``): its own precision -- fp32 routes against the fp32
peak, bf16 against bf16, int8 dynamic and int8 static against int8. **int8 weight-only** routes store int8 weights
but dequantize them and multiply in the activations' precision (fp32 here), so they are charged against the fp32
peak: the precision their matmuls actually run in. Their gain is memory, not arithmetic.

Two honest caveats, printed by the numbers rather than hidden:

- The peak is what *PyTorch's* GEMM reaches. A route built on another library's kernels (ONNX Runtime's MLAS,
  OpenVINO's oneDNN) can exceed it; its fraction is then above 1 and ``TimeSplit.exceeds_peak`` is True.
- In int8 routes the attention matmuls still run in float (only the Linears are quantized). ``time_split`` can
  charge them against a second peak (``attention_peak_gops``); the attention share of the work is small at the
  course's sequence lengths (``ModelOps.breakdown`` shows it).

The peak shape (MiniLM's largest GEMM) and how a kernel without a fast path is timed on fewer rows: see
``helpers.peaks``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, NamedTuple

from .peaks import DEFAULT_SHAPE, INT8_KERNELS, PEAK_KERNELS, Peak, measure_peak, measure_peaks, peaks_table

#: Which peak each route precision (``helpers.routes.Route.precision``) is charged against, and why.
ROUTE_PEAK_PRECISION = {
    "fp32": "fp32",
    "bf16": "bf16",
    "int8 dynamic": "int8",  # int8 x int8 GEMMs, activations quantized at run time
    "int8 static": "int8",   # int8 x int8 GEMMs, activation scales fixed by calibration
    "int8 weight-only": "fp32",  # weights dequantized, the matmul runs in the activations' fp32
}


# --- work -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelOps:
    """The matmul work of one forward pass of a BERT-style classifier on a (batch x seq) input.

    ``breakdown`` gives MACs per part: ``qkv`` (query, key and value Linears), ``attention_output``, ``ffn_in``,
    ``ffn_out`` (all layers), ``pooler``, ``classifier`` and the attention matmuls ``attention_scores``
    (Q @ K^T) and ``attention_context`` (softmax(scores) @ V). Padding counts: a padded token costs the same."""
    batch: int
    seq: int
    linear_macs: int
    attention_macs: int
    breakdown: dict[str, int] = field(default_factory=dict)

    @property
    def total_macs(self) -> int:
        return self.linear_macs + self.attention_macs

    @property
    def gops(self) -> float:
        """Giga-operations of the forward pass: 2 x MACs / 1e9."""
        return 2 * self.total_macs / 1e9

    @property
    def linear_gops(self) -> float:
        return 2 * self.linear_macs / 1e9

    @property
    def attention_gops(self) -> float:
        return 2 * self.attention_macs / 1e9

    def as_dict(self) -> dict:
        return {**asdict(self), "total_macs": self.total_macs, "gops": self.gops,
                "linear_gops": self.linear_gops, "attention_gops": self.attention_gops}


def _config_value(config, name: str):
    value = getattr(config, name, None)
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"model_ops needs a BERT-style transformers config with a positive integer {name!r}; "
                         f"this config has {value!r}. Pass model.config of a BertForSequenceClassification "
                         f"(or AutoConfig.from_pretrained of a BERT checkpoint).")
    return value


def model_ops(config, batch: int, seq: int) -> ModelOps:
    """Count the MACs of one forward pass of ``BertForSequenceClassification(config)`` on ``batch`` x ``seq`` tokens.

    Per layer, per token: Q, K, V and the attention output (hidden x hidden each), FFN in (hidden x intermediate)
    and out (intermediate x hidden); per layer, per sequence and head: Q @ K^T and attention @ V
    (seq x seq x head_dim each). Once per sequence: the pooler (hidden x hidden, first token only) and the
    classifier (hidden x num_labels). Embedding lookups, LayerNorm, GELU and softmax are not matmuls: they are
    part of the "everything else" in ``time_split``.
    """
    if batch < 1 or seq < 1:
        raise ValueError(f"batch and seq must be positive, got batch={batch}, seq={seq}")
    hidden = _config_value(config, "hidden_size")
    layers = _config_value(config, "num_hidden_layers")
    heads = _config_value(config, "num_attention_heads")
    intermediate = _config_value(config, "intermediate_size")
    labels = _config_value(config, "num_labels")
    head_dim = hidden // heads
    all_heads = heads * head_dim  # BERT's all_head_size: the width of Q, K and V
    tokens = batch * seq
    parts = {
        "qkv": layers * tokens * hidden * 3 * all_heads,
        "attention_output": layers * tokens * all_heads * hidden,
        "ffn_in": layers * tokens * hidden * intermediate,
        "ffn_out": layers * tokens * intermediate * hidden,
        "pooler": batch * hidden * hidden,
        "classifier": batch * hidden * labels,
        "attention_scores": layers * batch * heads * seq * seq * head_dim,
        "attention_context": layers * batch * heads * seq * seq * head_dim,
    }
    attention = parts["attention_scores"] + parts["attention_context"]
    return ModelOps(batch, seq, sum(parts.values()) - attention, attention, parts)


# --- achieved vs peak -----------------------------------------------------------------------------------------

def _gops_of(ops: ModelOps | float) -> float:
    return ops.gops if isinstance(ops, ModelOps) else float(ops)


def achieved(ops: ModelOps | float, latency_ms: float) -> float:
    """Achieved throughput in GOP/s: the forward pass's GOPs (a ``ModelOps`` or a number) over its latency."""
    if not latency_ms > 0:
        raise ValueError(f"latency_ms must be positive, got {latency_ms!r}")
    return _gops_of(ops) / (latency_ms / 1e3)


def roofline_fraction(achieved_gops: float, peak_gops: float) -> float:
    """Achieved / peak. Above 1 means the route's kernels beat the measured PyTorch peak (see the module notes)."""
    if not peak_gops > 0:
        raise ValueError(f"peak_gops must be positive, got {peak_gops!r}; measure it with measure_peak()")
    if achieved_gops < 0:
        raise ValueError(f"achieved_gops cannot be negative, got {achieved_gops!r}")
    return achieved_gops / peak_gops


@dataclass(frozen=True)
class TimeSplit:
    """A measured latency split into the GEMMs at peak speed and everything else."""
    latency_ms: float
    linear_ms: float       # the Linears' GEMMs at peak
    attention_ms: float    # the attention matmuls at their peak
    other_ms: float        # latency - GEMMs at peak, floored at 0

    @property
    def gemm_ms(self) -> float:
        """How long the GEMMs alone would take at peak."""
        return self.linear_ms + self.attention_ms

    @property
    def gemm_share(self) -> float:
        """GEMMs at peak / measured latency (above 1 if the route beats the measured peak)."""
        return self.gemm_ms / self.latency_ms

    @property
    def other_share(self) -> float:
        return self.other_ms / self.latency_ms

    @property
    def exceeds_peak(self) -> bool:
        """True if the route ran faster than its GEMMs could at the measured peak."""
        return self.gemm_ms > self.latency_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "gemm_ms": self.gemm_ms, "gemm_share": self.gemm_share,
                "other_share": self.other_share, "exceeds_peak": self.exceeds_peak}

    def describe(self, precision: str = "its precision's") -> str:
        """One sentence built from these numbers, for a notebook to print under its table."""
        if self.exceeds_peak:
            return (f"Measured {self.latency_ms:.1f} ms, faster than the {self.gemm_ms:.1f} ms its GEMMs would "
                    f"take at the {precision} peak measured with PyTorch's GEMM: this route's kernels beat it.")
        return (f"At the {precision} peak the GEMMs would take {self.gemm_ms:.1f} ms of the {self.latency_ms:.1f} ms "
                f"measured ({self.gemm_share:.0%}); the other {self.other_ms:.1f} ms ({self.other_share:.0%}) is "
                f"everything else: activation quantization, softmax, LayerNorm, GELU, memory traffic and overhead.")


def time_split(ops: ModelOps, peak_gops: float, latency_ms: float,
               attention_peak_gops: float | None = None) -> TimeSplit:
    """Split ``latency_ms`` into the GEMMs at ``peak_gops`` and the rest.

    ``attention_peak_gops`` is the peak the attention matmuls run at (default: ``peak_gops``). For an int8 route
    pass the fp32 peak: quantizing the Linears leaves Q @ K^T and attention @ V in float."""
    if not latency_ms > 0:
        raise ValueError(f"latency_ms must be positive, got {latency_ms!r}")
    attention_peak_gops = peak_gops if attention_peak_gops is None else attention_peak_gops
    for name, value in (("peak_gops", peak_gops), ("attention_peak_gops", attention_peak_gops)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}; measure it with measure_peak()")
    linear_ms = ops.linear_gops / peak_gops * 1e3
    attention_ms = ops.attention_gops / attention_peak_gops * 1e3
    return TimeSplit(latency_ms, linear_ms, attention_ms, max(0.0, latency_ms - linear_ms - attention_ms))


# --- the bench record -----------------------------------------------------------------------------------------

def peak_precision_for(route_precision: str) -> str:
    """The peak a route is charged against, from its precision string (``ROUTE_PEAK_PRECISION``)."""
    try:
        return ROUTE_PEAK_PRECISION[route_precision]
    except KeyError:
        raise ValueError(f"unknown route precision {route_precision!r}; known: {sorted(ROUTE_PEAK_PRECISION)}. "
                         f"Add it to helpers.roofline.ROUTE_PEAK_PRECISION with the precision its matmuls run in."
                         ) from None


def point_label(batch: int, seq: int, threads: int | None = None) -> str:
    """"b32 s128" for the model's work at a (batch, seq); "b32 s128 t1" for a timing (as ``helpers.bench`` labels)."""
    label = f"b{batch} s{seq}"
    return label if threads is None else f"{label} t{threads}"


class RouteLatencies(NamedTuple):
    """One route's precision string and its latency medians (ms) per (batch, seq, threads)."""
    precision: str
    latency_ms: Mapping[tuple[int, int, int], float]


def latencies_from_rows(rows: Iterable[Mapping]) -> dict[tuple[int, int, int], float]:
    """``{(batch, seq, threads): median_ms}`` from latency rows with those keys (the bench's ``row["latency"]``)."""
    return {(r["batch"], r["seq"], r["threads"]): r["median_ms"] for r in rows}


def roofline_record(peaks: Iterable[Peak] | Mapping, ops_by_point: Mapping[tuple[int, int], ModelOps],
                    route_latencies: Mapping[str, RouteLatencies | tuple]) -> dict:
    """The ``roofline`` object of the bench results JSON, from measured peaks, op counts and route latencies.

    - ``peaks``: ``measure_peaks()``'s list (or ``{precision: {threads: GOP/s}}``);
    - ``ops_by_point``: ``{(batch, seq): model_ops(config, batch, seq)}``;
    - ``route_latencies``: ``{route name: (precision string, {(batch, seq, threads): median ms})}``, e.g.
      ``{"dynamic-int8-x86": ("int8 dynamic", {(32, 128, 1): 95.0})}`` (``latencies_from_rows`` builds the
      inner mapping from the bench's latency rows).

    Returns plain JSON-ready data::

        {"peaks": {precision: {threads: GOP/s}},            # threads as strings, e.g. "1"
         "peak_measurements": [Peak.as_dict(), ...],         # only when Peak objects were given
         "model_gops": {"b32 s128": GOPs},
         "routes": {route: {"b32 s128 t1": {"achieved_gops", "fraction", "precision_peak" (GOP/s),
                                            "peak_precision", "gemm_ms_at_peak", "other_ms"}}}}

    A latency at a (batch, seq) without op counts, or at a thread count without a peak, raises ``KeyError``
    naming what to measure."""
    peak_list = None if isinstance(peaks, Mapping) else list(peaks)
    table = peaks_table(peaks if peak_list is None else peak_list)
    record = {"peaks": table}
    if peak_list is not None:
        record["peak_measurements"] = [p.as_dict() for p in peak_list]
    record["model_gops"] = {point_label(b, s): ops.gops for (b, s), ops in sorted(ops_by_point.items())}
    routes: dict[str, dict] = {}
    for route, (precision, latencies) in route_latencies.items():
        which = peak_precision_for(precision)
        points = {}
        for (batch, seq, threads), median_ms in sorted(latencies.items()):
            if (batch, seq) not in ops_by_point:
                raise KeyError(f"route {route!r} has a latency at batch {batch}, seq {seq} but ops_by_point has no "
                               f"op count there; add model_ops(config, {batch}, {seq})")
            peak = table.get(which, {}).get(str(threads))
            if peak is None:
                raise KeyError(f"route {route!r} ({precision}) needs the {which} peak at {threads} threads, which "
                               f"was not measured; call measure_peaks(threads=(..., {threads}))")
            ops = ops_by_point[(batch, seq)]
            got = achieved(ops, median_ms)
            split = time_split(ops, peak, median_ms)
            points[point_label(batch, seq, threads)] = {
                "achieved_gops": got, "fraction": roofline_fraction(got, peak), "precision_peak": peak,
                "peak_precision": which, "gemm_ms_at_peak": split.gemm_ms, "other_ms": split.other_ms}
        routes[route] = points
    record["routes"] = routes
    return record


def minilm_ops(batch: int, seq: int) -> ModelOps:
    """``model_ops`` for the course's MiniLM classifier (its config from ``helpers.models.minilm_path()``)."""
    from transformers import AutoConfig

    from .models import minilm_path

    return model_ops(AutoConfig.from_pretrained(minilm_path(), local_files_only=True), batch, seq)


__all__ = ["DEFAULT_SHAPE", "INT8_KERNELS", "PEAK_KERNELS", "ROUTE_PEAK_PRECISION", "Peak", "ModelOps", "TimeSplit",
           "RouteLatencies", "measure_peak", "measure_peaks", "peaks_table", "model_ops", "minilm_ops", "achieved",
           "roofline_fraction", "time_split", "peak_precision_for", "point_label", "latencies_from_rows",
           "roofline_record"]
