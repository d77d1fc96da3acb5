"""Every inference route of the fine-tuned MiniLM classifier, measured in one process, in one run (notebook 06).

For each route (``helpers.routes``): size on disk, latency (median and p10-p90 spread) per grid point (batch,
sequence length, threads), the first call at each grid point timed separately (compilation happens there), test
accuracy, agreement with fp32 and the speedup over fp32 eager *measured in the same run*. A route that fails is a
row with its error message; it never stops the run.

- ``runner``   ``run_routes`` measures a list of routes on a grid and returns a ``BenchRun``; ``run_classifier``
  does it on the shared fine-tuned classifier; ``profile_ops`` shows where one call's time goes.
- ``schema``   the results as types (``BenchRun``, ``RouteResult``, ``LatencyPoint``, ``TargetVerdict``, the
  ``TARGET``), their JSON document and ``load``, which reads back what ``make bench`` wrote.
- ``reading``  table rows, the Pareto front, the target verdict and the recommendation, computed from a run.

``make bench`` (``python -m tools.bench``) writes a run to ``build/bench/results.json`` and ``results.md``.
"""

from .reading import (evaluate_target, latency_at, latency_rows, pareto_front, recommend, summary_point,
                      summary_rows)
from .runner import add_ratios, bench_route, grid, profile_ops, run_classifier, run_routes, settings_for
from .schema import (SCHEMA_VERSION, TARGET, BenchRun, LatencyPoint, Point, RouteResult, Target, TargetVerdict,
                     load)

__all__ = ["SCHEMA_VERSION", "TARGET", "BenchRun", "LatencyPoint", "Point", "RouteResult", "Target", "TargetVerdict",
           "add_ratios", "bench_route", "evaluate_target", "grid", "latency_at", "latency_rows", "load",
           "pareto_front", "profile_ops", "recommend", "run_classifier", "run_routes", "settings_for",
           "summary_point", "summary_rows"]
