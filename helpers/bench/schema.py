"""What a bench run measured, as types: ``BenchRun`` holds a ``RouteResult`` per route, each with a ``LatencyPoint``
per grid ``Point``, and the ``TargetVerdict`` against ``TARGET``. ``as_dict`` gives the JSON document
(``SCHEMA_VERSION``) that ``make bench`` writes; ``from_dict`` and ``load`` read it back.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from .. import evaluation, measure
from ..paths import build_dir
from ..roofline import point_label
from . import route_core

#: 2 added the evaluation protocol's fields, the speedup over the best fp32 route, the roofline and the
#: agreement-based target; 3 times the routes together and adds the p10-p90 band of each per-round speedup. Only
#: schema 3 is read: ``make bench`` writes the file afresh each run.
SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Point:
    """One grid point: batch size, sequence length (padded), torch/ORT threads."""
    batch: int
    seq: int
    threads: int

    @property
    def label(self) -> str:
        return point_label(self.batch, self.seq, self.threads)


@dataclass(frozen=True)
class Target:
    """The course's performance target at (``batch``, ``seq``, ``threads``): the fastest int8 route that passes
    the course's one rule (``helpers.evaluation.meets_target``: agreement with fp32 >= ``min_agreement`` on the
    test split and a file at most ``max_size_ratio`` x fp32's) runs at least ``speedup`` x fp32 eager and
    ``speedup_vs_best_fp32`` x the best fp32 route of the same run."""
    batch: int = 32
    seq: int = 128
    threads: int = 1
    speedup: float = 5.0
    min_agreement: float = evaluation.TARGET_AGREEMENT
    max_size_ratio: float = evaluation.TARGET_SIZE_RATIO
    speedup_vs_best_fp32: float = 2.5

    @property
    def point(self) -> Point:
        return Point(self.batch, self.seq, self.threads)

    @property
    def band(self) -> str:
        """The fidelity rule in words, from the numbers: "agreement >= 0.99"."""
        return f"agreement >= {self.min_agreement:.2f}"


TARGET = Target()


@dataclass(frozen=True, kw_only=True)
class LatencyPoint(measure.Latency):
    """A ``measure.Latency`` (median, p10-p90, runs, threads) at one grid point, with the first call timed apart
    (that is where ``torch.compile`` compiles) and the speedups over fp32 eager and over the fastest fp32 route,
    both per round of routes timed together (median and p10-p90 of the per-round ratios)."""
    batch: int
    seq: int
    first_call_ms: float
    speedup: float | None = None
    speedup_vs_best_fp32: float | None = None
    speedup_p10: float | None = None
    speedup_p90: float | None = None
    vs_best_fp32_p10: float | None = None
    vs_best_fp32_p90: float | None = None

    @property
    def verdict_vs_best_fp32(self) -> str | None:
        """"faster" / "slower" than the fastest fp32 route only when the per-round band excludes 1."""
        if self.vs_best_fp32_p10 is None or self.vs_best_fp32_p90 is None:
            return None
        return measure.ratio_verdict(self.vs_best_fp32_p10, self.vs_best_fp32_p90)

    @classmethod
    def measured(cls, point: Point, latency: measure.Latency, first_call_ms: float) -> LatencyPoint:
        return cls(**asdict(latency), batch=point.batch, seq=point.seq, first_call_ms=first_call_ms)

    @property
    def point(self) -> Point:
        return Point(self.batch, self.seq, self.threads)

    def as_dict(self) -> dict:
        return {"batch": self.batch, "seq": self.seq, "threads": self.threads, "first_call_ms": self.first_call_ms,
                "median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "runs": self.runs,
                "spread_ms": self.spread_ms, "speedup": self.speedup,
                "speedup_vs_best_fp32": self.speedup_vs_best_fp32, "speedup_p10": self.speedup_p10,
                "speedup_p90": self.speedup_p90, "vs_best_fp32_p10": self.vs_best_fp32_p10,
                "vs_best_fp32_p90": self.vs_best_fp32_p90}


@dataclass
class RouteResult:
    """What the bench measured for one route. ``status`` is "ok", "failed" (``error`` says what was raised and
    where, ``stage`` where the run was) or "skipped" (``error`` says why: a CPU capability the route needs, or
    the time budget). Fidelity follows ``helpers.evaluation``: agreement with fp32 and accuracy on the test split
    with 95% Wilson intervals, McNemar's exact p, scored at ``eval_batch`` sentences per batch padded to
    ``max_len``; ``target_met`` / ``target_reason`` are ``evaluation.meets_target``'s verdict. ``predictions``
    (the test-set argmax), ``logits`` and ``comparison`` stay in this process and are never written to JSON."""
    route: str
    family: str
    precision: str
    compiled: bool
    description: str
    status: str = "ok"
    error: str | None = None
    stage: str | None = None
    size_bytes: int | None = None
    build_s: float | None = None
    first_call_s: float | None = None
    accuracy: float | None = None
    agreement: float | None = None
    latency: list[LatencyPoint] = field(default_factory=list)
    notes: str = ""
    size_ratio: float | None = None  # size_bytes / fp32's, this run
    accuracy_change: float | None = None  # accuracy - fp32's (a fraction, not points)
    agreement_low: float | None = None   # 95% Wilson interval of the agreement
    agreement_high: float | None = None
    accuracy_low: float | None = None    # 95% Wilson interval of the accuracy
    accuracy_high: float | None = None
    flips: int | None = None             # test sentences whose predicted class differs from fp32's
    mcnemar_p: float | None = None       # fp32 vs this route's accuracy, exact McNemar test
    eval_batch: int | None = None
    target_met: bool | None = None       # evaluation.meets_target, judged on the test split
    target_reason: str | None = None
    predictions: torch.Tensor | None = field(default=None, repr=False, compare=False, metadata={"json": False})
    logits: torch.Tensor | None = field(default=None, repr=False, compare=False, metadata={"json": False})
    comparison: evaluation.Comparison | None = field(default=None, repr=False, compare=False,
                                                     metadata={"json": False})

    @classmethod
    def of(cls, route: route_core.Route, **measured) -> RouteResult:
        return cls(route=route.name, family=route.family, precision=route.precision, compiled=route.compiled,
                   description=route.description, **measured)

    @property
    def is_int8(self) -> bool:
        return route_core.is_int8_precision(self.precision)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def record_comparison(self, comparison: evaluation.Comparison) -> None:
        """Copy an ``evaluation.compare`` result (on the test split) into the row's fields."""
        self.comparison = comparison
        self.agreement, self.agreement_low, self.agreement_high = (comparison.agreement, comparison.agreement_low,
                                                                   comparison.agreement_high)
        self.accuracy, self.accuracy_low, self.accuracy_high = (comparison.accuracy, comparison.accuracy_low,
                                                                comparison.accuracy_high)
        self.flips, self.mcnemar_p, self.eval_batch = comparison.flips, comparison.mcnemar_p, comparison.batch_size

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("json", True)}
        return {**out, "latency": [p.as_dict() for p in self.latency]}

    @classmethod
    def from_dict(cls, row: dict) -> RouteResult:
        known = {f.name for f in fields(cls) if f.metadata.get("json", True)} - {"latency"}
        points = [LatencyPoint(**{k: v for k, v in p.items() if k != "spread_ms"}) for p in row["latency"]]
        return cls(**{k: v for k, v in row.items() if k in known}, latency=points)


@dataclass(frozen=True)
class TargetVerdict:
    """Whether ``target`` was met in a run, by which route, and why (in words computed from the numbers).
    ``speedup``, ``size_ratio`` and ``accuracy_change`` are the chosen route's measurements."""
    target: Target = TARGET
    evaluated: bool = False
    met: bool = False
    route: str | None = None
    reason: str = ""
    speedup: float | None = None
    size_ratio: float | None = None
    accuracy_change: float | None = None
    speedup_vs_best_fp32: float | None = None
    agreement: float | None = None
    best_fp32_route: str | None = None

    def as_dict(self) -> dict:
        t = self.target
        return {"batch": t.batch, "seq": t.seq, "threads": t.threads, "speedup": self.speedup,
                "max_size_ratio": t.max_size_ratio, "evaluated": self.evaluated, "met": self.met,
                "route": self.route, "reason": self.reason, "size_ratio": self.size_ratio,
                "accuracy_change": self.accuracy_change, "target_speedup": t.speedup,
                "min_agreement": t.min_agreement, "target_speedup_vs_best_fp32": t.speedup_vs_best_fp32,
                "speedup_vs_best_fp32": self.speedup_vs_best_fp32, "agreement": self.agreement,
                "best_fp32_route": self.best_fp32_route}

    @classmethod
    def from_dict(cls, d: dict) -> TargetVerdict:
        target = Target(d["batch"], d["seq"], d["threads"], d["target_speedup"], d["min_agreement"],
                        d["max_size_ratio"], d["target_speedup_vs_best_fp32"])
        return cls(target, d["evaluated"], d["met"], d["route"], d["reason"], d["speedup"] if d["route"] else None,
                   d["size_ratio"], d["accuracy_change"], d["speedup_vs_best_fp32"], d["agreement"],
                   d["best_fp32_route"])


@dataclass
class BenchRun:
    """One bench run: where and how it ran, the grid, a ``RouteResult`` per route (fp32 first) and the verdict."""
    started: str
    seconds: float
    environment: dict
    settings: dict
    grid: list[Point]
    routes: list[RouteResult]
    target: TargetVerdict = field(default_factory=TargetVerdict)
    schema: int = SCHEMA_VERSION
    best_fp32: dict[str, str] = field(default_factory=dict)  # grid point label -> the fastest fp32 route there
    roofline: dict | None = None  # helpers.roofline.roofline_record, plus the peaks' kernels
    protocol: dict = field(default_factory=dict)  # the evaluation protocol's settings for this run
    isa_sensitivity: dict | None = None  # helpers.bench.isa rows ({"rows": [...]}) or {"error": ...}; make bench only

    def row(self, name: str) -> RouteResult | None:
        return next((r for r in self.routes if r.route == name), None)

    @property
    def baseline(self) -> RouteResult | None:
        """The fp32 row, if it ran."""
        return next((r for r in self.routes if r.route == "fp32" and r.ok), None)

    def as_dict(self) -> dict:
        return {"schema": self.schema, "started": self.started, "seconds": self.seconds,
                "environment": self.environment, "settings": self.settings, "grid": [asdict(p) for p in self.grid],
                "routes": [r.as_dict() for r in self.routes], "target": self.target.as_dict(),
                "protocol": self.protocol, "best_fp32": self.best_fp32, "roofline": self.roofline,
                "isa_sensitivity": self.isa_sensitivity}

    @classmethod
    def from_dict(cls, doc: dict) -> BenchRun:
        return cls(doc["started"], doc["seconds"], doc["environment"], doc["settings"],
                   [Point(**p) for p in doc["grid"]], [RouteResult.from_dict(r) for r in doc["routes"]],
                   TargetVerdict.from_dict(doc["target"]), doc["schema"], doc["best_fp32"],
                   doc["roofline"], doc["protocol"], doc["isa_sensitivity"])


def load(path: str | os.PathLike | None = None) -> BenchRun:
    """A run that ``make bench`` wrote (default ``build/bench/results.json``)."""
    path = Path(path) if path is not None else build_dir() / "bench" / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no bench results at {path}; run `make bench` (or `make bench QUICK=1`) first")
    doc = json.loads(path.read_text())
    if doc.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema {doc.get('schema')}, this code reads schema {SCHEMA_VERSION}; "
                         "rerun make bench")
    return BenchRun.from_dict(doc)
