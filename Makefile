# Two entry points, each doing all set-up on a fresh machine:
#   make demo   -> the main job on the embedded default model (gemma-3-270m, CPU, offline)
#   make test   -> the whole test suite (unit tests + slow tests with the real small models)
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: setup demo test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(VENV)/bin/rtune demo $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)
