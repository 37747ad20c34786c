"""Tests of tests/bluez_mock.py, driving the REAL bleak BlueZ backend over a private D-Bus.

They pass with Debian 12's bleak 0.20.2, Debian 13's 0.22.3 and bleak 3.x from PyPI, and pin down what each
raises when Bluetooth goes away, which the app has to map to clear errors:

================================  ================================================================
situation                         what bleak does (0.20.2 and 3.1 alike unless noted)
================================  ================================================================
start(), adapter "hci0" absent    BleakError("adapter 'hci0' not found")
start(), no adapter named,        0.20: BleakError("No Bluetooth adapters found.");
none present                      3.x: BleakBluetoothNotAvailableError, args[0] the same text
start(), bluetoothd not running   BleakDBusError, dbus_error org.freedesktop.DBus.Error.ServiceUnknown
start(), adapter powered off      BleakDBusError org.bluez.Error.NotReady ("Resource Not Ready");
                                  with no adapter named: 0.20 BleakError("No powered Bluetooth
                                  adapters found."), 3.x BleakBluetoothNotAvailableError
                                  (reason POWERED_OFF)
bluetoothd dies while scanning    nothing raised, adverts just stop; then stop() raises
                                  BleakDBusError org.freedesktop.DBus.Error.ServiceUnknown
adapter removed while scanning    nothing raised; then stop() raises BleakDBusError
                                  org.freedesktop.DBus.Error.UnknownObject; a new start() raises
                                  that too (0.20) or BleakError("adapter 'hci0' not found")
                                  (0.22 and 3.x)
adapter powered off while         nothing raised; stop() does not raise either (bleak ignores
scanning                          NotReady there); a new start() raises NotReady
passive mode without              BleakError("passive scanning on Linux requires BlueZ >= 5.55
AdvertisementMonitorManager1      (0.20) / 5.56 (3.x) with --experimental enabled ...")
================================  ================================================================
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import bluez_mock
import pytest
from bleak import BleakScanner
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError
from bluez_mock import BUS_ENV, BluezMock, BluezMockUnavailable

BLEAK_MAJOR = int(importlib.metadata.version("bleak").split(".")[0])
BLEAK_VERSION = tuple(int(part) for part in importlib.metadata.version("bleak").split(".")[:2])
XIAOMI_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"  # BTHome v2
ADDRESS = "A4:C1:38:AA:BB:CC"
FIRST = bytes.fromhex("4000d60150028007038a13")
SECOND = bytes.fromhex("4000d70150028107038b13")
OR_PATTERNS = [(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xd2\xfc")]
TIMEOUT = 5.0

Advert = tuple[BLEDevice, AdvertisementData]


def make_scanner(
    callback: Callable[[BLEDevice, AdvertisementData], None] | None = None,
    adapter: str | None = "hci0",
    passive: bool = False,
) -> BleakScanner:
    """A BleakScanner on ``adapter``, spelled the way this bleak version wants it
    (3.x: bluez={"adapter": ...}; 0.20: adapter=..., which 3.x deprecates)."""
    bluez_args: dict[str, Any] = {}
    kwargs: dict[str, Any] = {"scanning_mode": "passive" if passive else "active"}
    if passive:
        bluez_args["or_patterns"] = OR_PATTERNS
    if adapter is not None:
        if BLEAK_MAJOR >= 3:
            bluez_args["adapter"] = adapter
        else:
            kwargs["adapter"] = adapter
    if bluez_args:
        kwargs["bluez"] = bluez_args
    return BleakScanner(callback, **kwargs)


def run(coro: Awaitable[None]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, 20)

    asyncio.run(bounded())


class Adverts:
    """Collects detection callbacks for awaiting."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Advert] = asyncio.Queue()

    def __call__(self, device: BLEDevice, adv: AdvertisementData) -> None:
        self.queue.put_nowait((device, adv))

    async def next(self) -> Advert:
        return await asyncio.wait_for(self.queue.get(), TIMEOUT)

    async def none_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.queue.get(), seconds)
        except asyncio.TimeoutError:
            return True
        return False


@pytest.fixture
def mock_without_adapter(monkeypatch: pytest.MonkeyPatch) -> Iterator[BluezMock]:
    with BluezMock() as mock:
        monkeypatch.setenv(BUS_ENV, mock.bus_address)
        yield mock


@pytest.fixture
def passive_bluez(monkeypatch: pytest.MonkeyPatch) -> Iterator[BluezMock]:
    with BluezMock(passive_supported=True) as mock:
        monkeypatch.setenv(BUS_ENV, mock.bus_address)
        mock.add_adapter()
        yield mock


async def fault_mid_scan(bluez: BluezMock, adverts: Adverts, fault: Callable[[], None]) -> BleakDBusError:
    """A scanner hears an advert, then `fault` strikes: bleak notices nothing (no exception, no callback,
    just silence), and stopping the scanner raises; returns what it raised."""
    scanner = make_scanner(adverts)
    await scanner.start()
    bluez.advertise(ADDRESS, {XIAOMI_UUID: FIRST})
    await adverts.next()
    fault()
    assert await adverts.none_within(0.3)
    with pytest.raises(BleakDBusError) as caught:
        await scanner.stop()
    return caught.value


async def scan_hears(bluez: BluezMock, adverts: Adverts, payload: bytes) -> None:
    """A new scanner hears `payload` advertised, and stops: scanning works (again, after a fault)."""
    scanner = make_scanner(adverts)
    await scanner.start()
    try:
        bluez.advertise(ADDRESS, {XIAOMI_UUID: payload})
        _, adv = await adverts.next()
        assert adv.service_data == {XIAOMI_UUID: payload}
    finally:
        await scanner.stop()


def error_text(exc: BaseException) -> str:
    """The message, also for 3.x's BleakBluetoothNotAvailableError(message, reason)."""
    return str(exc.args[0])


# ---- adverts reach bleak ----------------------------------------------------------------------


def test_active_scan_delivers_service_data_and_rssi(bluez: BluezMock) -> None:
    async def scenario() -> None:
        adverts = Adverts()
        scanner = make_scanner(adverts)
        await scanner.start()
        try:
            assert bluez.is_discovering()
            bluez.advertise(ADDRESS, {XIAOMI_UUID: FIRST}, rssi=-61)
            device, adv = await adverts.next()
            assert device.address == ADDRESS
            assert adv.service_data == {XIAOMI_UUID: FIRST}
            assert isinstance(adv.service_data[XIAOMI_UUID], bytes)
            assert adv.rssi == -61
            assert adv.local_name is None

            bluez.advertise(ADDRESS, {XIAOMI_UUID: SECOND}, rssi=-70, name="ATC_AABBCC")
            device, adv = await adverts.next()
            assert device.address == ADDRESS
            assert adv.service_data == {XIAOMI_UUID: SECOND}
            assert adv.rssi == -70
            assert adv.local_name == "ATC_AABBCC"
        finally:
            await scanner.stop()
        assert not bluez.is_discovering()

    run(scenario())


def test_manufacturer_data_and_merged_service_data(bluez: BluezMock) -> None:
    other_uuid = "0000181a-0000-1000-8000-00805f9b34fb"

    async def scenario() -> None:
        adverts = Adverts()
        scanner = make_scanner(adverts)
        await scanner.start()
        try:
            bluez.advertise(ADDRESS, {other_uuid: b"\x01"}, manufacturer_data={0x038F: b"\xaa\xbb"})
            _, adv = await adverts.next()
            assert adv.manufacturer_data == {0x038F: b"\xaa\xbb"}
            bluez.advertise(ADDRESS, {XIAOMI_UUID: FIRST})
            _, adv = await adverts.next()
            # as BlueZ does: data of other UUIDs is kept
            assert adv.service_data == {other_uuid: b"\x01", XIAOMI_UUID: FIRST}
        finally:
            await scanner.stop()

    run(scenario())


def test_devices_of_other_adapters_are_not_reported(bluez: BluezMock) -> None:
    bluez.add_adapter("hci1", address="00:01:02:03:04:06")

    async def scenario() -> None:
        adverts = Adverts()
        scanner = make_scanner(adverts, adapter="hci0")
        await scanner.start()
        try:
            bluez.advertise("A4:C1:38:00:00:01", {XIAOMI_UUID: FIRST}, adapter="hci1")
            bluez.advertise("A4:C1:38:00:00:02", {XIAOMI_UUID: FIRST}, adapter="hci0")
            device, _ = await adverts.next()
            assert device.address == "A4:C1:38:00:00:02"
            assert await adverts.none_within(0.3)
        finally:
            await scanner.stop()

    run(scenario())


def test_discovery_starts_counts_start_discovery_calls(bluez: BluezMock) -> None:
    async def scenario() -> None:
        assert bluez.discovery_starts() == 0
        for expected in (1, 2):
            scanner = make_scanner()
            await scanner.start()
            assert bluez.discovery_starts() == expected
            assert bluez.is_discovering()
            await scanner.stop()
            assert not bluez.is_discovering()

    run(scenario())


# ---- what bleak raises when Bluetooth is missing or goes away ---------------------------------


def test_no_adapter_at_start(mock_without_adapter: BluezMock) -> None:
    async def scenario() -> None:
        with pytest.raises(BleakError) as named:
            await make_scanner(adapter="hci0").start()
        assert type(named.value) is BleakError
        assert str(named.value) == "adapter 'hci0' not found"

        with pytest.raises(BleakError) as default:
            await make_scanner(adapter=None).start()
        assert error_text(default.value) == "No Bluetooth adapters found."
        expected_type = "BleakBluetoothNotAvailableError" if BLEAK_MAJOR >= 2 else "BleakError"  # (2.1.1: Ubuntu 26.04)
        assert type(default.value).__name__ == expected_type

    run(scenario())


def test_no_bluetoothd_at_start(mock_without_adapter: BluezMock) -> None:
    mock_without_adapter.kill_bluetoothd()

    async def scenario() -> None:
        with pytest.raises(BleakDBusError) as caught:
            await make_scanner().start()
        assert caught.value.dbus_error == "org.freedesktop.DBus.Error.ServiceUnknown"

    run(scenario())


def test_bluetoothd_killed_mid_scan_then_stop_raises(bluez: BluezMock) -> None:
    async def scenario() -> None:
        adverts = Adverts()
        stopping = await fault_mid_scan(bluez, adverts, bluez.kill_bluetoothd)
        assert stopping.dbus_error == "org.freedesktop.DBus.Error.ServiceUnknown"

        # bluetoothd comes back (with hci0, as after a restart): the same bleak manager and bus
        # connection pick it up again, a new scan works
        bluez.start_bluetoothd()
        assert bluez.discovery_starts() == 0
        await scan_hears(bluez, adverts, SECOND)
        assert bluez.discovery_starts() == 1

    run(scenario())


def test_adapter_removed_mid_scan_then_stop_raises(bluez: BluezMock) -> None:
    async def scenario() -> None:
        adverts = Adverts()
        stopping = await fault_mid_scan(bluez, adverts, lambda: bluez.remove_adapter("hci0"))
        assert stopping.dbus_error == "org.freedesktop.DBus.Error.UnknownObject"

        with pytest.raises(BleakError) as restart:
            await make_scanner().start()
        if BLEAK_VERSION >= (0, 22):  # drops the removed adapter's emptied entry: checked before use
            assert str(restart.value) == "adapter 'hci0' not found"
        else:  # 0.20 keeps an empty entry for the removed adapter and tries anyway
            assert isinstance(restart.value, BleakDBusError)
            assert restart.value.dbus_error == "org.freedesktop.DBus.Error.UnknownObject"

        # the dongle is plugged in again; bleak learns of it from InterfacesAdded, which it
        # reads only when the event loop runs
        bluez.add_adapter("hci0")
        await asyncio.sleep(0.1)
        await scan_hears(bluez, adverts, SECOND)

    run(scenario())


def test_adapter_powered_off(bluez: BluezMock) -> None:
    async def scenario() -> None:
        adverts = Adverts()
        scanner = make_scanner(adverts)
        await scanner.start()
        bluez.power_off("hci0")
        assert not bluez.is_discovering()
        await scanner.stop()  # bleak ignores org.bluez.Error.NotReady here

        with pytest.raises(BleakDBusError) as named:
            await make_scanner().start()
        assert named.value.dbus_error == "org.bluez.Error.NotReady"
        assert named.value.dbus_error_details == "Resource Not Ready"

        with pytest.raises(BleakError) as default:
            await make_scanner(adapter=None).start()
        assert error_text(default.value).startswith("No powered Bluetooth adapters found.")

        bluez.power_on("hci0")
        await scan_hears(bluez, adverts, FIRST)

    run(scenario())


# ---- passive scanning -------------------------------------------------------------------------


def test_passive_scan_without_monitor_manager_raises(bluez: BluezMock) -> None:
    async def scenario() -> None:
        with pytest.raises(BleakError) as caught:
            await make_scanner(passive=True).start()
        assert str(caught.value).startswith("passive scanning on Linux requires BlueZ >= 5.5")
        assert bluez.registered_monitors() == []

    run(scenario())


def test_passive_scan_with_monitor_manager(passive_bluez: BluezMock) -> None:
    async def scenario() -> None:
        adverts = Adverts()
        scanner = make_scanner(adverts, passive=True)
        await scanner.start()
        try:
            assert len(passive_bluez.registered_monitors()) == 1
            assert passive_bluez.discovery_starts() == 0
            passive_bluez.advertise(ADDRESS, {XIAOMI_UUID: FIRST}, rssi=-55)
            device, adv = await adverts.next()
            assert device.address == ADDRESS
            assert adv.service_data == {XIAOMI_UUID: FIRST}
            assert adv.rssi == -55
        finally:
            await scanner.stop()
        assert passive_bluez.registered_monitors() == []

    run(scenario())


# ---- the harness itself -----------------------------------------------------------------------


def test_fixture_sets_bus_address_and_env(bluez: BluezMock) -> None:
    assert os.environ[BUS_ENV] == bluez.bus_address
    assert bluez.bus_address.startswith("unix:path=")
    env = bluez.env()
    assert env[BUS_ENV] == bluez.bus_address
    assert env["PATH"] == os.environ["PATH"]


def test_subprocess_scans_through_env(bluez: BluezMock) -> None:
    child = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_bluez_mock import make_scanner

        async def main():
            scanner = make_scanner()
            await scanner.start()
            await scanner.stop()
            print("scanned")

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", child],
        env=bluez.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "scanned"
    assert bluez.discovery_starts() == 1


def test_processes_are_stopped_on_exit_even_after_failure() -> None:
    pids: list[int] = []
    with pytest.raises(ZeroDivisionError), BluezMock() as mock:
        mock.add_adapter()
        pids = mock.pids()
        assert len(pids) == 2
        assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
        _ = 1 / 0
    assert pids
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
    assert mock.pids() == []


def test_missing_requirements_name_the_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bluez_mock, "SYSTEM_PYTHON", "/nonexistent/python3")
    reason = bluez_mock.missing_requirements()
    assert reason is not None
    assert "python3-dbusmock" in reason
    assert "apt-get install dbus python3-dbusmock" in reason
    with pytest.raises(BluezMockUnavailable, match="python3-dbusmock"):
        BluezMock().start()


def test_harness_errors_are_clear(bluez: BluezMock) -> None:
    with pytest.raises(bluez_mock.BluezMockError, match="NoSuchAdapter"):
        bluez.advertise(ADDRESS, {XIAOMI_UUID: FIRST}, adapter="hci9")
    with pytest.raises(bluez_mock.BluezMockError, match="AdapterExists"):
        bluez.add_adapter("hci0")
    bluez.kill_bluetoothd()
    with pytest.raises(bluez_mock.BluezMockError, match="not running"):
        bluez.advertise(ADDRESS, {XIAOMI_UUID: FIRST})
