"""The course's build tooling: what only ``make`` and CI run. Notebooks never import it
(``tests/policy/test_layout.py``).

- ``run``      ``make run`` / ``make outputs``: execute every notebook headless with papermill, record wall times
- ``report``   ``build/index.html`` and ``build/timings.md`` from what the run wrote under ``build/``
- ``student``  ``make student``: learner copies with solution cells stubbed (nbconvert preprocessors), zipped
- ``bench``    ``make bench``: the bench's command line, ``build/bench/results.json`` and ``results.md``

Each is run as ``python -m tools.<name>`` from the repository root (the Makefile puts it on ``PYTHONPATH``). What
they measure and show comes from ``helpers``: ``helpers.bench`` runs the routes, ``helpers.tables`` formats.
"""
