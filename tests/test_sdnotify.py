"""The systemd notify protocol against a real datagram socket, as systemd listens on one."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from support import ExporterFactory, Listener, free_port

from ble_exporter import sdnotify
from ble_exporter.daemon import _ping_watchdog


def test_sends_a_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.notify("READY=1")
        assert server.recv(64) == b"READY=1"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"ble-exporter-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("WATCHDOG=1")
        assert server.recv(64) == b"WATCHDOG=1"


def test_outside_systemd_it_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not sdnotify.notify("READY=1")


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert sdnotify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None  # meant for another process
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 30.0


# ---- the watchdog pings come from the event loop: a blocked loop stops them ----


def test_a_blocked_event_loop_stops_the_watchdog_pings(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # WatchdogSec=0.2 s: a ping every 0.1 s
    blocked: list[float] = []

    async def hang_the_loop() -> None:
        pinger = asyncio.create_task(_ping_watchdog())
        await asyncio.sleep(0.35)
        blocked.append(time.monotonic())
        time.sleep(0.6)  # a blocking call on the loop: what a hung process looks like to systemd
        blocked.append(time.monotonic())
        await asyncio.sleep(0.35)
        pinger.cancel()

    asyncio.run(hang_the_loop())
    start, end = blocked
    pings = listener.times("WATCHDOG=1")
    before = [t for t in pings if t < start]
    during = [t for t in pings if start + 0.05 < t < end]
    after = [t for t in pings if t >= end]
    assert len(before) >= 3 and during == [] and len(after) >= 3, (before, during, after)
    assert after[0] - end < 0.1  # the overdue ping goes out as soon as the loop runs again
    assert max(b - a for a, b in itertools.pairwise(before + after)) >= 0.55  # the gap systemd would see


def test_the_exporter_tells_systemd_ready_watchdog_and_stopping(
    listener: Listener, exporter_factory: ExporterFactory
) -> None:
    port = free_port()
    healthz_at_ready: list[int] = []

    def on_message(message: str) -> None:
        if message == "READY=1":
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                healthz_at_ready.append(response.status)

    listener.on_message = on_message
    env = dict(os.environ, WATCHDOG_USEC="400000")  # WatchdogSec=0.4 s: a ping every 0.2 s
    body = "scan_interval_seconds: 0.6\nscan_duration_seconds: 0.5\n"
    exporter = exporter_factory(body, "--simulate", env=env, port=port)
    deadline = time.monotonic() + 15
    while len(listener.times("WATCHDOG=1")) < 8 or not listener.times("READY=1"):
        assert time.monotonic() < deadline and exporter.process.poll() is None, listener.messages
        time.sleep(0.05)
    assert healthz_at_ready == [200]  # READY=1 only once /healthz answers
    exporter.process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    assert exporter.process.wait(5) == 0
    assert time.monotonic() - stopped < 2.0
    time.sleep(0.1)
    messages = [m for _, m in listener.messages]
    assert messages.count("READY=1") == 1 and messages[-1] == "STOPPING=1" and messages.count("STOPPING=1") == 1
    pings = listener.times("WATCHDOG=1")
    gaps = sorted(b - a for a, b in itertools.pairwise(pings))
    assert 0.15 < gaps[len(gaps) // 2] < 0.3, gaps  # half of WATCHDOG_USEC
    assert gaps[-1] < 0.4, gaps  # never as late as the watchdog timeout
