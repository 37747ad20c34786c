"""The scan cycle (with the simulated radio and a failing fake) and the bleak failure messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

import pytest
from bluez_mock import BUS_ENV, BluezMock

from ble_exporter.config import Device
from ble_exporter.engine import ScanEngine
from ble_exporter.parser import uuid128
from ble_exporter.scanner import BluezScanner, ScanError, describe_failure, run_cycles
from ble_exporter.simulator import SimulatedScanner

DEVICES = (Device("A4:C1:38:00:00:01", "one"), Device("A4:C1:38:00:00:02", "two"))


async def _cycle(engine: ScanEngine, scanner: object, scans: int, **kwargs: object) -> None:
    stop = asyncio.Event()

    def count() -> None:
        if engine.counters.scans >= scans:
            stop.set()

    await asyncio.wait_for(
        run_cycles(engine, scanner, 0.12, 0.1, stop, on_scan=count, **kwargs),  # type: ignore[arg-type]
        timeout=10,
    )


def test_cycles_publish_snapshots_and_leave_the_radio_off() -> None:
    engine = ScanEngine(DEVICES)
    scanner = SimulatedScanner(DEVICES, engine.ingest, advert_interval=0.02, neighbours=())
    asyncio.run(_cycle(engine, scanner, 3))
    assert engine.counters.scans == 3
    assert scanner.sessions == 3  # one scanning session per cycle
    assert {d.name for d in engine.snapshot.devices} == {"one", "two"}
    assert engine.health.mode == "simulated"
    received = engine.counters.adverts_received
    asyncio.run(asyncio.sleep(0.1))
    assert engine.counters.adverts_received == received  # stopped: nothing arrives after the run


def test_continuous_mode_keeps_one_session() -> None:
    engine = ScanEngine(DEVICES)
    scanner = SimulatedScanner(DEVICES, engine.ingest, advert_interval=0.02, neighbours=())
    asyncio.run(_cycle(engine, scanner, 3, continuous=True))
    assert scanner.sessions == 1 and engine.counters.scans == 3


def test_silent_scanner_is_renewed_and_recovers() -> None:
    engine = ScanEngine(DEVICES)
    scanner = SimulatedScanner(DEVICES, engine.ingest, advert_interval=0.02, neighbours=())
    scanner.silent = True
    asyncio.run(_cycle(engine, scanner, 3, silent_scans_before_restart=3))
    assert scanner.renewals == 1
    assert engine.health.restarts == 1 and not engine.health.up
    scanner.silent = False
    asyncio.run(_cycle(engine, scanner, 4, silent_scans_before_restart=3))
    assert engine.health.up and engine.health.restarts == 1


def test_silence_without_configured_devices_is_not_a_fault() -> None:
    engine = ScanEngine(())
    scanner = SimulatedScanner((), engine.ingest, neighbours=())
    asyncio.run(_cycle(engine, scanner, 4, silent_scans_before_restart=1))
    assert scanner.renewals == 0 and engine.health.up


class FailingScanner:
    mode = "active"

    def __init__(self, fail_on: str) -> None:
        self.fail_on = fail_on
        self.stops = 0

    async def start(self) -> None:
        if self.fail_on == "start":
            raise ScanError("Bluetooth scan start on hci0 failed: adapter 'hci0' not found; ...")

    async def stop(self) -> None:
        self.stops += 1
        if self.fail_on == "stop":
            raise ScanError("Bluetooth scan stop on hci0 failed: ...")

    def renew(self) -> None:
        pass

    async def check(self) -> None:
        pass


@pytest.mark.parametrize("fail_on", ["start", "stop"])
def test_scan_errors_propagate(fail_on: str) -> None:
    engine = ScanEngine(DEVICES)
    with pytest.raises(ScanError, match=fail_on):
        asyncio.run(_cycle(engine, FailingScanner(fail_on), 5))
    assert engine.counters.scans == 0


def test_cancelling_the_cycle_stops_the_scanner() -> None:
    engine = ScanEngine(DEVICES)
    scanner = FailingScanner("never")

    async def go() -> None:
        task = asyncio.ensure_future(run_cycles(engine, scanner, 10, 5, asyncio.Event()))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert scanner.stops == 1


@pytest.mark.parametrize(
    ("exc", "fix"),
    [
        (Exception("adapter 'hci1' not found"), "adapter hci1 does not exist; check `bluetoothctl list`"),
        (Exception("No Bluetooth adapters found."), "adapter hci1 does not exist"),
        (FileNotFoundError(2, "No such file or directory"), "BlueZ is not running on the system D-Bus"),
        (
            Exception("[org.freedesktop.DBus.Error.ServiceUnknown] The name org.bluez was not provided"),
            "BlueZ is not running",
        ),
        (Exception("[org.bluez.Error.NotReady] Resource Not Ready"), "powered off or blocked"),
        (Exception("[org.freedesktop.DBus.Error.UnknownObject] Method StopDiscovery"), "disappeared"),
        (Exception("[org.freedesktop.DBus.Error.AccessDenied] Rejected send message"), "`bluetooth` group"),
        (
            Exception("[org.bluez.Error.InProgress] Operation already in progress"),
            "restarting usually clears it",
        ),
        (Exception("something new\nsecond line"), "journalctl -u bluetooth"),
    ],
)
def test_failures_become_one_line_with_a_fix(exc: Exception, fix: str) -> None:
    message = describe_failure(exc, "hci1", "start")
    assert message.startswith("Bluetooth scan start on hci1 failed: ")
    assert fix in message and "\n" not in message


# ---- the real bleak BlueZ backend against a mock bluetoothd on a private D-Bus (tests/bluez_mock.py) ----

PVVX_DATA1 = bytes.fromhex("4000b00151028d0a038d11")  # pvvx issue #740: 81 %, 27.01 °C, 44.93 %
BTHOME_KEY = uuid128(0xFCD2)


async def _scan(engine: ScanEngine, scanner: BluezScanner, bluez: BluezMock, adverts: int = 1) -> None:
    engine.open_window(time.time())
    await scanner.start()
    for i in range(adverts):
        bluez.advertise(DEVICES[0].mac, {BTHOME_KEY: PVVX_DATA1[:-1] + bytes([i])}, rssi=-61)
    deadline = time.monotonic() + 5
    while engine.counters.adverts_decoded < adverts and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await scanner.stop()
    engine.close_window(time.time())


def test_bluez_auto_mode_falls_back_to_active_and_hears_adverts(
    bluez: BluezMock, caplog: pytest.LogCaptureFixture
) -> None:
    engine = ScanEngine(DEVICES)
    scanner = BluezScanner("hci0", "auto", engine.ingest)
    with caplog.at_level(logging.WARNING):
        asyncio.run(_scan(engine, scanner, bluez, adverts=2))
    assert scanner.mode == "active"
    assert "passive scanning is not available on hci0" in caplog.text and "--experimental" in caplog.text
    (device,) = engine.snapshot.devices
    assert (device.name, device.temperature, device.battery, device.rssi) == ("one", 27.01, 81, -61)
    assert device.packets == 2 and bluez.discovery_starts() == 1 and not bluez.is_discovering()


def test_bluez_passive_mode_where_bluez_offers_it() -> None:
    with BluezMock(passive_supported=True) as bluez:
        bluez.add_adapter("hci0")
        os.environ[BUS_ENV] = bluez.bus_address
        try:
            engine = ScanEngine(DEVICES)
            scanner = BluezScanner("hci0", "auto", engine.ingest)
            asyncio.run(_scan(engine, scanner, bluez))
        finally:
            del os.environ[BUS_ENV]
        assert scanner.mode == "passive"
        assert bluez.discovery_starts() == 0 and bluez.registered_monitors() == []
        assert engine.snapshot.devices[0].temperature == 27.01


def test_bluez_passive_only_fails_without_experimental(bluez: BluezMock) -> None:
    engine = ScanEngine(DEVICES)
    with pytest.raises(ScanError, match=r"scan start on hci0 failed: passive scanning"):
        asyncio.run(_scan(engine, BluezScanner("hci0", "passive", engine.ingest), bluez))


def test_bluez_missing_adapter(bluez: BluezMock) -> None:
    engine = ScanEngine(DEVICES)
    with pytest.raises(ScanError, match="adapter hci1 does not exist; check `bluetoothctl list`"):
        asyncio.run(_scan(engine, BluezScanner("hci1", "active", engine.ingest), bluez))


def test_bluez_powered_off_adapter(bluez: BluezMock) -> None:
    bluez.power_off("hci0")
    engine = ScanEngine(DEVICES)
    with pytest.raises(ScanError, match="adapter hci0 is powered off; run `rfkill unblock bluetooth`"):
        asyncio.run(_scan(engine, BluezScanner("hci0", "passive", engine.ingest), bluez))
    assert bluez.registered_monitors() == [] and bluez.discovery_starts() == 0  # refused before bleak


@pytest.mark.parametrize(
    ("fault", "fix"), [("kill_bluetoothd", "BlueZ is not running"), ("remove_adapter", "disappeared")]
)
def test_bluez_vanishing_mid_scan_fails_the_stop(bluez: BluezMock, fault: str, fix: str) -> None:
    engine = ScanEngine(DEVICES)
    scanner = BluezScanner("hci0", "active", engine.ingest)

    async def go() -> None:
        await scanner.start()
        getattr(bluez, fault)()
        await scanner.stop()

    with pytest.raises(ScanError, match=f"scan stop on hci0 failed: .*{fix}"):
        asyncio.run(go())


def test_bluez_renew_opens_a_fresh_discovery_session(bluez: BluezMock) -> None:
    engine = ScanEngine(DEVICES)
    scanner = BluezScanner("hci0", "active", engine.ingest)

    async def go() -> None:
        await scanner.start()
        await scanner.stop()
        scanner.renew()
        await scanner.start()
        bluez.advertise(DEVICES[0].mac, {BTHOME_KEY: PVVX_DATA1}, rssi=-50)
        deadline = time.monotonic() + 5
        while not engine.counters.adverts_decoded and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await scanner.stop()

    engine.open_window(0)
    asyncio.run(go())
    assert bluez.discovery_starts() == 2 and engine.counters.adverts_decoded == 1


def test_a_failed_check_ends_the_cycle_within_a_second() -> None:
    engine = ScanEngine(DEVICES)
    scanner = SimulatedScanner(DEVICES, engine.ingest, neighbours=())

    async def go() -> None:
        task = asyncio.ensure_future(run_cycles(engine, scanner, 30, 20, asyncio.Event()))
        await asyncio.sleep(0.1)
        scanner.failure = ScanError("Bluetooth on hci0 failed: BlueZ (org.bluez) left the system D-Bus")
        await asyncio.wait_for(task, 2.5)

    began = time.monotonic()
    with pytest.raises(ScanError, match="left the system D-Bus"):
        asyncio.run(go())
    assert time.monotonic() - began < 2.0


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("kill_bluetoothd", "BlueZ \\(org.bluez\\) left the system D-Bus"),
        ("remove_adapter", "adapter hci0 disappeared"),
        ("power_off", "adapter hci0 was powered off"),
    ],
)
def test_bluez_check_notices_a_failure_while_scanning(bluez: BluezMock, fault: str, message: str) -> None:
    engine = ScanEngine(DEVICES)
    scanner = BluezScanner("hci0", "active", engine.ingest)

    async def go() -> None:
        await scanner.start()
        await scanner.check()  # all well
        getattr(bluez, fault)()
        await asyncio.sleep(0.2)  # the signal reaches bleak's object cache
        try:
            await scanner.check()
        finally:
            with contextlib.suppress(ScanError):
                await scanner.stop()

    with pytest.raises(ScanError, match=message):
        asyncio.run(go())


def test_bluez_not_on_the_bus_fails_at_once_instead_of_waiting_for_activation(bluez: BluezMock) -> None:
    bluez.kill_bluetoothd()
    engine = ScanEngine(DEVICES)
    began = time.monotonic()
    with pytest.raises(ScanError, match=r"BlueZ \(org.bluez\) is not on the system D-Bus; (bluetoothd|no Bluetooth)"):
        asyncio.run(BluezScanner("hci0", "active", engine.ingest).start())
    assert time.monotonic() - began < 2.0


def test_bluez_configured_sensors_are_forgotten_at_each_scan_start(bluez: BluezMock) -> None:
    # BlueZ reports an unchanged advert only once per device object; forgetting the object makes
    # the next scan hear the sensor again even if its payload has not changed.
    engine = ScanEngine(DEVICES)
    scanner = BluezScanner("hci0", "active", engine.ingest, [d.mac for d in DEVICES])
    removed: list[list[str]] = []

    async def two_scans() -> None:
        await _scan(engine, scanner, bluez)
        removed.append(bluez.removed_devices())
        engine.counters.adverts_decoded = 0
        await _scan(engine, scanner, bluez)
        removed.append(bluez.removed_devices())

    asyncio.run(two_scans())
    assert removed == [[], ["/org/bluez/hci0/dev_A4_C1_38_00_00_01"]]  # nothing was known before the first
    assert engine.snapshot.devices[0].name == "one"
