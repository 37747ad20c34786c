# Two commands set up everything on a fresh Debian 12 with python3 and python3-venv:
#   make demo   - the exporter with simulated sensors on port 8000
#   make test   - the whole test suite
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python

.PHONY: demo test lint venv clean

$(VENV)/.installed: setup.py pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e . -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/ble-exporter run --simulate --config etc/ble-exporter/config.yaml --log-file logs/ble_exporter.log

test: venv
	$(VPY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check ble_exporter tests
	$(VENV)/bin/ruff format --check ble_exporter tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache logs

# --- Debian package (issue: the Debian package) ---

# --- system test (issue: real Bluetooth stack) ---
