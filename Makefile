# The course's commands. `make run` and `make test` are the two the README gives.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := int8-course
# The official CPU wheel of torch may sit in a local wheel folder; pip also finds it through its own config.
WHEELS := $(wildcard /opt/wheels)
PIP_INSTALL := $(BIN)/python -m pip install $(if $(WHEELS),--find-links $(WHEELS))

# Notebooks import the helpers of this checkout, and never reach for a model hub.
export PYTHONPATH := $(CURDIR)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export INT8_COURSE_STRICT_CHECKS ?= 1

.PHONY: setup run test lab outputs bench student browser-test clean

setup: $(STAMP)  ## create .venv with the pinned dependencies, the helpers package and the course kernel

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --quiet -r requirements.txt
	$(PIP_INSTALL) --quiet --no-deps -r requirements-nodeps.txt
	$(PIP_INSTALL) --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "int8 course" >/dev/null
	touch $(STAMP)

run: setup  ## execute every notebook headless into build/ (FULL=1 for workshop settings), then build/index.html
	$(BIN)/python -m tools.run $(if $(FULL),--full) --kernel $(KERNEL)

test: setup  ## lint, unit tests, then every notebook executed by nbval in smoke mode
	$(BIN)/ruff check helpers tools tests conftest.py
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 900 -p no:cacheprovider

lab: setup  ## open JupyterLab on the course kernel
	$(BIN)/jupyter lab notebooks

outputs: setup  ## re-execute the notebooks in place to refresh their committed outputs (FULL=1: workshop settings, as committed); NB=01 for one
	$(BIN)/python -m tools.run --in-place $(if $(FULL),--full) $(if $(FORCE),--force) --kernel $(KERNEL) $(NB)

bench: setup  ## measure every inference route (notebook 06) into build/bench/; QUICK=1 for the reduced CI grid
	$(BIN)/python -m tools.bench $(if $(QUICK),--quick)

student: setup  ## student copies in build/student/ (solutions stubbed, outputs cleared) and their zip
	$(BIN)/python -m tools.student

browser-test: setup  ## notebook 01 in a real JupyterLab, driven through Debian's chromium (installed if root)
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(BIN)/python -m pytest tests/tooling/test_browser.py -v -s -p no:cacheprovider

clean:  ## remove build outputs (keeps .venv and the model cache)
	rm -rf build/notebooks build/results build/index.html build/student build/browser
