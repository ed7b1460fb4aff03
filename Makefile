# `make run` and `make test` are the two commands a fresh clone needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test install install-test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(PY) -m diagnosis topology check data/topologies/online-boutique.yaml
	$(PY) -m diagnosis diagnose --topology data/topologies/online-boutique.yaml \
		--incident data/incidents/online-boutique-checkout.yaml

test: install-test
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
