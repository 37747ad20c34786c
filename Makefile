# Two commands set up everything on a fresh Debian 12 with python3 and python3-venv:
#   make demo   - the exporter with simulated sensors on port 8000
#   make test   - the whole test suite
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian tools the tests use for real: a private D-Bus with a mock bluetoothd, promtool, tmux.
TEST_DEBS := dbus python3-dbusmock prometheus tmux

.PHONY: demo test test-deps lint venv clean

$(VENV)/.installed: setup.py pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e . -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/ble-exporter run --simulate --config etc/ble-exporter/config.yaml --log-file logs/ble_exporter.log

test: venv test-deps
	$(VPY) -m pytest -q

test-deps:
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing the Debian test tools:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

lint: venv
	$(VENV)/bin/ruff check ble_exporter tests
	$(VENV)/bin/ruff format --check ble_exporter tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache logs

# Performance figures of issue 7 (not timed tests, not run in CI); results and method: bench/results.md.
# Benchmark-only tools go into the project venv: bthome-ble, pyinstrument, py-spy (PyPI), wrk (Debian).
.PHONY: bench
bench: venv test-deps
	$(VPY) -m pip install --quiet -r bench/requirements.txt
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends wrk; }
	$(VPY) bench/run_all.py

# --- Debian package (issue: the Debian package) ---
# Built with stdeb and Debian's own Python (not a venv or pyenv one), so PATH is reset for it.
DEB_PATH := /usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
DEB_PYTHON := /usr/bin/python3
DEB_REVISION ?= 1
DEB_BUILD_DEPS := python3-stdeb python3-all python3-setuptools dh-python debhelper \
	build-essential fakeroot lintian man-db systemd-container debootstrap util-linux

.PHONY: build-deps deb deb-test lint-deb

build-deps:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DEB_BUILD_DEPS)

deb:
	PATH=$(DEB_PATH) DEB_PYTHON=$(DEB_PYTHON) DEB_REVISION=$(DEB_REVISION) packaging/build-deb.sh

# lintian on the .deb; the unit's hardening score must stay <= 1.5 ("--threshold" is x10);
# the man page must render without warnings.
lint-deb:
	PATH=$(DEB_PATH) lintian --fail-on error,warning --display-info dist/ble-exporter.deb
	@out=$$(systemd-analyze security --offline=yes --threshold=15 --no-pager debian/ble-exporter.service 2>&1); \
		rc=$$?; echo "$$out" | tail -n 1; exit $$rc
	LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l debian/ble-exporter.1 2>&1 >/dev/null | (! grep .)

deb-test: deb
	PATH=$(DEB_PATH) packaging/deb-test.sh dist/ble-exporter.deb


# --- system test (issue: real Bluetooth stack) ---
# Boots a Debian bookworm guest in qemu (TCG unless the CPU has vmx/svm) with the kernel's Bluetooth,
# virtual thermometers on btvirt and bluetoothd --experimental; installs dist/ble-exporter.deb there and
# checks it with a real Prometheus, faults and the watch view (systemtest/system_test.py says how).
# Needs root. The guest image is cached in /var/cache/ble-exporter-systemtest (SYSTEMTEST_CACHE),
# rebuilt only when systemtest/packages.txt or systemtest/build-image.sh change.
SYSTEMTEST_TOOLS := qemu-system-x86_64 debootstrap mkfs.ext4 ssh ssh-keygen tar flock
SYSTEMTEST_HOST_DEPS := qemu-system-x86 debootstrap e2fsprogs openssh-client tar util-linux

.PHONY: system-test system-test-deps system-test-image system-test-phase1

system-test-deps:
	@missing=""; for t in $(SYSTEMTEST_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "system-test: installing host tools (missing:$$missing)"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			$(SYSTEMTEST_HOST_DEPS); \
	fi

system-test-image: system-test-deps
	systemtest/build-image.sh

# Infrastructure only (no .deb): boot, virtual controllers, bleak hears them passively and actively.
system-test-phase1: system-test-deps
	systemtest/phase1.sh

system-test: system-test-deps deb
	python3 systemtest/system_test.py --deb dist/ble-exporter.deb

# The README's picture of the dashboard (issue: alerts and dashboards): the dashboard's main panels
# drawn with matplotlib (PyPI, into the venv; a doc-only tool) from the data the newest system-test
# run saved (its step 9: every dashboard query against the run's Prometheus).
.PHONY: dashboard-png
dashboard-png: venv
	$(VPY) -m pip install --quiet matplotlib
	@data=$$(ls -td /tmp/systemtest-run.*/dashboard-data.json 2>/dev/null | head -n 1); \
	if [ -z "$$data" ]; then echo "dashboard-png: no dashboard-data.json; run make system-test first" >&2; exit 1; fi; \
	$(VPY) systemtest/render_dashboard.py "$$data" monitoring/dashboard.png
