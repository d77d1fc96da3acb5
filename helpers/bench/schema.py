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

from .. import evaluation, measure, routes as routes_mod
from ..paths import build_dir

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Point:
    """One grid point: batch size, sequence length (padded), torch/ORT threads."""
    batch: int
    seq: int
    threads: int

    @property
    def label(self) -> str:
        return f"b{self.batch} s{self.seq} t{self.threads}"


@dataclass(frozen=True)
class Target:
    """The course's performance target: the fastest int8 route that keeps test accuracy within
    ``max_accuracy_drop`` of fp32's reaches ``speedup`` x fp32 eager throughput at (``batch``, ``seq``,
    ``threads``), with a file at most ``max_size_ratio`` x fp32's."""
    batch: int = 32
    seq: int = 128
    threads: int = 1
    speedup: float = 3.0
    max_accuracy_drop: float = 0.005
    max_size_ratio: float = evaluation.TARGET_SIZE_RATIO

    @property
    def point(self) -> Point:
        return Point(self.batch, self.seq, self.threads)

    @property
    def band(self) -> str:
        """The accuracy band in words, e.g. "0.5 point"."""
        points = 100 * self.max_accuracy_drop
        return f"{points:g} point" + ("" if points <= 1 else "s")


TARGET = Target()


@dataclass(frozen=True, kw_only=True)
class LatencyPoint(measure.Latency):
    """A ``measure.Latency`` (median, p10-p90, runs, threads) at one grid point, with the first call timed apart
    (that is where ``torch.compile`` compiles) and the speedup over fp32 eager at the same point in the same run."""
    batch: int
    seq: int
    first_call_ms: float
    speedup: float | None = None

    @classmethod
    def measured(cls, point: Point, latency: measure.Latency, first_call_ms: float) -> LatencyPoint:
        return cls(**asdict(latency), batch=point.batch, seq=point.seq, first_call_ms=first_call_ms)

    @property
    def point(self) -> Point:
        return Point(self.batch, self.seq, self.threads)

    def as_dict(self) -> dict:
        return {"batch": self.batch, "seq": self.seq, "threads": self.threads, "first_call_ms": self.first_call_ms,
                "median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "runs": self.runs,
                "spread_ms": self.spread_ms, "speedup": self.speedup}


@dataclass
class RouteResult:
    """What the bench measured for one route. ``status`` is "ok", "failed" (``error`` says what was raised and
    where, ``stage`` where the run was) or "skipped" (``error`` says why). ``predictions`` (the test-set argmax) is
    kept for computing agreement in this process and never written to JSON."""
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
    predictions: torch.Tensor | None = field(default=None, repr=False, compare=False, metadata={"json": False})

    @classmethod
    def of(cls, route: routes_mod.Route, **measured) -> RouteResult:
        return cls(route=route.name, family=route.family, precision=route.precision, compiled=route.compiled,
                   description=route.description, **measured)

    @property
    def is_int8(self) -> bool:
        return routes_mod.is_int8_precision(self.precision)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("json", True)}
        return {**out, "latency": [p.as_dict() for p in self.latency]}

    @classmethod
    def from_dict(cls, row: dict) -> RouteResult:
        known = {f.name for f in fields(cls)} - {"latency", "predictions"}
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

    def as_dict(self) -> dict:
        t = self.target
        return {"batch": t.batch, "seq": t.seq, "threads": t.threads, "speedup": self.speedup,
                "max_accuracy_drop": t.max_accuracy_drop, "max_size_ratio": t.max_size_ratio,
                "evaluated": self.evaluated, "met": self.met, "route": self.route, "reason": self.reason,
                "size_ratio": self.size_ratio, "accuracy_change": self.accuracy_change, "target_speedup": t.speedup}

    @classmethod
    def from_dict(cls, d: dict) -> TargetVerdict:
        target = Target(d["batch"], d["seq"], d["threads"], d.get("target_speedup", TARGET.speedup),
                        d["max_accuracy_drop"], d["max_size_ratio"])
        return cls(target, d["evaluated"], d["met"], d["route"], d["reason"], d["speedup"] if d["route"] else None,
                   d.get("size_ratio"), d.get("accuracy_change"))


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

    def row(self, name: str) -> RouteResult | None:
        return next((r for r in self.routes if r.route == name), None)

    @property
    def baseline(self) -> RouteResult | None:
        """The fp32 row, if it ran."""
        return next((r for r in self.routes if r.route == "fp32" and r.ok), None)

    def as_dict(self) -> dict:
        return {"schema": self.schema, "started": self.started, "seconds": self.seconds,
                "environment": self.environment, "settings": self.settings, "grid": [asdict(p) for p in self.grid],
                "routes": [r.as_dict() for r in self.routes], "target": self.target.as_dict()}

    @classmethod
    def from_dict(cls, doc: dict) -> BenchRun:
        return cls(doc["started"], doc["seconds"], doc["environment"], doc["settings"],
                   [Point(**p) for p in doc["grid"]], [RouteResult.from_dict(r) for r in doc["routes"]],
                   TargetVerdict.from_dict(doc["target"]), doc["schema"])


def load(path: str | os.PathLike | None = None) -> BenchRun:
    """A run that ``make bench`` wrote (default ``build/bench/results.json``)."""
    path = Path(path) if path is not None else build_dir() / "bench" / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no bench results at {path}; run `make bench` (or `make bench QUICK=1`) first")
    doc = json.loads(path.read_text())
    if doc.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema {doc.get('schema')}, this code reads {SCHEMA_VERSION}; rerun make bench")
    return BenchRun.from_dict(doc)
