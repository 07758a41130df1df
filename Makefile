# The two commands of the README. Everything they need is installed from here.
PYTHON ?= $(shell command -v python3.13 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint

# Other ports, say: make demo DEMO_ARGS="--port 8100 --simulator-port 8865"
demo: $(VENV)/.installed
	$(PY) manage.py demo $(DEMO_ARGS)

test: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed
