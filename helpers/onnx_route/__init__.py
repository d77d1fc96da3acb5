"""The ONNX Runtime route: export a classifier to ONNX, optimize, quantize, and run it with ONNX Runtime.

One module per step of notebook 04 (notebooks 05 and 06 reuse them); every public name is re-exported here, so
``onnx_route.make_session`` and the like work without naming the module. Notebook 04 makes each call
(``torch.onnx.export``, ``optimize_model``, ``quant_pre_process``, ``quantize_dynamic``, ``MatMulNBitsQuantizer``,
``quantize_static``, ``InferenceSession``) once in its own cells; these helpers wrap the same calls for its sweeps and
for ``make bench``, and each docstring names the call it wraps.

- ``export``    ``export_classifier``: a Hugging Face sequence classifier to ONNX with dynamic batch and sequence
                axes (``helpers.models.LogitsOnly`` is the wrapper the exporters take); ``graph_summary``,
                ``consumers_of_first``, ``initializers`` (where a file's megabytes are).
- ``session``   ``make_session`` with explicit ``SessionOptions``; ``forward``, ``run_logits`` and ``score`` (the
                evaluation protocol on an ORT session);
                ``session_latency`` (a ``helpers.measure.Latency``) and ``score_variant`` (build, then score, one
                quantized variant).
- ``optimize``  ``optimize_bert``: ONNX Runtime's transformer optimizer; the fused-operator statistics and
                ``attention_fusion_misses`` (why attention was left unfused).
- ``quantize``  ``preprocess`` (``quant_pre_process``); ``quantize_dynamic_variant``, ``quantize_blockwise_variant``
                and ``quantize_static_variant`` (any ``CalibrationDataReader``); ``matmul_nodes`` to pick the
                ``MatMul`` nodes to include or exclude.
- ``recipes``   ``prepare`` (export, optimize and pre-process in one call), ``BEST_INT8_RECIPE`` /
                ``DYNAMIC_INT8_RECIPE``, and ``build_recipe``.

Files live under ``cache_dir()/onnx/<key>/`` (``artifact_dir``), where the key hashes the classifier's weights and
the export settings; each file is written atomically beside a sidecar of its settings (``artifact_meta``), and a
step reuses a file written with the same settings (the private ``_cache`` module). onnx and onnxruntime are
imported inside the functions that use them, so importing this package does not load them.
"""

from ._cache import OnnxRouteError, artifact_meta
from .export import (
                     EXPORTERS,
                     LEGACY_EXPORTER_WARNING,
                     OUTPUT_NAMES,
                     TORCHSCRIPT_OPSET,
                     artifact_dir,
                     consumers_of_first,
                     export_classifier,
                     graph_summary,
                     initializers,
                     model_input_names,
)
from .optimize import attention_fusion_misses, optimize_bert
from .quantize import (
                     BLOCK_SIZES,
                     BLOCKWISE_LAYERS,
                     CALIBRATION_METHODS,
                     is_ffn_matmul,
                     is_ffn_output_matmul,
                     matmul_node_name,
                     matmul_nodes,
                     preprocess,
                     quantize_blockwise_variant,
                     quantize_dynamic_variant,
                     quantize_static_variant,
)
from .recipes import (
                     BEST_INT8_RECIPE,
                     DYNAMIC_INT8_RECIPE,
                     FP32_FILE,
                     OPTIMIZED_FILE,
                     PREPROCESSED_FILE,
                     blockwise_variant_name,
                     build_recipe,
                     prepare,
                     variant_name,
)
from .session import (
                     OPT_LEVELS,
                     forward,
                     make_feeds,
                     make_session,
                     run_logits,
                     score,
                     score_variant,
                     session_latency,
                     session_threads,
)

__all__ = [
    "OnnxRouteError", "artifact_meta",
    "EXPORTERS", "LEGACY_EXPORTER_WARNING", "OUTPUT_NAMES", "TORCHSCRIPT_OPSET",
    "artifact_dir", "consumers_of_first", "export_classifier", "graph_summary", "initializers", "model_input_names",
    "attention_fusion_misses", "optimize_bert",
    "BLOCK_SIZES", "BLOCKWISE_LAYERS", "CALIBRATION_METHODS", "is_ffn_matmul", "is_ffn_output_matmul",
    "matmul_node_name", "matmul_nodes", "preprocess", "quantize_blockwise_variant", "quantize_dynamic_variant",
    "quantize_static_variant",
    "BEST_INT8_RECIPE", "DYNAMIC_INT8_RECIPE", "FP32_FILE", "OPTIMIZED_FILE", "PREPROCESSED_FILE",
    "blockwise_variant_name", "build_recipe", "prepare", "variant_name",
    "OPT_LEVELS", "forward", "make_feeds", "make_session", "run_logits", "score",
    "score_variant", "session_latency", "session_threads",
]
