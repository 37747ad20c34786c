"""The BlueZ radio: the real bleak against a mock bluetoothd on a private D-Bus (tests/bluez_mock.py),
and the one-line failure messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import replace
from typing import Any

import pytest
from bluez_mock import BUS_ENV, BluezMock

from ble_exporter.bluez import MAX_MONITORS, MAX_PATTERNS, BluezScanner, describe_failure, passive_patterns
from ble_exporter.devices import Device
from ble_exporter.encoder import encode
from ble_exporter.engine import ScanEngine, Snapshot
from ble_exporter.parser import Format, Reading, uuid128
from ble_exporter.scanner import ScanError, ScanMode

DEVICES = (Device("A4:C1:38:00:00:01", "one"), Device("A4:C1:38:00:00:02", "two"))


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
    scanner = BluezScanner("hci0", ScanMode.AUTO, engine.ingest)
    with caplog.at_level(logging.WARNING):
        asyncio.run(_scan(engine, scanner, bluez, adverts=2))
    assert scanner.mode == "active"
    assert "passive scanning is not available on hci0" in caplog.text and "--experimental" in caplog.text
    (device,) = engine.snapshot.devices
    r = device.readings
    assert (device.device.name, r.temperature, r.battery, r.rssi) == ("one", 27.01, 81, -61)
    assert r.packets == 2 and bluez.discovery_starts() == 1 and not bluez.is_discovering()


def test_bluez_passive_mode_where_bluez_offers_it() -> None:
    with BluezMock(passive_supported=True) as bluez:
        bluez.add_adapter("hci0")
        os.environ[BUS_ENV] = bluez.bus_address
        try:
            engine = ScanEngine(DEVICES)
            scanner = BluezScanner("hci0", ScanMode.AUTO, engine.ingest)
            asyncio.run(_scan(engine, scanner, bluez))
        finally:
            del os.environ[BUS_ENV]
        assert scanner.mode == "passive"
        assert bluez.discovery_starts() == 0 and bluez.registered_monitors() == []
        assert engine.snapshot.devices[0].readings.temperature == 27.01


def test_each_passive_monitor_gets_its_patterns_and_the_active_scan_none(monkeypatch: pytest.MonkeyPatch) -> None:
    import bleak
    from bleak.assigned_numbers import AdvertisementDataType

    made: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(bleak, "BleakScanner", lambda callback, **kwargs: made.append((callback, kwargs)))
    macs = ["E7:2E:00:11:22:33"]
    passive = BluezScanner("hci0", ScanMode.PASSIVE, lambda *a: None, macs)
    passive._new_scanner(ScanMode.PASSIVE)
    monitors = passive_patterns(macs)
    assert len(made) == len(monitors) == 2
    for (_, kwargs), patterns in zip(made, monitors, strict=True):
        got = [(p.start_position, p.ad_data_type, bytes(p.content_of_pattern)) for p in kwargs["bluez"]["or_patterns"]]
        assert got == [(start, AdvertisementDataType(t), c) for start, t, c in patterns]
        assert kwargs["scanning_mode"] == "passive"
    # BlueZ reports every device of the adapter to each scanner: only the first feeds the sink
    assert made[0][0] == passive._on_detect and made[1][0] is None
    assert (0, AdvertisementDataType.FLAGS, b"\x06") in [
        (p.start_position, p.ad_data_type, bytes(p.content_of_pattern)) for p in made[0][1]["bluez"]["or_patterns"]
    ]
    made.clear()
    BluezScanner("hci0", ScanMode.ACTIVE, lambda *a: None)._new_scanner(ScanMode.ACTIVE)
    ((_, active),) = made
    assert active["scanning_mode"] == "active" and "or_patterns" not in active["bluez"]


def test_no_monitor_has_more_patterns_than_debian_12_takes() -> None:
    """bookworm's kernel 6.1 and BlueZ 5.66 refuse a monitor of 8 patterns, and bluetoothd then aborts
    (measured in the system-test guest): the first monitor is the UUIDs and Flags, as before."""
    monitors = passive_patterns([f"{i:02X}:AA:01:00:00:01" for i in range(9)])
    assert all(1 <= len(m) <= MAX_PATTERNS == 7 for m in monitors) and len(monitors) <= MAX_MONITORS
    assert len(monitors[0]) == 6 and all(len(p[2]) == 2 or p[1] == 0x01 for p in monitors[0])


def matched(patterns: list[tuple[int, int, bytes]], ads: list[tuple[int, bytes]], payload_only: bool) -> bool:
    """Whether BlueZ reports an advert (its AD structures, (type, data)) to a monitor with `patterns`:
    up to 5.68 a pattern is compared with the AD's data; from 5.69 without monitor offload a
    service-data pattern is compared with the payload after the UUID (bluez #1176 #2110)."""
    for start, ad_type, content in patterns:
        for t, data in ads:
            compared = data[2:] if payload_only and t == 0x16 else data
            if t == ad_type and compared[start : start + len(content)] == content:
                return True
    return False


# What BlueZ >= 5.69 cannot tell from noise without Flags: payloads that start with a counter or ciphertext.
UNMATCHABLE_WITHOUT_FLAGS = {(Format.PVVX, True), (Format.ATC1441, True), (Format.BTHOME_V1, True)}


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("fmt", list(Format))
def test_a_sensor_without_flags_is_heard_passively_on_both_bluez(fmt: Format, encrypted: bool) -> None:
    """Every format's advert (the encoder's bytes, as the firmware sends them), with Flags and without,
    against both BlueZ matchings; two address blocks, as a LYWSD03MMC and an MHO-C401 have."""
    macs = ["A4:C1:38:12:34:56", "E7:2E:00:AB:CD:EF"]
    patterns = [pattern for monitor in passive_patterns(macs) for pattern in monitor]  # any monitor will do
    key = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932") if encrypted else None
    reading = Reading(
        format=fmt, encrypted=encrypted, temperature=21.5, humidity=45.0, battery=80, voltage=2.9, packet_id=7
    )
    if fmt == Format.MIJIA:
        reading = replace(reading, voltage=None, battery=None, humidity=None if encrypted else 45.0)
    if encrypted and fmt in (Format.PVVX, Format.ATC1441):
        reading = replace(reading, voltage=None)
    for mac in macs:
        uuid16, payload = encode(reading, mac, key, 1234)
        service_data = (0x16, uuid16.to_bytes(2, "little") + payload)
        for payload_only in (False, True):
            assert matched(patterns, [(0x01, b"\x06"), service_data], payload_only)  # with Flags: always
            heard = matched(patterns, [service_data], payload_only)
            assert heard or (payload_only and (fmt, encrypted) in UNMATCHABLE_WITHOUT_FLAGS), (mac, payload_only)


@pytest.mark.parametrize(
    ("version", "in_bluez"),
    [("0.20.2", False), ("0.22.3", False), ("1.1.1", False), ("2.1.1", False), ("3.0.2", True), ("4.0", True)],
)
def test_the_adapter_is_passed_as_each_bleak_takes_it(
    monkeypatch: pytest.MonkeyPatch, version: str, in_bluez: bool
) -> None:
    """bleak 3.0 deprecates `adapter=` for `bluez={"adapter": ...}`, which older bleak does not know."""
    import bleak

    from ble_exporter import bluez as bluez_module

    made: list[dict[str, Any]] = []
    monkeypatch.setattr(bleak, "BleakScanner", lambda callback, **kwargs: made.append(kwargs))
    monkeypatch.setattr(bluez_module, "_bleak_version", lambda: version)
    for mode in (ScanMode.PASSIVE, ScanMode.ACTIVE):
        BluezScanner("hci1", mode, lambda *a: None)._new_scanner(mode)
    assert len(made) >= 3  # passive: one scanner per advertisement monitor; active: one
    for kwargs in made:
        if in_bluez:
            assert kwargs["bluez"]["adapter"] == "hci1" and "adapter" not in kwargs
        else:
            assert kwargs["adapter"] == "hci1" and "adapter" not in kwargs["bluez"]


def test_the_installed_bleak_takes_the_adapter_without_a_warning() -> None:
    """The real BleakScanner of this runtime's bleak (made, not started), with deprecations errors: no
    DeprecationWarning of bleak 3 (forky) can reach the log, and the adapter arrives."""
    import importlib.metadata
    import warnings

    version = importlib.metadata.version("bleak")
    with warnings.catch_warnings():
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.simplefilter("error", category)
        for mode in (ScanMode.PASSIVE, ScanMode.ACTIVE):
            made = BluezScanner("hci1", mode, lambda *a: None)._new_scanner(mode)
            for scanner in getattr(made, "scanners", [made]):  # passive: one per advertisement monitor
                assert scanner._backend._adapter == "hci1", version


def test_bluez_passive_only_fails_without_experimental(bluez: BluezMock) -> None:
    engine = ScanEngine(DEVICES)
    with pytest.raises(ScanError, match=r"scan start on hci0 failed: passive scanning"):
        asyncio.run(_scan(engine, BluezScanner("hci0", ScanMode.PASSIVE, engine.ingest), bluez))


def test_bluez_missing_adapter(bluez: BluezMock) -> None:
    engine = ScanEngine(DEVICES)
    with pytest.raises(ScanError, match="adapter hci1 does not exist; check `bluetoothctl list`"):
        asyncio.run(_scan(engine, BluezScanner("hci1", ScanMode.ACTIVE, engine.ingest), bluez))


def test_bluez_powered_off_adapter(bluez: BluezMock) -> None:
    bluez.power_off("hci0")
    engine = ScanEngine(DEVICES)
    with pytest.raises(ScanError, match="adapter hci0 is powered off; run `rfkill unblock bluetooth`"):
        asyncio.run(_scan(engine, BluezScanner("hci0", ScanMode.PASSIVE, engine.ingest), bluez))
    assert bluez.registered_monitors() == [] and bluez.discovery_starts() == 0  # refused before bleak


@pytest.mark.parametrize(
    ("fault", "fix"), [("kill_bluetoothd", "BlueZ is not running"), ("remove_adapter", "disappeared")]
)
def test_bluez_vanishing_mid_scan_fails_the_stop(bluez: BluezMock, fault: str, fix: str) -> None:
    engine = ScanEngine(DEVICES)
    scanner = BluezScanner("hci0", ScanMode.ACTIVE, engine.ingest)

    async def go() -> None:
        await scanner.start()
        getattr(bluez, fault)()
        await scanner.stop()

    with pytest.raises(ScanError, match=f"scan stop on hci0 failed: .*{fix}"):
        asyncio.run(go())


def test_bluez_renew_opens_a_fresh_discovery_session(bluez: BluezMock) -> None:
    engine = ScanEngine(DEVICES)
    scanner = BluezScanner("hci0", ScanMode.ACTIVE, engine.ingest)

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
    scanner = BluezScanner("hci0", ScanMode.ACTIVE, engine.ingest)

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
        asyncio.run(BluezScanner("hci0", ScanMode.ACTIVE, engine.ingest).start())
    assert time.monotonic() - began < 2.0


def test_bluez_configured_sensors_are_forgotten_at_each_scan_start(bluez: BluezMock) -> None:
    # BlueZ reports an unchanged advert only once per device object; forgetting the object makes
    # the next scan hear the sensor again even if its payload has not changed.
    engine = ScanEngine(DEVICES)
    scanner = BluezScanner("hci0", ScanMode.ACTIVE, engine.ingest, [d.mac for d in DEVICES])
    removed: list[list[str]] = []

    async def two_scans() -> None:
        await _scan(engine, scanner, bluez)
        removed.append(bluez.removed_devices())
        engine.counters.adverts_decoded = 0
        await _scan(engine, scanner, bluez)
        removed.append(bluez.removed_devices())

    asyncio.run(two_scans())
    assert removed == [[], ["/org/bluez/hci0/dev_A4_C1_38_00_00_01"]]  # nothing was known before the first
    assert engine.snapshot.devices[0].device.name == "one"


def test_the_fallback_to_active_is_recorded_as_the_latest_error(bluez: BluezMock) -> None:
    from ble_exporter.config import parse_config
    from ble_exporter.core import CycleSettings, ScanCycle, make_scanners

    cfg = parse_config('scan_mode: auto\ndevices:\n  "A4:C1:38:00:00:01": one\n', "c.yaml")
    engine = ScanEngine(cfg.devices)
    (scanner,) = make_scanners(cfg, cfg.adapter, cfg.devices, engine, simulate=False)
    health = ScanCycle(engine, [scanner], CycleSettings.of(cfg)).health["hci0"]  # the cycle takes its reports
    asyncio.run(_scan(engine, scanner, bluez))  # type: ignore[arg-type]
    assert scanner.mode == ScanMode.ACTIVE
    assert health.last_error is not None
    assert health.last_error.startswith("passive scanning is not available on hci0")
    assert health.last_error_time is not None


def test_a_reset_powers_the_adapter_off_and_on_through_bluez(bluez: BluezMock) -> None:
    engine = ScanEngine(DEVICES)
    scanner = BluezScanner("hci0", ScanMode.ACTIVE, engine.ingest)
    bluez.make_deaf()
    bluez.advertise(DEVICES[0].mac, {BTHOME_KEY: PVVX_DATA1}, rssi=-50)  # dropped: the adapter is deaf
    asyncio.run(scanner.reset())
    assert bluez.power_cycles() == 1 and not bluez.is_deaf()
    assert not bluez.is_discovering()  # powering off ended discovery, as in BlueZ
    asyncio.run(_scan(engine, scanner, bluez))  # a fresh session hears again
    assert engine.counters.adverts_decoded == 1


def test_an_adapter_that_stays_off_after_a_reset_is_the_powered_off_fault(
    bluez: BluezMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ble_exporter import bluez as bluez_module

    scanner = BluezScanner("hci0", ScanMode.ACTIVE, ScanEngine(DEVICES).ingest)
    monkeypatch.setattr(bluez_module, "RESET_WAIT_SECONDS", 0.3)
    waited: list[bool] = []

    async def never_on(bus: object, wanted: bool) -> bool:  # the kernel never reports it on again
        waited.append(wanted)
        return not wanted

    monkeypatch.setattr(scanner, "_wait_powered", never_on)
    with pytest.raises(ScanError, match="adapter hci0 stayed powered off after a reset; run `rfkill unblock"):
        asyncio.run(scanner.reset())
    assert waited == [False, True]


DONGLE = "00:1A:7D:DA:71:13"


def test_an_adapter_named_by_its_address_is_found_after_the_adapters_are_renumbered(bluez: BluezMock) -> None:
    """hci numbers change when a dongle is plugged in; its address does not (ble_monitor's advice)."""
    bluez.add_adapter("hci1", address=DONGLE)
    engine = ScanEngine(DEVICES, adapters=(DONGLE,))
    scanner = BluezScanner(DONGLE, ScanMode.ACTIVE, engine.ingest, [d.mac for d in DEVICES])

    async def scan_on(adapter: str) -> None:
        engine.open_window(time.time())
        await scanner.start()
        bluez.advertise(DEVICES[0].mac, {BTHOME_KEY: PVVX_DATA1}, rssi=-61, adapter=adapter)
        deadline = time.monotonic() + 5
        while not engine._window and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await scanner.stop()
        engine.close_window(time.time())

    async def go() -> None:
        await scan_on("hci1")
        assert scanner.address == DONGLE and dict(engine.snapshot.devices[0].adapters) == {DONGLE: -61}
        assert bluez.discovery_starts("hci1") == 1 and bluez.discovery_starts("hci0") == 0
        bluez.remove_adapter("hci1")  # unplugged, and plugged in again behind another dongle
        bluez.add_adapter("hci2", address=DONGLE)
        scanner.renew()
        await scan_on("hci2")
        assert bluez.discovery_starts("hci2") == 1 and engine.adapter_scans_heard[DEVICES[0].mac] == {DONGLE: 2}
        await scan_on("hci2")  # the next scan forgets the sensor on the adapter it now is
        assert bluez.removed_devices("hci2") == [f"/org/bluez/hci2/dev_{DEVICES[0].mac.replace(':', '_')}"]

    asyncio.run(go())


def test_an_address_no_adapter_has_is_one_line_with_the_fix(bluez: BluezMock) -> None:
    engine = ScanEngine(DEVICES)
    with pytest.raises(ScanError) as failure:
        asyncio.run(_scan(engine, BluezScanner(DONGLE, ScanMode.ACTIVE, engine.ingest), bluez))
    assert str(failure.value) == (
        f"Bluetooth scan start on {DONGLE} failed: no adapter has the address {DONGLE}; check `bluetoothctl list` "
        "and `adapter:` in the config"
    )


def test_two_adapters_scan_together_and_one_removed_leaves_the_other_scanning(bluez: BluezMock) -> None:
    from ble_exporter.core import CycleSettings, ScanCycle

    bluez.add_adapter("hci1", address=DONGLE)
    engine = ScanEngine(DEVICES, adapters=("hci0", "hci1"))
    scanners = [BluezScanner(name, ScanMode.ACTIVE, engine.ingest) for name in ("hci0", "hci1")]
    cycle = ScanCycle(engine, scanners, CycleSettings(1.0, 0.8))

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(cycle.run(stop, on_scan=lambda: scans.append(engine.snapshot)))
        for second in range(6):
            await asyncio.sleep(0.5)
            for adapter, rssi in (("hci0", -80), ("hci1", -60)):
                if second < 3 or adapter == "hci0":
                    bluez.advertise(DEVICES[0].mac, {BTHOME_KEY: PVVX_DATA1}, rssi=rssi, adapter=adapter)
            if second == 2:
                bluez.remove_adapter("hci1")
        await asyncio.sleep(1.0)
        assert not task.done()
        stop.set()
        await task

    scans: list[Snapshot] = []
    asyncio.run(go())
    hci1 = cycle.health["hci1"]
    assert hci1.failed and not hci1.up
    assert "hci1 disappeared" in (hci1.last_error or "") or "hci1 does not exist" in (hci1.last_error or "")
    assert cycle.health["hci0"].up and not cycle.health["hci0"].failed
    heard = engine.adapter_scans_heard[DEVICES[0].mac]
    assert heard["hci1"] >= 1 and heard["hci0"] > heard["hci1"]
    assert dict(scans[0].devices[0].adapters) == {"hci0": -80, "hci1": -60}
    assert dict(scans[-2].devices[0].adapters) == {"hci0": -80}  # (the last: cut short by the stop)
