"""Shared fixtures. Each section below is owned by one area; append, don't rewrite others' sections."""

from __future__ import annotations

# ---- BlueZ mock (tests/bluez_mock.py): a fake bluetoothd on a private system bus ----
from collections.abc import Iterator as _BluezIterator

import pytest as _bluez_pytest
from bluez_mock import BUS_ENV, BluezMock, missing_requirements


@_bluez_pytest.fixture
def bluez(monkeypatch: _bluez_pytest.MonkeyPatch) -> _BluezIterator[BluezMock]:
    """A started BluezMock with adapter hci0 (powered), and DBUS_SYSTEM_BUS_ADDRESS pointing at
    its bus for the test's duration, so in-process bleak uses it (subprocesses: ``bluez.env()``).
    Fails, never skips, when dbus-daemon or python3-dbusmock is missing."""
    reason = missing_requirements()
    if reason is not None:
        _bluez_pytest.fail(reason, pytrace=False)
    with BluezMock() as mock:
        monkeypatch.setenv(BUS_ENV, mock.bus_address)
        mock.add_adapter("hci0")
        yield mock


# ---- the exporter as a process: `ble-exporter run` on a free loopback port ----

import os as _os  # noqa: E402
import socket as _socket  # noqa: E402
import subprocess as _subprocess  # noqa: E402
import sys as _sys  # noqa: E402
import time as _time  # noqa: E402
import urllib.request as _urllib  # noqa: E402
from collections.abc import Callable as _Callable  # noqa: E402
from collections.abc import Mapping as _Mapping  # noqa: E402
from dataclasses import dataclass as _dataclass  # noqa: E402
from pathlib import Path as _Path  # noqa: E402


def free_port() -> int:
    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@_dataclass
class Exporter:
    """A running `ble-exporter run` subprocess (started by `start_exporter`)."""

    process: _subprocess.Popen[str]
    port: int
    config: _Path
    log_file: _Path

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        with _urllib.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
            return int(response.status), response.read().decode()

    def wait_healthy(self, timeout: float = 15.0) -> None:
        deadline = _time.monotonic() + timeout
        while _time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exporter exited with {self.process.returncode}: {self.process.stderr.read()}")  # type: ignore[union-attr]
            try:
                if self.get("/healthz", timeout=1)[0] == 200:
                    return
            except OSError:
                _time.sleep(0.05)
        raise AssertionError("exporter did not answer /healthz in time")

    def stop(self, timeout: float = 5.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def write_config(tmp_path: _Path, body: str, port: int | None = None) -> tuple[_Path, _Path]:
    log_file = tmp_path / "logs" / "ble_exporter.log"
    config = tmp_path / "config.yaml"
    head = f"listen_port: {port or free_port()}\nlisten_address: 127.0.0.1\nlog_file: {log_file}\n"
    config.write_text(head + body)
    return config, log_file


def start_exporter(
    tmp_path: _Path, body: str, *args: str, env: _Mapping[str, str] | None = None, port: int | None = None
) -> Exporter:
    """Start `python -m ble_exporter run --config <tmp config> ARGS`; the caller stops it."""
    port = port or free_port()
    config, log_file = write_config(tmp_path, body, port)
    process = _subprocess.Popen(
        [_sys.executable, "-m", "ble_exporter", "run", "--config", str(config), *args],
        stdout=_subprocess.PIPE,
        stderr=_subprocess.PIPE,
        text=True,
        env=dict(env if env is not None else _os.environ),
        cwd=_Path(__file__).resolve().parent.parent,
    )
    return Exporter(process, port, config, log_file)


ExporterFactory = _Callable[..., Exporter]


@_bluez_pytest.fixture
def exporter_factory(tmp_path: _Path) -> _BluezIterator[ExporterFactory]:
    """start_exporter bound to the test's tmp_path; every exporter it started is stopped afterwards."""
    started: list[Exporter] = []

    def factory(body: str, *args: str, env: _Mapping[str, str] | None = None, port: int | None = None) -> Exporter:
        exporter = start_exporter(tmp_path, body, *args, env=env, port=port)
        started.append(exporter)
        return exporter

    yield factory
    for exporter in started:
        exporter.stop()
