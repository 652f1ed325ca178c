# Two entry points, each doing all set-up on a fresh machine:
#   make demo   -> the main job on the embedded default model (gemma-3-270m, CPU, offline)
#   make test   -> the whole test suite (unit tests + slow tests with the real small models)
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: setup browser demo test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,alpaca-eval,lm-eval]"
	touch $@

# Headless Chromium checks the HTML report and the annotate page in the tests (Playwright drives it);
# installed from Debian when we may (root + apt).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: the browser tests (report, annotate) will be skipped"

demo: setup
	$(VENV)/bin/rtune demo $(ARGS)

test: setup browser
	$(PY) -m pytest -q $(ARGS)
