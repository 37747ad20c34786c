# Two commands set up everything on a fresh Debian 12 with python3 and python3-venv:
#   make demo   - the exporter with simulated sensors on port 8000
#   make test   - the whole test suite
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# apt-get waits for another apt or dpkg (other users of this machine) instead of failing at once.
APT_GET := apt-get -o DPkg::Lock::Timeout=600
# Debian tools the tests use for real: a private D-Bus with a mock bluetoothd, promtool, tmux
# (packaging/dependencies.txt: the test tools with no PyPI name).
TEST_DEBS := $(shell /usr/bin/python3 packaging/deps.py debs test-debian-only)

.PHONY: demo test test-deps lint venv clean

$(VENV)/.installed: setup.py pyproject.toml requirements-dev.txt packaging/dependencies.txt
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
		$(SUDO) $(APT_GET) update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) $(APT_GET) install -y -qq --no-install-recommends $$missing; \
	fi

# The end-to-end test of the page at / (issue 24) in a real browser: Debian's chromium, headless, and a
# font for its screenshots. Not part of `make test` (a 100 MB download): CI runs it as its own stage.
BROWSER_DEBS := chromium fonts-dejavu-core

.PHONY: test-browser test-browser-deps
test-browser-deps:
	@missing=$$(for p in $(BROWSER_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing the browser test's Debian packages:" $$missing; \
		$(SUDO) $(APT_GET) update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) $(APT_GET) install -y -qq --no-install-recommends $$missing; \
	fi

test-browser: venv test-browser-deps
	$(VPY) -m pytest -q -m browser tests/test_page.py

lint: venv
	$(VENV)/bin/ruff check ble_exporter tests packaging/deps.py setup.py
	$(VENV)/bin/ruff format --check ble_exporter tests packaging/deps.py setup.py
	$(VENV)/bin/mypy

# The suite on an Ubuntu release's library versions, pinned from PyPI (packaging/dependencies.txt;
# packaging/pinned.sh), on the closest Python there is here (Ubuntu's own archive cannot be reached):
#   PINNED=noble     Ubuntu 24.04: pyenv's Python 3.12 on the host, in .venv-noble
#   PINNED=resolute  Ubuntu 26.04: the Python 3.14 of the Debian forky tree (as root)
# PINNED_TESTS: pytest's arguments (default: the whole suite, quietly).
PINNED ?= noble
PINNED_TESTS ?= -q
.PHONY: test-pinned
test-pinned: test-deps
ifeq ($(PINNED),resolute)
	PATH=$(DEB_PATH) packaging/in-root.sh pinned forky resolute $(PINNED_TESTS)
else
	packaging/pinned.sh $(PINNED) "$$(packaging/pinned.sh --find-python $(PINNED))" $(VENV)-$(PINNED) $(PINNED_TESTS)
endif

clean:
	rm -rf $(VENV) $(VENV)-* build dist *.egg-info .pytest_cache .mypy_cache logs

# Performance figures of issue 7 (not timed tests, not run in CI); results and method: bench/results.md.
# Benchmark-only tools go into the project venv: bthome-ble, pyinstrument, py-spy (PyPI), wrk (Debian).
# The A/B against f200936 (bench/bench_ab.py) runs both daemons on /usr/bin/python3 with the Debian
# packages the .deb depends on, installed here when missing.
BENCH_DEBS := wrk $(shell /usr/bin/python3 packaging/deps.py debs runtime-python)
.PHONY: bench
bench: venv test-deps
	$(VPY) -m pip install --quiet -r bench/requirements.txt
	@missing=$$(for p in $(BENCH_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing for the benchmarks:" $$missing; \
		$(SUDO) $(APT_GET) update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) $(APT_GET) install -y -qq --no-install-recommends $$missing; \
	fi
	$(VPY) bench/run_all.py

# --- Debian package (issue: the Debian package) ---
# Built with stdeb and Debian's own Python (not a venv or pyenv one), so PATH is reset for it.
DEB_PATH := /usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
DEB_PYTHON := /usr/bin/python3
DEB_REVISION ?= 1
# qemu-user-static and binfmt-support: the arm64 deb-test on an amd64 host.
DEB_BUILD_DEPS := python3-stdeb python3-all python3-setuptools dh-python debhelper \
	build-essential fakeroot lintian man-db systemd-container debootstrap util-linux \
	qemu-user-static binfmt-support

# Which Debian the package tests run on (packaging/roots.sh keeps a cached tree of each):
#   RELEASE  bookworm (default), trixie or forky (testing); trixie for a foreign ARCH
#   ARCH     the host's (default) or arm64 on an amd64 host (under qemu-user)
ARCH ?= $(shell dpkg --print-architecture)
RELEASE ?= $(if $(filter $(ARCH),$(shell dpkg --print-architecture)),bookworm,trixie)
DEB ?= dist/ble-exporter.deb
# The lintians the .deb must satisfy.
LINT_RELEASES := bookworm trixie forky

.PHONY: build-deps deb deb-in-tree deb-test lint-deb test-debian

build-deps:
	$(APT_GET) update -q
	DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -q --no-install-recommends $(DEB_BUILD_DEPS)

deb:
	PATH=$(DEB_PATH) DEB_PYTHON=$(DEB_PYTHON) DEB_REVISION=$(DEB_REVISION) packaging/build-deb.sh

# `make deb` as on a RELEASE host, in the cached tree of RELEASE (as root): dist/RELEASE/.
deb-in-tree:
	PATH=$(DEB_PATH) packaging/in-root.sh deb $(RELEASE) dist/$(RELEASE)

# lintian of bookworm, trixie and forky on the .deb (DEB, default dist/ble-exporter.deb): the host's
# own for the host's release, the others in cached trees; its Depends as packaging/dependencies.txt
# says, and met by every release there; the unit's hardening score must stay <= 1.5 ("--threshold"
# is x10); the man page must render without warnings.
lint-deb:
	for r in $(LINT_RELEASES); do PATH=$(DEB_PATH) packaging/in-root.sh lintian $$r $(DEB) || exit 1; done
	$(DEB_PYTHON) packaging/deps.py check-deb $(DEB)
	@out=$$(systemd-analyze security --offline=yes --threshold=15 --no-pager debian/ble-exporter.service 2>&1); \
		rc=$$?; echo "$$out" | tail -n 1; exit $$rc
	LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l debian/ble-exporter.1 2>&1 >/dev/null | (! grep .)

deb-test: deb
	PATH=$(DEB_PATH) RELEASE=$(RELEASE) ARCH=$(ARCH) packaging/deb-test.sh dist/ble-exporter.deb

# The suite under RELEASE's /usr/bin/python3 and Debian packages, in a cached tree (as root); PYTEST_ARGS
# picks tests, e.g. PYTEST_ARGS="-q tests/test_httpguard.py tests/test_exporter.py" (the HTTP guard).
PYTEST_ARGS ?= -q
test-debian:
	PATH=$(DEB_PATH) packaging/in-root.sh suite $(RELEASE) $(PYTEST_ARGS)


# --- system test (issue: real Bluetooth stack) ---
# Boots a Debian bookworm guest (RELEASE=trixie: trixie) in qemu (TCG unless the CPU has vmx/svm)
# with the kernel's Bluetooth, virtual thermometers on btvirt and bluetoothd --experimental; installs
# dist/ble-exporter.deb there and checks it with a real Prometheus, faults and the watch view (systemtest/system_test.py says how).
# Needs root. The guest image is cached per release in /var/cache/ble-exporter-images
# (SYSTEMTEST_CACHE), rebuilt only when systemtest/packages.txt, build-image.sh or the tree's
# packages or format (packaging/roots.sh) change; it starts from the release's tree of the deb-test.
SYSTEMTEST_TOOLS := qemu-system-x86_64 debootstrap mkfs.ext4 ssh ssh-keygen tar flock
SYSTEMTEST_HOST_DEPS := qemu-system-x86 debootstrap e2fsprogs openssh-client tar util-linux

.PHONY: system-test system-test-deps system-test-image system-test-phase1

system-test-deps:
	@missing=""; for t in $(SYSTEMTEST_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "system-test: installing host tools (missing:$$missing)"; \
		$(APT_GET) update -q && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -q --no-install-recommends \
			$(SYSTEMTEST_HOST_DEPS); \
	fi

system-test-image: system-test-deps
	SYSTEMTEST_RELEASE=$(RELEASE) systemtest/build-image.sh

# Infrastructure only (no .deb): boot, virtual controllers, bleak hears them passively and actively.
system-test-phase1: system-test-deps
	SYSTEMTEST_RELEASE=$(RELEASE) systemtest/phase1.sh

system-test: system-test-deps deb
	python3 systemtest/system_test.py --release $(RELEASE) --deb dist/ble-exporter.deb

# The README's picture of the dashboard (issue: alerts and dashboards): the dashboard's main panels
# drawn with matplotlib (PyPI, into the venv; a doc-only tool) from the data the newest system-test
# run saved (its step 9: every dashboard query against the run's Prometheus).
.PHONY: dashboard-png
dashboard-png: venv
	$(VPY) -m pip install --quiet matplotlib
	@data=$$(ls -td /tmp/systemtest-run.*/dashboard-data.json 2>/dev/null | head -n 1); \
	if [ -z "$$data" ]; then echo "dashboard-png: no dashboard-data.json; run make system-test first" >&2; exit 1; fi; \
	$(VPY) systemtest/render_dashboard.py "$$data" monitoring/dashboard.png
