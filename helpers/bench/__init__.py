"""Every inference route of the fine-tuned MiniLM classifier, measured in one process, in one run (notebook 06).

For each route (``helpers.bench.routes``): size on disk, latency (median and p10-p90 spread) per grid point (batch,
sequence length, threads), the first call at each grid point timed separately (compilation happens there), the
evaluation protocol on the test split (``helpers.evaluation``: agreement with fp32 and accuracy with Wilson
intervals, McNemar's p, the one target rule), and two speedups *measured in the same run*: over fp32 eager and over
the best fp32 route (the fastest of eager, torch.compile, ONNX Runtime and OpenVINO fp32). A route that fails is a
row with its error message; a route this CPU has no fast kernel for, or one over the time budget, is a skipped row
with the reason; neither stops the run. ``ceiling`` adds the roofline: peaks by precision and threads, and each
route's fraction of its precision's peak.

- ``runner``   ``run_routes`` builds a list of routes, times them together at each grid point (``time_together``) and
  returns a ``BenchRun``; ``run_classifier`` does it on the shared fine-tuned classifier.
- ``schema``   the results as types (``BenchRun``, ``RouteResult``, ``LatencyPoint``, ``TargetVerdict``, the
  ``TARGET``), their JSON document and ``load``, which reads back what ``make bench`` wrote.
- ``reading``  table rows, the target verdict and the recommendation, computed from a run.
- ``ceiling``  the roofline object of a run and its table.

``make bench`` (``python -m tools.bench``) writes a run to ``build/bench/results.json`` and ``results.md``.
"""

from . import ceiling
from .reading import (
                      evaluate_target,
                      latency_at,
                      latency_rows,
                      recommend,
                      roofline_fraction,
                      summary_point,
                      summary_rows,
)
from .runner import (
                      OverBudget,
                      add_ratios,
                      best_fp32_routes,
                      grid,
                      measure_routes,
                      run_classifier,
                      run_routes,
                      settings_for,
                      time_together,
)
from .schema import SCHEMA_VERSION, TARGET, BenchRun, LatencyPoint, Point, RouteResult, Target, TargetVerdict, load

__all__ = ["SCHEMA_VERSION", "TARGET", "BenchRun", "LatencyPoint", "OverBudget", "Point", "RouteResult", "Target",
           "TargetVerdict", "add_ratios", "best_fp32_routes", "ceiling", "evaluate_target", "grid", "latency_at",
           "latency_rows", "load", "measure_routes", "recommend", "roofline_fraction",
           "run_classifier", "run_routes", "settings_for", "summary_point", "summary_rows", "time_together"]
