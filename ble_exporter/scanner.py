"""The radio edge: BlueZ scanning through bleak, and the scan cycle both front ends run.

bleak is imported only when a real scanner starts, so `--simulate` and the tests of the cycle need
no D-Bus. Every failure of the Bluetooth stack leaves this module as a ScanError with one line that
says what broke and what to do; the caller exits non-zero and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ble_exporter.config import Config, Device
from ble_exporter.engine import ScanEngine
from ble_exporter.parser import SERVICE_UUIDS

log = logging.getLogger(__name__)

# engine.ingest: (address, rssi, service data by 128-bit UUID, time of arrival)
AdvertSink = Callable[[str, "int | None", Mapping[str, bytes], float], None]

PASSIVE = "passive"
ACTIVE = "active"
SIMULATED = "simulated"


class ScanError(Exception):
    """The Bluetooth stack failed; the message is one line with the fix."""


class Scanner(Protocol):
    mode: str  # the mode actually in use, once started

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check(self) -> None:
        """Raise ScanError when the Bluetooth stack is gone; called every second of the cycle."""

    def renew(self) -> None:
        """Forget the scanning session (stopped first) so the next start opens a fresh one: the
        silent-scan watchdog's remedy."""


class BluezScanner:
    """bleak's BlueZ backend, passive where BlueZ offers it (or_patterns on our service UUIDs)."""

    def __init__(self, adapter: str, scan_mode: str, sink: AdvertSink, addresses: Sequence[str] = ()) -> None:
        self.adapter = adapter
        # BlueZ object paths of the configured sensors, forgotten at each scan start (see _forget).
        self._device_paths = [f"/org/bluez/{adapter}/dev_{mac.replace(':', '_')}" for mac in addresses]
        self.scan_mode = scan_mode
        self.mode = ACTIVE if scan_mode == ACTIVE else PASSIVE
        self._sink = sink
        self._scanner: Any = None
        self._bluez: tuple[Any, dict[str, Any]] | None = None

    def _on_detect(self, device: Any, adv: Any) -> None:
        self._sink(device.address, adv.rssi, adv.service_data, time.time())

    def _new_scanner(self, mode: str) -> Any:
        from bleak import BleakScanner

        try:  # bleak >= 1.0 (PyPI)
            from bleak.args.bluez import OrPattern
        except ImportError:  # bleak 0.20 (Debian 12)
            from bleak.backends.bluezdbus.advertisement_monitor import OrPattern  # type: ignore[no-redef]
        from bleak.assigned_numbers import AdvertisementDataType

        bluez: dict[str, Any] = {}
        kwargs: dict[str, Any] = {"scanning_mode": mode, "bluez": bluez}
        if _bluez_args_take_adapter():
            bluez["adapter"] = self.adapter
        else:
            kwargs["adapter"] = self.adapter
        if mode == PASSIVE:
            bluez["or_patterns"] = [
                OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, uuid16.to_bytes(2, "little"))
                for uuid16 in sorted(set(SERVICE_UUIDS.values()))
            ]
        return BleakScanner(self._on_detect, **kwargs)

    async def start(self) -> None:
        if self._scanner is None:
            await self._require_bluez()
            self._scanner = self._new_scanner(self.mode)
        await self._forget()
        try:
            await self._scanner.start()
        except Exception as e:
            if not (self.mode == PASSIVE and self.scan_mode == "auto" and _passive_unavailable(e)):
                self._scanner = None
                raise ScanError(describe_failure(e, self.adapter, "start")) from e
            log.warning(
                "passive scanning is not available on %s (%s); scanning actively instead. Passive scanning "
                "needs bluetoothd --experimental (Experimental = true in /etc/bluetooth/main.conf)",
                self.adapter,
                e,
            )
            self.mode = ACTIVE
            self._scanner = self._new_scanner(ACTIVE)
            try:
                await self._scanner.start()
            except Exception as e:
                self._scanner = None
                raise ScanError(describe_failure(e, self.adapter, "start")) from e
        if self._bluez is None:
            await self._attach_bluez()

    async def stop(self) -> None:
        if self._scanner is None:
            return
        try:
            await self._scanner.stop()
        except Exception as e:
            self._scanner = None
            raise ScanError(describe_failure(e, self.adapter, "stop")) from e

    def renew(self) -> None:
        self._scanner = None

    async def check(self) -> None:
        """Fail at once when bluetoothd leaves the bus or the adapter is removed or powered off.

        bleak raises nothing while scanning when that happens (only a later stop() does, and not at
        all for a power-off), so look at what bleak's BlueZ manager knows, plus one NameHasOwner call.
        """
        if self._bluez is None:
            return
        bus, objects = self._bluez
        try:
            reply = await bus.call(_bluez_on_bus_query())
        except Exception as e:
            raise ScanError(describe_failure(e, self.adapter, "check")) from e
        if reply.body and reply.body[0] is False:
            raise ScanError(
                f"Bluetooth on {self.adapter} failed: BlueZ (org.bluez) left the system D-Bus; "
                "check `systemctl status bluetooth`"
            )
        adapter = objects.get(f"/org/bluez/{self.adapter}", {}).get("org.bluez.Adapter1")
        if adapter is None:
            raise ScanError(
                f"Bluetooth on {self.adapter} failed: adapter {self.adapter} disappeared; check the adapter "
                "(USB dongle, `dmesg`) and `bluetoothctl list`"
            )
        if adapter.get("Powered") is False:
            raise ScanError(
                f"Bluetooth on {self.adapter} failed: adapter {self.adapter} was powered off; run "
                "`rfkill unblock bluetooth` and `bluetoothctl power on`"
            )

    async def _forget(self) -> None:
        """Remove the configured sensors from BlueZ's device cache before a scan.

        BlueZ reports a device again only when its advert changes (duplicate filtering, always on for
        passive monitors, bluez#647): a pvvx-custom sensor, whose payload changes once per 10 s
        measurement, went unreported in about half of the 5 s scans of the system test. A forgotten
        device is reported at its next advert, whatever it says.
        """
        if self._bluez is None:
            return
        from dbus_fast import Message

        bus, objects = self._bluez
        for path in self._device_paths:
            if "org.bluez.Device1" in objects.get(path, {}):
                # A failure (already gone, bluetoothd busy) only costs this optimisation for one scan.
                with contextlib.suppress(Exception):
                    await bus.call(
                        Message(
                            destination="org.bluez",
                            path=f"/org/bluez/{self.adapter}",
                            interface="org.bluez.Adapter1",
                            member="RemoveDevice",
                            signature="o",
                            body=[path],
                        )
                    )

    async def _require_bluez(self) -> None:
        """Fail at once, before bleak opens a session, when BlueZ or a powered adapter is missing.

        Nobody owning org.bluez: bleak would wait 25 s for D-Bus to activate it (on a Pi without an
        adapter, bluetooth.service is skipped by its condition). A powered-off adapter: a passive
        scan "starts" but BlueZ's monitor registration is left pending in the kernel, and nothing is
        heard even after power comes back (seen with kernel 6.1, see systemtest/README.md).
        """
        from dbus_fast import BusType, Message, MessageType
        from dbus_fast.aio import MessageBus

        start_failed = f"Bluetooth scan start on {self.adapter} failed"
        try:
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
            try:
                owned = await bus.call(_bluez_on_bus_query())
                powered = None
                if owned is not None and owned.body and owned.body[0] is True:
                    powered = await bus.call(
                        Message(
                            destination="org.bluez",
                            path=f"/org/bluez/{self.adapter}",
                            interface="org.freedesktop.DBus.Properties",
                            member="Get",
                            signature="ss",
                            body=["org.bluez.Adapter1", "Powered"],
                        )
                    )
            finally:
                bus.disconnect()
        except Exception as e:
            raise ScanError(describe_failure(e, self.adapter, "start")) from e
        if powered is None:
            if any(Path("/sys/class/bluetooth").glob("hci*")):
                fix = "bluetoothd is not running; start it with `systemctl start bluetooth`"
            else:
                fix = "no Bluetooth adapter in this machine (/sys/class/bluetooth is empty); check `dmesg`"
            raise ScanError(f"{start_failed}: BlueZ (org.bluez) is not on the system D-Bus; {fix}")
        if powered.message_type == MessageType.ERROR:
            raise ScanError(
                f"{start_failed}: adapter {self.adapter} not found ({powered.error_name}); adapter "
                f"{self.adapter} does not exist; check `bluetoothctl list` and `adapter:` in the config"
            )
        if powered.body and getattr(powered.body[0], "value", True) is False:
            raise ScanError(
                f"{start_failed}: adapter {self.adapter} is powered off; run `rfkill unblock bluetooth` "
                "and `bluetoothctl power on`"
            )

    async def _attach_bluez(self) -> None:
        """Reach bleak's BlueZ manager (its D-Bus connection and object cache) for check()."""
        try:
            from bleak.backends.bluezdbus.manager import get_global_bluez_manager

            manager = await get_global_bluez_manager()
            self._bluez = (manager._bus, manager._properties)
        except Exception as e:  # an internal of bleak changed: scanning works, only the fast check is lost
            log.warning("cannot watch BlueZ for failures between scans (%s); failures show at the next scan", e)


def _bluez_on_bus_query() -> Any:
    """The D-Bus call that says whether bluetoothd (org.bluez) is on the bus right now."""
    from dbus_fast import Message  # bleak's own D-Bus library, in every version we support

    return Message(
        destination="org.freedesktop.DBus",
        path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus",
        member="NameHasOwner",
        signature="s",
        body=["org.bluez"],
    )


def _bluez_args_take_adapter() -> bool:
    """bleak >= 1.0 takes the adapter inside `bluez={...}` and deprecates the keyword."""
    try:
        from bleak.args.bluez import BlueZScannerArgs
    except ImportError:
        return False
    return "adapter" in BlueZScannerArgs.__annotations__


def _passive_unavailable(e: Exception) -> bool:
    # bleak >= 0.21 raises BleakNoPassiveScanError; 0.20 a BleakError naming passive scanning.
    return type(e).__name__ == "BleakNoPassiveScanError" or "passive scanning" in str(e)


def describe_failure(e: BaseException, adapter: str, action: str) -> str:
    """One line naming what failed and the likely fix, from whatever bleak or D-Bus raised."""
    # bleak 3's BleakBluetoothNotAvailableError prints as a tuple; its message is the first argument.
    plain = type(e).__name__ == "BleakBluetoothNotAvailableError" and e.args and isinstance(e.args[0], str)
    text = (e.args[0] if plain else str(e)) or type(e).__name__
    if (
        isinstance(e, (FileNotFoundError, ConnectionRefusedError))
        or "ServiceUnknown" in text
        or "org.bluez was not provided" in text
    ):
        fix = "BlueZ is not running on the system D-Bus; start it with `systemctl start bluetooth`"
    elif ("not found" in text and adapter in text) or "No Bluetooth adapters" in text:
        fix = f"adapter {adapter} does not exist; check `bluetoothctl list` and `adapter:` in the config"
    elif "NotReady" in text or "No powered" in text or "powered" in text.lower():
        fix = f"adapter {adapter} is powered off or blocked; run `rfkill unblock bluetooth` and `bluetoothctl power on`"
    elif "UnknownObject" in text or "does not exist" in text:
        fix = f"adapter {adapter} disappeared; check the adapter (USB dongle, `dmesg`) and `bluetoothctl list`"
    elif "AccessDenied" in text or "NotPermitted" in text or isinstance(e, PermissionError):
        fix = "not allowed to use BlueZ; the service user must be in the `bluetooth` group"
    elif "InProgress" in text:
        fix = "BlueZ reports a scan already in progress; restarting usually clears it"
    else:
        fix = "check `systemctl status bluetooth` and `journalctl -u bluetooth`"
    return f"Bluetooth scan {action} on {adapter} failed: {text.strip().splitlines()[0]}; {fix}"


def make_scanner(
    cfg: Config, devices: Sequence[Device], engine: ScanEngine, simulate: bool, advert_interval: float = 2.5
) -> Scanner:
    """The radio both front ends scan with: BlueZ, or simulated sensors advertising every `advert_interval`."""
    if simulate:
        from ble_exporter.simulator import SimulatedScanner  # it imports this module

        return SimulatedScanner(devices, engine.ingest, advert_interval=advert_interval)
    return BluezScanner(cfg.adapter, cfg.scan_mode, engine.ingest, [d.mac for d in devices])


CHECK_EVERY_SECONDS = 1.0


async def _sleep_until(stop: asyncio.Event, deadline: float, scanner: Scanner | None = None) -> None:
    """Sleep until the loop time `deadline`, waking early when `stop` is set, checking the scanner
    every second on the way (its ScanError propagates)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        delay = deadline - loop.time()
        if delay <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), min(delay, CHECK_EVERY_SECONDS))
        if scanner is not None and not stop.is_set():
            await scanner.check()


async def _watch_silence(engine: ScanEngine, scanner: Scanner, scanning: bool, limit: int) -> None:
    """Count scans that heard nothing; renew the scanning session at the limit."""
    health = engine.health
    if engine.adverts_in_window:
        if not health.up:
            log.info("scanner: adverts are arriving again")
        health.silent_scans = 0
        health.up = True
        return
    health.silent_scans += 1
    if health.silent_scans < limit:
        return
    health.up = False
    health.restarts += 1
    health.silent_scans = 0
    last = engine.last_advert
    log.warning(
        "scanner: no advert at all in %d scans on %s (%s mode, last advert %s); restarting the scanner",
        limit,
        getattr(scanner, "adapter", "-"),
        scanner.mode,
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last)) if last else "never",
    )
    if scanning:
        await scanner.stop()
    scanner.renew()
    if scanning:
        await scanner.start()


async def run_cycles(
    engine: ScanEngine,
    scanner: Scanner,
    interval: float,
    duration: float,
    stop: asyncio.Event,
    *,
    continuous: bool = False,
    silent_scans_before_restart: int = 0,
    started: asyncio.Event | None = None,
    on_scan: Callable[[], None] | None = None,
) -> None:
    """Every `interval` seconds scan for `duration` and publish the snapshot; runs until `stop` is set.

    With `continuous` (the watch view) the radio stays on and only the windows rotate, so readings
    arrive per advert. A ScanError propagates: the caller decides to exit.
    """
    loop = asyncio.get_running_loop()
    next_start = loop.time()
    scanning = False
    try:
        while not stop.is_set():
            engine.open_window(time.time())
            if not scanning:
                log.debug("scan: start (%s, %s)", scanner.mode, f"{duration:g}s")
                await scanner.start()
                scanning = True
                engine.health.mode = scanner.mode
                if started is not None:
                    started.set()
            await _sleep_until(stop, loop.time() + duration, scanner)
            if not continuous or stop.is_set():
                await scanner.stop()
                scanning = False
            snapshot = engine.close_window(time.time())
            log.info(
                "scan: end, heard %d of %d devices (%s), %d adverts from any device",
                len(snapshot.devices),
                len(engine.devices),
                ", ".join(d.name for d in snapshot.devices) or "none",
                engine.adverts_in_window,
            )
            if engine.devices and silent_scans_before_restart > 0:
                await _watch_silence(engine, scanner, scanning, silent_scans_before_restart)
            if on_scan is not None:
                on_scan()
            next_start += interval
            if next_start < loop.time():  # a slow stop: skip missed cycles rather than scan back to back
                next_start = loop.time() + (0 if continuous else interval - duration)
            await _sleep_until(stop, next_start, scanner)
    finally:
        if scanning:  # leave BlueZ not discovering; a failure here must not hide the one that got us here
            try:
                await asyncio.shield(scanner.stop())
            except ScanError as e:
                log.warning("%s", e)
