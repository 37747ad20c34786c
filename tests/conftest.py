"""Shared fixtures: a mock bluetoothd on a private system bus, the exporter as a process, systemd's end
of the notify protocol and TLS files. The helpers they are made of, and those tests call directly, are
in support.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from bluez_mock import BUS_ENV, BluezMock, missing_requirements
from support import Exporter, ExporterFactory, Listener, TlsFiles, make_tls_files, start_exporter


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the golden files (tests/golden/*, the man page's key list) from the code; review the diff",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


# ---- BlueZ mock (tests/bluez_mock.py): a fake bluetoothd on a private system bus ----


@pytest.fixture
def bluez(monkeypatch: pytest.MonkeyPatch) -> Iterator[BluezMock]:
    """A started BluezMock with adapter hci0 (powered), and DBUS_SYSTEM_BUS_ADDRESS pointing at
    its bus for the test's duration, so in-process bleak uses it (subprocesses: ``bluez.env()``).
    Fails, never skips, when dbus-daemon or python3-dbusmock is missing."""
    reason = missing_requirements()
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    with BluezMock() as mock:
        monkeypatch.setenv(BUS_ENV, mock.bus_address)
        mock.add_adapter("hci0")
        yield mock


@pytest.fixture
def as_nobody() -> list[str]:
    """The prefix that runs a command as user nobody when the tests run as root (none otherwise). The
    test is skipped where this Python cannot run as nobody: pyenv's 3.12 under /root, which the pinned
    Ubuntu 24.04 set runs on (`make test-pinned`), loads its libpython from there."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    probe = subprocess.run([*prefix, sys.executable, "-c", ""], capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        pytest.skip(f"{sys.executable} cannot run as user nobody here: {probe.stderr.strip()[:160]}")
    return prefix


# ---- the exporter as a process: `ble-exporter run` on a free loopback port (support.Exporter) ----


@pytest.fixture
def exporter_factory(tmp_path: Path) -> Iterator[ExporterFactory]:
    """start_exporter bound to the test's tmp_path; every exporter it started is stopped afterwards."""
    started: list[Exporter] = []

    def factory(body: str, *args: str, env: Mapping[str, str] | None = None, port: int | None = None) -> Exporter:
        exporter = start_exporter(tmp_path, body, *args, env=env, port=port)
        started.append(exporter)
        return exporter

    yield factory
    for exporter in started:
        exporter.stop()


# ---- systemd's end of the notify protocol (support.Listener) ----


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    server = Listener()
    monkeypatch.setenv("NOTIFY_SOCKET", server.path)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield server
    server.close()


# ---- TLS material for the web config tests (support.make_tls_files) ----


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))
