"""The roofline: how close each inference route gets to this machine's ceilings, compute and memory.

A speedup says route B beats route A; it does not say whether B is good. For that, compare what a route achieves
with what the hardware can do:

1. **Ceilings** (``helpers.peaks``): the peak matmul throughput per precision and thread count, the fastest of the
   GEMM forms the model runs (``peaks.PEAK_KERNELS``), best timed in the same rounds as the routes
   (``peaks.peak_kernels``); and the memory copy bandwidth (``peaks.measure_bandwidth``).
2. **Work** (``model_ops``): the multiply-accumulates (MACs) of one forward pass of a BERT-style classifier, from
   its ``transformers`` config: every ``nn.Linear`` plus the two attention matmuls; 1 MAC = 2 operations. Bytes:
   at least the Linear weights, read once per forward (``ModelOps.linear_params`` x ``BYTES_PER_WEIGHT``).
3. **Achieved** against both roofs (``roof_point``): compute time at the peak (ops / peak) and memory time at the
   bandwidth (bytes / bandwidth); the attainable time is the larger, and the fraction is attainable / measured
   time (= achieved over the lower ceiling). Many tokens per forward are compute-bound; few (batch 1 at a short
   sequence, a decoder's token: tokens/s <= bandwidth / weight bytes per token) are memory-bound. ``time_split``
   splits a latency into the GEMMs at peak and everything else; in int8 routes the attention matmuls stay in
   float, so pass the fp32 peak as ``attention_peak_gops``.

Which peak a route is charged against (``peak_precision_for``): its own precision; **int8 weight-only** routes
dequantize and multiply in fp32, so they are charged against the fp32 peak (their gain is memory, not arithmetic).

A fraction above 1 is never clipped and never silent: ``RoofPoint.above_one_reason`` (and
``TimeSplit.above_one_reason``, and ``describe()``) say which assumption broke -- another library's faster GEMM,
a peak timed at another time or under load, a route charged against the wrong precision's peak, bytes served from
the cache rather than DRAM.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, NamedTuple

from .peaks import DEFAULT_SHAPE, INT8_KERNELS, PEAK_KERNELS, Peak, measure_peak, measure_peaks, peaks_table

#: Which peak each route precision (``helpers.bench.route_core.Route.precision``) is charged against, and why.
ROUTE_PEAK_PRECISION = {
    "fp32": "fp32",
    "bf16": "bf16",
    "int8 dynamic": "int8",  # int8 x int8 GEMMs, activations quantized at run time
    "int8 static": "int8",   # int8 x int8 GEMMs, activation scales fixed by calibration
    "int8 weight-only": "fp32",  # weights dequantized, the matmul runs in the activations' fp32
}
#: Bytes one Linear weight takes in memory, by route precision (int8 scales are a rounding error on top).
BYTES_PER_WEIGHT = {"fp32": 4, "bf16": 2, "int8 dynamic": 1, "int8 static": 1, "int8 weight-only": 1}


# --- work -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelOps:
    """The matmul work of one forward pass of a BERT-style classifier on a (batch x seq) input.

    ``breakdown`` gives MACs per part: ``qkv`` (query, key and value Linears), ``attention_output``, ``ffn_in``,
    ``ffn_out`` (all layers), ``pooler``, ``classifier`` and the attention matmuls ``attention_scores``
    (Q @ K^T) and ``attention_context`` (softmax(scores) @ V). Padding counts: a padded token costs the same.
    ``linear_params`` is the Linears' weight count: what a forward pass reads from memory at least once."""
    batch: int
    seq: int
    linear_macs: int
    attention_macs: int
    breakdown: dict[str, int] = field(default_factory=dict)
    linear_params: int = 0

    def weight_bytes(self, route_precision: str) -> int:
        """Bytes of the Linear weights stored in ``route_precision`` (``BYTES_PER_WEIGHT``)."""
        if route_precision not in BYTES_PER_WEIGHT:
            raise ValueError(f"unknown route precision {route_precision!r}; known: {sorted(BYTES_PER_WEIGHT)}. "
                             f"Add it to helpers.roofline.BYTES_PER_WEIGHT.")
        return self.linear_params * BYTES_PER_WEIGHT[route_precision]

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
    params = layers * (4 * hidden * all_heads + 2 * hidden * intermediate) + hidden * hidden + hidden * labels
    return ModelOps(batch, seq, sum(parts.values()) - attention, attention, parts, params)


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


def _why_above_one(binds: str, peak, route_precision: str | None, other_library: bool,
                   bytes_moved: float | None = None, cache_bytes: int | None = None,
                   fast_compute_ms: float | None = None, latency_ms: float | None = None) -> str:
    """Which assumption broke when a route ran faster than its roof: the most specific cause the data shows."""
    if binds == "memory":
        if cache_bytes and bytes_moved is not None and bytes_moved <= cache_bytes:
            return (f"the {bytes_moved / 1e6:.1f} MB it reads fit in the {cache_bytes / 1e6:.1f} MB last-level "
                    f"cache, so they come faster than the DRAM copy bandwidth")
        return ("the route read fewer bytes from DRAM than counted (part stayed in cache), or the bandwidth was "
                "measured at another time or under load")
    charged = ROUTE_PEAK_PRECISION.get(route_precision, route_precision)
    if route_precision and isinstance(peak, Peak) and charged != peak.precision:
        return (f"a {route_precision} route is charged against the {peak.precision} peak, but its matmuls run in "
                f"{charged}: compare it with the {charged} peak")
    if other_library:
        return "the route uses kernels faster than the measured PyTorch peak (another library's GEMM)"
    if isinstance(peak, Peak) and not peak.same_rounds_as_routes:
        return ("the peak was measured at another time than the route or under load: time both in the same "
                "rounds (helpers.peaks.peak_kernels)")
    if isinstance(peak, Peak) and fast_compute_ms is not None and fast_compute_ms <= latency_ms:
        return "within the run-to-run spread of the peak (the route is not faster than the peak's p90 speed)"
    if isinstance(peak, Peak):
        return ("the route's GEMMs ran faster than every PyTorch form timed for the peak (a kernel, layout or "
                "fusion not in helpers.peaks.PEAK_KERNELS)")
    return ("the peak was measured at another time or under load, or the route uses kernels faster than the "
            "measured PyTorch peak (another library's GEMM); pass the Peak itself to say which")


def _peak_gops(peak) -> float:
    gops = peak.gops if isinstance(peak, Peak) else peak
    if not gops > 0:
        raise ValueError(f"the peak must be positive GOP/s, got {gops!r}; measure it with helpers.peaks")
    return float(gops)


@dataclass(frozen=True)
class TimeSplit:
    """A measured latency split into the GEMMs at peak speed and everything else."""
    latency_ms: float
    linear_ms: float       # the Linears' GEMMs at peak
    attention_ms: float    # the attention matmuls at their peak
    other_ms: float        # latency - GEMMs at peak, floored at 0
    gemm_includes_activation_quantization: bool = False  # the peak's kernel quantized its own input
    above_one_reason: str | None = None  # set when the GEMMs at peak take longer than the whole route
    route_precision: str | None = None  # the route's precision string, when known: names what "else" holds

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
                    f"take at the {precision} peak ({self.gemm_share:.2f}x): {self.above_one_reason}.")
        quantizes = self.route_precision in (None, "int8 dynamic", "int8 static")  # None: not told, so named
        gemms, rest = "the GEMMs", "activation quantization, softmax" if quantizes else "softmax"
        if self.gemm_includes_activation_quantization:
            gemms, rest = "the GEMMs with their activation quantization (as the peak's kernel times it)", "softmax"
        return (f"At the {precision} peak {gemms} would take {self.gemm_ms:.1f} ms of the {self.latency_ms:.1f} ms "
                f"measured ({self.gemm_share:.0%}); the other {self.other_ms:.1f} ms ({self.other_share:.0%}) is "
                f"everything else: {rest}, LayerNorm, GELU, memory traffic and overhead.")


def time_split(ops: ModelOps, peak_gops: Peak | float, latency_ms: float, attention_peak_gops: float | None = None,
               route_precision: str | None = None, other_library: bool = False) -> TimeSplit:
    """Split ``latency_ms`` into the GEMMs at ``peak_gops`` (a ``Peak``, or its GOP/s) and the rest.

    ``attention_peak_gops`` is the peak the attention matmuls run at (default: the peak; ``route_time_split`` passes
    the fp32 peak for an int8 route). When the peak's kernel includes activation quantization
    (``quantized.linear_dynamic``), the GEMM time already holds that cost, so "everything else" does not name it.
    ``route_precision`` and ``other_library`` only sharpen the explanation of a route faster than its GEMMs at peak."""
    if not latency_ms > 0:
        raise ValueError(f"latency_ms must be positive, got {latency_ms!r}")
    peak, peak_gops = peak_gops, _peak_gops(peak_gops)
    attention_peak_gops = peak_gops if attention_peak_gops is None else attention_peak_gops
    if not attention_peak_gops > 0:
        raise ValueError(f"attention_peak_gops must be positive, got {attention_peak_gops!r}; measure it with "
                         f"helpers.peaks")
    linear_ms = ops.linear_gops / peak_gops * 1e3
    attention_ms = ops.attention_gops / attention_peak_gops * 1e3
    includes = isinstance(peak, Peak) and peak.includes_activation_quantization
    reason = None
    if linear_ms + attention_ms > latency_ms:
        fast = (ops.linear_gops / peak.gops_p90 * 1e3 + attention_ms) if isinstance(peak, Peak) else None
        reason = _why_above_one("compute", peak, route_precision, other_library, fast_compute_ms=fast,
                                latency_ms=latency_ms)
    return TimeSplit(latency_ms, linear_ms, attention_ms, max(0.0, latency_ms - linear_ms - attention_ms),
                     includes, reason, route_precision)


@dataclass(frozen=True)
class RoofPoint:
    """One measured latency against both roofs: compute (ops at the peak) and memory (bytes at the bandwidth)."""
    latency_ms: float
    compute_ms: float          # ops / peak
    memory_ms: float | None    # bytes moved / bandwidth (None: no bandwidth roof given)
    above_one_reason: str | None = None  # set when fraction > 1: which assumption broke

    @property
    def attainable_ms(self) -> float:
        """The fastest the roofs allow: the larger of compute and memory time."""
        return max(self.compute_ms, self.memory_ms or 0.0)

    @property
    def binds(self) -> str:
        """Which roof is lower for this point: "compute" or "memory"."""
        return "memory" if (self.memory_ms or 0.0) > self.compute_ms else "compute"

    @property
    def fraction(self) -> float:
        """Achieved performance over the lower ceiling = attainable / measured time (never clipped)."""
        return self.attainable_ms / self.latency_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "attainable_ms": self.attainable_ms, "binds": self.binds, "fraction": self.fraction}

    def describe(self) -> str:
        memory = "no memory roof" if self.memory_ms is None else f"memory {self.memory_ms:.2f} ms"
        text = (f"measured {self.latency_ms:.2f} ms; roofs: compute {self.compute_ms:.2f} ms, {memory}; "
                f"{self.binds}-bound, {self.fraction:.0%} of the attainable")
        return text if self.above_one_reason is None else f"{text} -- above 1 because {self.above_one_reason}"


def roof_point(ops: ModelOps | float, bytes_moved: float | None, latency_ms: float, peak: Peak | float,
               bandwidth: float | None = None, route_precision: str | None = None, other_library: bool = False,
               cache_bytes: int | None = None, attention_peak: Peak | float | None = None) -> RoofPoint:
    """Place one measured latency under the compute and memory roofs.

    ``ops``: a ``ModelOps`` or GOPs; ``bytes_moved``: bytes read and written per call, at least the weights once
    (``ModelOps.weight_bytes``); ``peak``: a ``Peak`` or GOP/s; ``bandwidth``: bytes/s
    (``peaks.measure_bandwidth``), None for the compute roof alone. ``route_precision``, ``other_library`` (the
    route runs another library's kernels) and ``cache_bytes`` (``peaks.last_level_cache_bytes()``) let a
    fraction above 1 name its cause. ``attention_peak`` (with a ``ModelOps``): the peak the attention matmuls
    run at, when it is not ``peak`` (an int8 route's attention stays in float)."""
    if not latency_ms > 0:
        raise ValueError(f"latency_ms must be positive, got {latency_ms!r}")
    compute_ms = _gops_of(ops) / _peak_gops(peak) * 1e3
    if attention_peak is not None and isinstance(ops, ModelOps):
        compute_ms = (ops.linear_gops / _peak_gops(peak) + ops.attention_gops / _peak_gops(attention_peak)) * 1e3
    memory_ms = None
    if bandwidth is not None:
        if not bandwidth > 0 or bytes_moved is None or bytes_moved < 0:
            raise ValueError(f"a memory roof needs bandwidth > 0 bytes/s and bytes_moved >= 0, got {bandwidth!r} "
                             f"and {bytes_moved!r}; measure it with helpers.peaks.measure_bandwidth()")
        memory_ms = bytes_moved / bandwidth * 1e3
    point = RoofPoint(latency_ms, compute_ms, memory_ms)
    if point.fraction <= 1.0:
        return point
    fast = compute_ms * peak.gops / peak.gops_p90 if isinstance(peak, Peak) else None
    reason = _why_above_one(point.binds, peak, route_precision, other_library, bytes_moved, cache_bytes, fast,
                            latency_ms)
    return RoofPoint(latency_ms, compute_ms, memory_ms, reason)


# --- the bench record -----------------------------------------------------------------------------------------

def peak_precision_for(route_precision: str) -> str:
    """The peak a route is charged against, from its precision string (``ROUTE_PEAK_PRECISION``)."""
    try:
        return ROUTE_PEAK_PRECISION[route_precision]
    except KeyError:
        raise ValueError(f"unknown route precision {route_precision!r}; known: {sorted(ROUTE_PEAK_PRECISION)}. "
                         f"Add it to helpers.roofline.ROUTE_PEAK_PRECISION with the precision its matmuls run in."
                         ) from None


def route_time_split(ops: ModelOps, peaks: Mapping, latency_ms: float, route_precision: str,
                     other_library: bool = False) -> TimeSplit:
    """``time_split`` for a route: its Linears at its precision's peak (``peaks``: ``{precision: Peak or GOP/s}`` at
    one thread count); an int8 route's attention matmuls stay in float, so they are charged at the fp32 peak."""
    which = peak_precision_for(route_precision)
    return time_split(ops, peaks[which], latency_ms, _peak_gops(_attention_peak(peaks, which)), route_precision,
                      other_library)


def _attention_peak(peaks: Mapping, which: str):
    return peaks["fp32"] if which == "int8" and "fp32" in peaks else peaks[which]


def point_label(batch: int, seq: int, threads: int | None = None) -> str:
    """"b32 s128" for the model's work at a (batch, seq); "b32 s128 t1" for a timing (as ``helpers.bench`` labels)."""
    label = f"b{batch} s{seq}"
    return label if threads is None else f"{label} t{threads}"


class RouteLatencies(NamedTuple):
    """One route's precision string, its latency medians (ms) per (batch, seq, threads), and whether it runs
    another library's kernels (ONNX Runtime, OpenVINO: the PyTorch peak is then no ceiling for it)."""
    precision: str
    latency_ms: Mapping[tuple[int, int, int], float]
    other_library: bool = False


def latencies_from_rows(rows: Iterable[Mapping]) -> dict[tuple[int, int, int], float]:
    """``{(batch, seq, threads): median_ms}`` from latency rows with those keys (the bench's ``row["latency"]``)."""
    return {(r["batch"], r["seq"], r["threads"]): r["median_ms"] for r in rows}


def roofline_record(peaks: Iterable[Peak] | Mapping, ops_by_point: Mapping[tuple[int, int], ModelOps],
                    route_latencies: Mapping[str, RouteLatencies | tuple], bandwidth: float | None = None,
                    cache_bytes: int | None = None) -> dict:
    """The ``roofline`` object of the bench results JSON, from measured peaks, op counts and route latencies.

    - ``peaks``: ``measure_peaks()``'s list (or ``{precision: {threads: GOP/s}}``);
    - ``ops_by_point``: ``{(batch, seq): model_ops(config, batch, seq)}``;
    - ``route_latencies``: ``{route name: RouteLatencies(precision string, {(batch, seq, threads): median ms})}``
      (or a plain tuple), e.g. ``{"dynamic-int8-x86": ("int8 dynamic", {(32, 128, 1): 95.0})}``
      (``latencies_from_rows`` builds the inner mapping from the bench's latency rows);
    - ``bandwidth`` (bytes/s, ``peaks.measure_bandwidth``): adds the memory roof, the route's Linear weights read
      once per forward; ``cache_bytes`` (``peaks.last_level_cache_bytes``) sharpens a fraction above 1.

    Returns plain JSON-ready data::

        {"peaks": {precision: {threads: GOP/s}},            # threads as strings, e.g. "1"
         "peak_measurements": [Peak.as_dict(), ...],         # only when Peak objects were given
         "bandwidth_bytes_s": bytes/s or None,
         "model_gops": {"b32 s128": GOPs},
         "routes": {route: {"b32 s128 t1": {"achieved_gops", "precision_peak" (GOP/s), "peak_precision",
                                            "gemm_ms_at_peak", "other_ms", RoofPoint.as_dict()'s keys:
                                            "compute_ms", "memory_ms", "attainable_ms", "binds",
                                            "fraction" (attainable / measured), "above_one_reason"}}}}

    A latency at a (batch, seq) without op counts, or at a thread count without a peak, raises ``KeyError``
    naming what to measure."""
    peak_list = None if isinstance(peaks, Mapping) else list(peaks)
    table = peaks_table(peaks if peak_list is None else peak_list)
    measured = {(p.precision, str(p.threads)): p for p in peak_list or ()}
    record = {"peaks": table}
    if peak_list is not None:
        record["peak_measurements"] = [p.as_dict() for p in peak_list]
    record["bandwidth_bytes_s"] = bandwidth
    record["model_gops"] = {point_label(b, s): ops.gops for (b, s), ops in sorted(ops_by_point.items())}
    routes: dict[str, dict] = {}
    for route, entry in route_latencies.items():
        precision, latencies, other_library = RouteLatencies(*entry)
        which = peak_precision_for(precision)
        points = {}
        for (batch, seq, threads), median_ms in sorted(latencies.items()):
            if (batch, seq) not in ops_by_point:
                raise KeyError(f"route {route!r} has a latency at batch {batch}, seq {seq} but ops_by_point has no "
                               f"op count there; add model_ops(config, {batch}, {seq})")
            gops = table.get(which, {}).get(str(threads))
            if gops is None:
                raise KeyError(f"route {route!r} ({precision}) needs the {which} peak at {threads} threads, which "
                               f"was not measured; call measure_peaks(threads=(..., {threads}))")
            at_threads = {kind: measured.get((kind, str(threads)), by_threads[str(threads)])
                          for kind, by_threads in table.items() if str(threads) in by_threads}
            ops = ops_by_point[(batch, seq)]
            weight_bytes = ops.weight_bytes(precision) if bandwidth is not None else None
            split = route_time_split(ops, at_threads, median_ms, precision, other_library)
            roof = roof_point(ops, weight_bytes, median_ms, at_threads[which], bandwidth, precision, other_library,
                              cache_bytes, _attention_peak(at_threads, which))
            points[point_label(batch, seq, threads)] = {
                "achieved_gops": achieved(ops, median_ms), "precision_peak": gops, "peak_precision": which,
                "gemm_ms_at_peak": split.gemm_ms, "other_ms": split.other_ms, **roof.as_dict()}
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
           "roofline_fraction", "time_split", "route_time_split", "peak_precision_for", "point_label",
           "latencies_from_rows", "roofline_record", "BYTES_PER_WEIGHT", "RoofPoint", "roof_point"]
