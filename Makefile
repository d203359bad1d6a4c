# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: demo test test-all bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Installs are stamped on pyproject.toml, so a second `make test` does not reinstall.
$(VENV)/.stamp-all: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[all]'
	touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[all,dev]'
	touch $(VENV)/.stamp-all $@

demo: $(VENV)/.stamp-all
	$(VENV)/bin/tessera demo --out runs/demo

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -m "not slow and not gpu" -q

test-all: lint
	$(PY) -m pytest -m "not gpu" -q

bench: $(VENV)/.stamp-dev
	$(PY) benchmarks/flows.py

clean:
	rm -rf $(VENV) runs .pytest_cache
