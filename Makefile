# `make run` and `make test` are the two commands a fresh clone needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test lint install install-test browser clean

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

install-test: $(VENV)/.installed-test browser

# The post-mortem report test renders HTML in Debian's headless chromium.
# Installed when missing and we can (root with apt-get); otherwise that one
# test says it was skipped, and CI (DIAGNOSIS_REQUIRE_BROWSER=1) fails it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium not installed; the browser check of the report will be skipped"; fi; }

OUT := out

run: install
	$(PY) -m diagnosis topology check data/topologies/online-boutique.yaml
	$(PY) -m diagnosis diagnose --topology data/topologies/online-boutique.yaml \
		--incident data/incidents/online-boutique-checkout.yaml
	@echo
	@echo "== Real telemetry: 12 Nezha fault injections into Online Boutique (data/telemetry) =="
	@mkdir -p $(OUT)
	$(PY) -m diagnosis import nezha data/telemetry/online-boutique/fault_list.json --out $(OUT)/nezha-windows.csv
	$(PY) -m diagnosis detect --topology data/topologies/online-boutique.yaml \
		--metrics data/telemetry/online-boutique/metric --windows $(OUT)/nezha-windows.csv \
		--lead 60s --out $(OUT)/nezha-incidents.jsonl
	$(PY) -m diagnosis score --topology data/topologies/online-boutique.yaml \
		$(OUT)/nezha-incidents.jsonl --out $(OUT)/nezha-scored.csv
	@echo
	@echo "== Logs: a Train Ticket code-level fault (ts-basic-service, return) found from its logs (data/telemetry) =="
	$(PY) -m diagnosis import nezha data/telemetry/train-ticket/fault_list.json --out $(OUT)/tt-windows.csv
	$(PY) -m diagnosis detect --topology data/topologies/train-ticket-nezha.yaml \
		--traces data/telemetry/train-ticket/trace --logs data/telemetry/train-ticket/log \
		--reference data/telemetry/train-ticket/fault-free --windows $(OUT)/tt-windows.csv \
		--lead 60s --out $(OUT)/tt-incidents.jsonl
	$(PY) -m diagnosis score --topology data/topologies/train-ticket-nezha.yaml \
		$(OUT)/tt-incidents.jsonl --out $(OUT)/tt-scored.csv --assume-fault

test: install-test lint
	$(PY) -m pytest -q

# ruff (lint and format), configured in pyproject.toml.
lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
