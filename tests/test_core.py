"""The scan cycle both front ends run (with the simulated radio and a failing fake), and Core's wiring."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from ble_exporter.config import parse_config
from ble_exporter.core import Core, CycleSettings, Radio, ScanCycle, heard_names
from ble_exporter.devices import Device
from ble_exporter.engine import ScanEngine
from ble_exporter.scanner import ScanError, ScanMode
from ble_exporter.simulator import DEMO_DEVICES, SimulatedScanner

DEVICES = (Device("A4:C1:38:00:00:01", "one"), Device("A4:C1:38:00:00:02", "two"))


def _cycle(engine: ScanEngine, scanner: object, scans: int, cycle: ScanCycle | None = None, **kwargs: Any) -> ScanCycle:
    """Run a cycle of 0.1-s scans every 0.12 s (or `cycle` again) until the engine has counted `scans`."""
    if cycle is None:
        cycle = ScanCycle(engine, [scanner], CycleSettings(0.12, 0.1, **kwargs))  # type: ignore[list-item]
    stop = asyncio.Event()

    def count() -> None:
        if engine.counters.scans >= scans:
            stop.set()

    asyncio.run(asyncio.wait_for(cycle.run(stop, on_scan=count), timeout=10))
    return cycle


def test_cycles_publish_snapshots_and_leave_the_radio_off() -> None:
    engine = ScanEngine(DEVICES)
    scanner = SimulatedScanner(DEVICES, engine.ingest, advert_interval=0.02, neighbours=())
    cycle = _cycle(engine, scanner, 3)
    assert engine.counters.scans == 3
    assert scanner.sessions == 3  # one scanning session per cycle
    assert {d.device.name for d in engine.snapshot.devices} == {"one", "two"}
    assert cycle.health["hci0"].mode == "simulated"
    received = engine.counters.adverts_received
    asyncio.run(asyncio.sleep(0.1))
    assert engine.counters.adverts_received == received  # stopped: nothing arrives after the run


def test_continuous_mode_keeps_one_session() -> None:
    engine = ScanEngine(DEVICES)
    scanner = SimulatedScanner(DEVICES, engine.ingest, advert_interval=0.02, neighbours=())
    _cycle(engine, scanner, 3, continuous=True)
    assert scanner.sessions == 1 and engine.counters.scans == 3


def test_silent_scanner_is_renewed_and_recovers() -> None:
    engine = ScanEngine(DEVICES)
    scanner = SimulatedScanner(DEVICES, engine.ingest, advert_interval=0.02, neighbours=())
    scanner.silent = True
    cycle = _cycle(engine, scanner, 3, silent_scans_before_restart=3)
    assert scanner.renewals == 1
    assert cycle.health["hci0"].restarts == 1 and not cycle.health["hci0"].up
    scanner.silent = False
    _cycle(engine, scanner, 4, cycle)
    assert cycle.health["hci0"].up and cycle.health["hci0"].restarts == 1


def test_silence_without_configured_devices_is_not_a_fault() -> None:
    engine = ScanEngine(())
    scanner = SimulatedScanner((), engine.ingest, neighbours=())
    cycle = _cycle(engine, scanner, 4, silent_scans_before_restart=1)
    assert scanner.renewals == 0 and cycle.health["hci0"].up


class FailingScanner:
    mode = ScanMode.ACTIVE
    address: str | None = None
    adverts = 0

    def __init__(self, fail_on: str, adapter: str = "hci0") -> None:
        self.fail_on = fail_on
        self.adapter = adapter
        self.stops = 0
        self.on_error: Callable[[str], None] = lambda message: None

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

    async def reset(self) -> None:
        pass

    def set_devices(self, devices: Sequence[Device]) -> None:
        pass


@pytest.mark.parametrize("fail_on", ["start", "stop"])
def test_scan_errors_propagate_recorded_as_the_radios_last_error(fail_on: str) -> None:
    engine = ScanEngine(DEVICES)
    cycle = ScanCycle(engine, [FailingScanner(fail_on)], CycleSettings(0.12, 0.1))  # type: ignore[list-item]
    with pytest.raises(ScanError, match=fail_on):
        _cycle(engine, None, 5, cycle)
    assert engine.counters.scans == 0
    assert (cycle.health["hci0"].last_error or "").startswith(f"Bluetooth scan {fail_on} on hci0 failed")


def test_cancelling_the_cycle_stops_the_scanner() -> None:
    engine = ScanEngine(DEVICES)
    scanner = FailingScanner("never")

    async def go() -> None:
        cycle = ScanCycle(engine, [scanner], CycleSettings(10, 5))  # type: ignore[list-item]
        task = asyncio.ensure_future(cycle.run(asyncio.Event()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert scanner.stops == 1


def test_a_failed_check_ends_the_cycle_within_a_second() -> None:
    engine = ScanEngine(DEVICES)
    scanner = SimulatedScanner(DEVICES, engine.ingest, neighbours=())

    async def go() -> None:
        task = asyncio.ensure_future(ScanCycle(engine, [scanner], CycleSettings(30, 20)).run(asyncio.Event()))
        await asyncio.sleep(0.1)
        scanner.failure = ScanError("Bluetooth on hci0 failed: BlueZ (org.bluez) left the system D-Bus")
        await asyncio.wait_for(task, 2.5)

    began = time.monotonic()
    with pytest.raises(ScanError, match="left the system D-Bus"):
        asyncio.run(go())
    assert time.monotonic() - began < 2.0


def test_a_renewal_is_the_latest_survived_error_with_its_time() -> None:
    engine = ScanEngine(DEVICES)
    scanner = SimulatedScanner(DEVICES, engine.ingest, advert_interval=0.02, neighbours=())
    scanner.silent = True
    before = time.time()
    health = _cycle(engine, scanner, 3, silent_scans_before_restart=3).health["hci0"]
    assert health.last_error is not None
    assert health.last_error.startswith("scanner: no advert at all in 3 scans on hci0 (simulated mode")
    assert health.last_error_time is not None and before <= health.last_error_time <= time.time()


def test_core_with_simulate_and_no_devices_scans_the_demo_sensors() -> None:
    empty = parse_config("devices:\n", "c.yaml")

    async def go() -> Core:
        stop = asyncio.Event()
        core = Core(empty, simulate=True)
        core.start(stop)
        assert await core.wait_started(5)
        stop.set()
        await core.finish()
        return core

    core = asyncio.run(go())
    assert core.demo and core.devices == DEMO_DEVICES and core.engine.devices == DEMO_DEVICES
    assert core.health["hci0"].mode == ScanMode.SIMULATED and core.cycles.done()
    real = Core(parse_config('devices:\n  "A4:C1:38:00:00:01": one\n', "c.yaml"), simulate=True)
    assert not real.demo and [d.name for d in real.devices] == ["one"]


def test_core_wait_started_raises_the_start_failure() -> None:
    async def go() -> None:
        core = Core(parse_config("devices:\n", "c.yaml"), simulate=True)
        core.cycle.radios["hci0"] = Radio(FailingScanner("start"))  # type: ignore[arg-type]
        core.start(asyncio.Event())
        await core.wait_started(5)

    with pytest.raises(ScanError, match="scan start on hci0 failed"):
        asyncio.run(go())


def test_a_scan_log_line_names_ten_devices_and_counts_the_rest() -> None:
    assert heard_names([]) == "none"
    assert heard_names(["a", "b"]) == "a, b"
    names = [f"room_{i}" for i in range(1618)]
    line = heard_names(names)
    assert line == ", ".join(names[:10]) + ", +1608 more" and len(line) < 200


def test_a_silent_radio_is_renewed_then_reset_once_and_heard_again(caplog: pytest.LogCaptureFixture) -> None:
    engine = ScanEngine(DEVICES)
    scanner = SimulatedScanner(DEVICES, engine.ingest, advert_interval=0.02, neighbours=())
    scanner.silent = True  # deaf until a reset (SimulatedScanner.reset), as a hung controller
    with caplog.at_level(logging.INFO):
        health = _cycle(engine, scanner, 6, silent_scans_before_restart=2, silent_scans_before_reset=2).health["hci0"]
    assert (scanner.renewals, scanner.resets, health.resets) == (1, 1, 1)
    assert health.up and engine.counters.adverts_decoded > 0  # heard again after the reset
    assert "renewing the scanning session did not help" in caplog.text and "reset; scanning again" in caplog.text
    assert "resetting the adapter" in (health.last_error or "")


def test_adapter_resets_are_rate_limited_while_they_do_not_help(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = ScanEngine(DEVICES)
    scanner = SimulatedScanner(DEVICES, engine.ingest, advert_interval=0.02, neighbours=())

    async def deaf_for_good() -> None:  # a reset that does not help
        scanner.resets += 1

    monkeypatch.setattr(scanner, "reset", deaf_for_good)
    scanner.silent = True
    health = _cycle(engine, scanner, 14, silent_scans_before_restart=2, silent_scans_before_reset=2).health["hci0"]
    # Silent scan 2: renew; 4: reset; 6, 8, ...: renew, and a reset only after RESET_BACKOFF_SECONDS.
    assert scanner.resets == 1 and scanner.renewals == 6 and not health.up


def test_reset_off_keeps_renewing_as_before() -> None:
    engine = ScanEngine(DEVICES)
    scanner = SimulatedScanner(DEVICES, engine.ingest, advert_interval=0.02, neighbours=())
    scanner.silent = True
    _cycle(engine, scanner, 9, silent_scans_before_restart=3, silent_scans_before_reset=0)
    assert (scanner.renewals, scanner.resets) == (3, 0)


# ---- several adapters --------------------------------------------------------------------------------


class Dongle(FailingScanner):
    """A radio whose start fails while `broken`, recording at which scan each start was tried."""

    def __init__(self, engine: ScanEngine, adapter: str = "hci1") -> None:
        super().__init__("never", adapter)
        self.engine = engine
        self.broken = True
        self.tries: list[int] = []

    async def start(self) -> None:
        self.tries.append(self.engine.counters.scans)
        if self.broken:
            raise ScanError(
                f"Bluetooth scan start on {self.adapter} failed: adapter {self.adapter} is powered off; ..."
            )


def _two(engine: ScanEngine, **kw: Any) -> tuple[SimulatedScanner, SimulatedScanner]:
    first = SimulatedScanner(DEVICES, engine.ingest, advert_interval=0.02, neighbours=(), **kw)
    return first, SimulatedScanner(DEVICES, engine.ingest, adapter="hci1", air_of=first)


def test_two_adapters_hear_the_same_frames_each_at_its_own_level() -> None:
    engine = ScanEngine(DEVICES, adapters=("hci0", "hci1"))
    radios = _two(engine)
    cycle = ScanCycle(engine, radios, CycleSettings(0.12, 0.1))
    _cycle(engine, None, 3, cycle)
    assert all(heard == {"hci0": 3, "hci1": 3} for heard in engine.adapter_scans_heard.values())
    assert all(r.sessions == 3 for r in radios)
    for d in engine.snapshot.devices:
        assert set(d.adapters) == {"hci0", "hci1"} and d.adapters["hci0"] != d.adapters["hci1"]
        assert d.readings.rssi == max(d.adapters.values())  # type: ignore[type-var]
    # One air: the second radio hears the first one's frames, so no sensor seems to restart.
    assert all(r.restarts == 0 and r.frames > 0 for r in engine.reception.values())


def test_one_failing_adapter_of_two_is_set_aside_and_retried_with_a_growing_gap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = ScanEngine(DEVICES, adapters=("hci0", "hci1"))
    radio = SimulatedScanner(DEVICES, engine.ingest, advert_interval=0.02, neighbours=())
    dongle = Dongle(engine)
    with caplog.at_level(logging.INFO):
        cycle = _cycle(engine, None, 30, ScanCycle(engine, [radio, dongle], CycleSettings(0.12, 0.1)))
    assert engine.counters.scans == 30 and engine.adapter_scans_heard[DEVICES[0].mac]["hci0"] == 30
    # Tried at the first scan, then after 1, 2, 4, 8 and 10 scans: never more than 10 apart.
    assert dongle.tries == [0, 1, 3, 7, 15, 25]
    health = cycle.health["hci1"]
    assert health.failed and not health.up and "powered off" in (health.last_error or "")
    assert cycle.health["hci0"].up and not cycle.health["hci0"].failed
    assert caplog.text.count("is powered off") == 1  # logged once, not at every retry
    assert "scanning on with hci0, retrying hci1 at scan starts" in caplog.text
    dongle.broken = False
    cycle.radios["hci1"].last_reset = time.time()  # a reset before it failed
    with caplog.at_level(logging.INFO):
        _cycle(engine, None, 41, cycle)
    assert dongle.tries[6] == 35 and not cycle.health["hci1"].failed and cycle.health["hci1"].up
    assert cycle.radios["hci1"].last_reset is None  # its watchdog's resets start anew
    assert "scanner: adapter hci1 works again; scanning with it" in caplog.text


def test_an_adapter_failing_mid_scan_leaves_the_others_scanning() -> None:
    engine = ScanEngine(DEVICES, adapters=("hci0", "hci1"))
    first, second = _two(engine)

    async def go() -> ScanCycle:
        cycle = ScanCycle(engine, [first, second], CycleSettings(1.2, 1.1))
        stop = asyncio.Event()
        task = asyncio.ensure_future(cycle.run(stop))
        await asyncio.sleep(0.2)
        second.failure = ScanError("Bluetooth on hci1 failed: adapter hci1 disappeared; check the adapter")
        await asyncio.sleep(2.5)
        assert not task.done()
        stop.set()
        await task
        return cycle

    cycle = asyncio.run(go())
    assert cycle.health["hci1"].failed and cycle.health["hci0"].up and engine.counters.scans >= 2
    assert second not in second.air.listening  # stopped when set aside
    assert engine.snapshot.devices  # the other adapter still heard the sensors


def test_the_cycle_ends_when_no_adapter_of_several_works() -> None:
    engine = ScanEngine(DEVICES, adapters=("hci1", "hci2"))
    cycle = ScanCycle(engine, [Dongle(engine, "hci1"), Dongle(engine, "hci2")], CycleSettings(0.12, 0.1))
    with pytest.raises(
        ScanError, match=r"^no adapter can scan \(hci1: Bluetooth scan start on hci1 failed: .*; hci2: "
    ):
        _cycle(engine, None, 3, cycle)
    assert engine.counters.scans == 0


def test_a_reload_adds_and_removes_adapters_without_disturbing_the_others() -> None:
    text = "scan_interval_seconds: 0.3\nscan_duration_seconds: 0.2\nadapter: [hci0, hci1]\n"
    text += 'devices:\n  "A4:C1:38:00:00:01": one\n'

    async def go() -> Core:
        stop = asyncio.Event()
        core = Core(parse_config(text, "c.yaml"), simulate=True)
        kept = core.cycle.radios["hci0"].scanner
        core.start(stop)
        assert await core.wait_started(5)
        await asyncio.sleep(0.7)
        core.reconfigure(parse_config(text.replace("[hci0, hci1]", "[hci0, hci2]"), "c.yaml"))
        await asyncio.sleep(0.7)
        assert core.cycle.radios["hci0"].scanner is kept
        stop.set()
        await core.finish()
        return core

    core = asyncio.run(go())
    assert list(core.health) == ["hci0", "hci2"] and core.engine.adapters == ("hci0", "hci2")
    heard = core.engine.adapter_scans_heard["A4:C1:38:00:00:01"]
    assert "hci1" not in heard and heard["hci2"] >= 1 and heard["hci0"] > heard["hci2"]
    (latest,) = core.engine.snapshot.devices or [None]
    assert latest is None or latest.adapters.get("hci0") != latest.adapters.get("hci2")  # each its own level
