"""The BlueZ radio: scanning through bleak, and every D-Bus check and bleak version shim it needs.

bleak is imported only when a scan starts, so `--simulate` and the tests of the scan cycle need no
D-Bus. Every failure of the Bluetooth stack leaves this module as a ScanError with one line that says
what broke and what to do; the caller exits non-zero and systemd restarts the service.
Supported: bleak 0.20 (Debian 12), 0.21 (Ubuntu 24.04), 0.22 (Debian 13), 2.1 (Ubuntu 26.04), 3.0 (Debian
forky) and PyPI's newest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ble_exporter.devices import Device
from ble_exporter.parser import SERVICE_UUIDS
from ble_exporter.scanner import AdvertSink, ScanError, ScanMode

log = logging.getLogger("ble_exporter.scanner")  # one name for the scanning, as the log has always said
PASSIVE_FLAGS = b"\x06"  # the Flags AD value every firmware of these sensors advertises (see passive_patterns)
DEFAULT_OUI = "A4:C1:38"  # the LYWSD03MMC's (Telink's) address block
# Patterns per advertisement monitor. BlueZ says 16 (the kernel's HCI_MAX_ADV_MONITOR_NUM_PATTERNS), but on
# Debian 12 (kernel 6.1, BlueZ 5.66) a monitor of 8 is refused (MGMT status 0x0d) and bluetoothd then
# aborts in its clean-up (a double free): measured in the system-test guest, so never more than 7.
MAX_PATTERNS = 7
MAX_MONITORS = 3
AD_FLAGS, AD_SERVICE_DATA_UUID16 = 0x01, 0x16  # AD types (Bluetooth Assigned Numbers 2.3)
RESET_WAIT_SECONDS = 10.0  # for the adapter to report each power change of a reset


class BluezScanner:
    """bleak's BlueZ backend, passive where BlueZ offers it (or_patterns on our service UUIDs and Flags).

    `on_error` hears of the failures it survives (the fallback to active scanning, a refused reset):
    the scan cycle points it at the radio's health when it takes the scanner on.
    """

    def __init__(self, adapter: str, scan_mode: ScanMode, sink: AdvertSink, addresses: Sequence[str] = ()) -> None:
        self.adapter = adapter  # as the config names it: hci1, or the controller's address
        self.address: str | None = None if adapter.startswith("hci") else adapter
        self._by_address = self.address is not None  # resolved to a path at each new session (_require_bluez)
        self._path = f"/org/bluez/{adapter}"
        self._addresses = tuple(addresses)
        # BlueZ object paths of the configured sensors, forgotten at each scan start (see _forget).
        self._device_paths = self._paths_of(addresses)
        self._patterns = passive_patterns(addresses)
        self._patterns_changed = False  # by a reload: the next scan start makes a new monitor
        self.scan_mode = scan_mode
        self.mode = ScanMode.ACTIVE if scan_mode == ScanMode.ACTIVE else ScanMode.PASSIVE
        self._sink = sink
        self.on_error: Callable[[str], None] = lambda message: None
        self.adverts = 0
        self._scanner: Any = None
        self._bluez: tuple[Any, dict[str, Any]] | None = None

    def _on_detect(self, device: Any, adv: Any) -> None:
        self.adverts += 1
        self._sink(device.address, adv.rssi, adv.service_data, time.time(), self.adapter)

    def _new_scanner(self, mode: ScanMode) -> Any:
        """Active: one BleakScanner. Passive: one per advertisement monitor (passive_patterns); BlueZ
        reports every device of the adapter to each scanner, so only the first feeds the sink."""
        if mode == ScanMode.ACTIVE:
            return self._bleak_scanner(mode, None, self._on_detect)
        first, *more = self._patterns
        return _Together(
            [self._bleak_scanner(mode, first, self._on_detect)]
            + [self._bleak_scanner(mode, patterns, None) for patterns in more]
        )

    def _bleak_scanner(self, mode: ScanMode, patterns: Patterns | None, callback: Any) -> Any:
        from bleak import BleakScanner

        try:  # bleak >= 1.0 (PyPI)
            from bleak.args.bluez import OrPattern
        except ImportError:  # bleak 0.20 (Debian 12), 0.22 (Debian 13)
            from bleak.backends.bluezdbus.advertisement_monitor import OrPattern  # type: ignore[no-redef]
        from bleak.assigned_numbers import AdvertisementDataType

        bluez: dict[str, Any] = {}
        kwargs: dict[str, Any] = {"scanning_mode": mode.value, "bluez": bluez}
        name = self._path.rsplit("/", 1)[1]  # bleak wants the hci name, also of an adapter named by address
        if adapter_in_bluez_args(_bleak_version()):
            bluez["adapter"] = name
        else:
            kwargs["adapter"] = name
        if patterns is not None:
            bluez["or_patterns"] = [
                OrPattern(start, AdvertisementDataType(ad_type), content) for start, ad_type, content in patterns
            ]
        return BleakScanner(callback, **kwargs)

    async def start(self) -> None:
        if self._scanner is None or self._patterns_changed:
            self._patterns_changed = False
            await self._require_bluez()
            self._scanner = self._new_scanner(self.mode)
        await self._forget()
        try:
            await self._scanner.start()
        except Exception as e:
            if not (self.mode == ScanMode.PASSIVE and self.scan_mode == ScanMode.AUTO and _passive_unavailable(e)):
                self._scanner = None
                raise ScanError(describe_failure(e, self.adapter, "start")) from e
            message = (
                f"passive scanning is not available on {self.adapter} ({e}); scanning actively instead. Passive "
                "scanning needs bluetoothd --experimental (Experimental = true in /etc/bluetooth/main.conf)"
            )
            log.warning("%s", message)
            self.on_error(message)
            self.mode = ScanMode.ACTIVE
            self._scanner = self._new_scanner(ScanMode.ACTIVE)
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

    def set_devices(self, devices: Sequence[Device]) -> None:
        addresses = [d.mac for d in devices]
        self._addresses = tuple(addresses)
        self._device_paths = self._paths_of(addresses)
        patterns = passive_patterns(addresses)
        self._patterns_changed |= patterns != self._patterns
        self._patterns = patterns

    def _paths_of(self, addresses: Sequence[str]) -> list[str]:
        return [f"{self._path}/dev_{mac.replace(':', '_')}" for mac in addresses]

    async def reset(self) -> None:
        """Power the adapter off and on through BlueZ (Adapter1.Powered), as `bluetoothctl power off/on`
        does: the remedy of ble_monitor's bt_auto_restart and bluetooth-auto-recovery for a radio that
        stopped hearing while it looked fine. Debian's D-Bus policy for bluez lets the `bluetooth` group
        do it; no capability is needed. A refusal is survived (logged); an adapter that stays off is
        the usual powered-off fault."""
        self.renew()
        try:
            bus = await _system_bus()
        except Exception as e:
            raise ScanError(describe_failure(e, self.adapter, "reset")) from e
        try:
            for powered in (False, True):
                try:
                    await _set_powered(bus, self._path, powered)
                except DBusError as e:
                    message = f"adapter {self.adapter} could not be reset: {e}"
                    if powered:  # off, and it will not come back on: the powered-off fault
                        raise ScanError(f"{self._failed}: {message}; {POWER_ON}") from None
                    log.warning("%s; scanning on without a reset", message)
                    self.on_error(message)
                    return
                if not await self._wait_powered(bus, powered):
                    if powered:
                        raise ScanError(
                            f"{self._failed}: adapter {self.adapter} stayed powered off after a reset; {POWER_ON}"
                        )
                    log.warning("adapter %s did not report Powered off within %g s", self.adapter, RESET_WAIT_SECONDS)
        finally:
            bus.disconnect()

    async def _wait_powered(self, bus: Any, wanted: bool) -> bool:
        """Poll Adapter1.Powered until it is `wanted` (the kernel takes a moment), for RESET_WAIT_SECONDS."""
        deadline = time.monotonic() + RESET_WAIT_SECONDS
        while True:
            with contextlib.suppress(DBusError):
                if await _powered(bus, self._path) is wanted:
                    return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)

    @property
    def _failed(self) -> str:
        return f"Bluetooth on {self.adapter} failed"

    async def check(self) -> None:
        """Fail at once when bluetoothd leaves the bus or the adapter is removed or powered off.

        bleak raises nothing while scanning when that happens (only a later stop() does, and not at
        all for a power-off), so look at what bleak's BlueZ manager knows, plus one NameHasOwner call.
        """
        if self._bluez is None:
            return
        bus, objects = self._bluez
        try:
            running = await _bluez_running(bus)
        except Exception as e:
            raise ScanError(describe_failure(e, self.adapter, "check")) from e
        if not running:
            raise ScanError(
                f"{self._failed}: BlueZ (org.bluez) left the system D-Bus; check `systemctl status bluetooth`"
            )
        adapter = objects.get(self._path, {}).get(ADAPTER_INTERFACE)
        if adapter is None:
            raise ScanError(f"{self._failed}: {_fix('disappeared', self.adapter)}")
        if adapter.get("Powered") is False:
            raise ScanError(f"{self._failed}: adapter {self.adapter} was powered off; {POWER_ON}")

    async def _forget(self) -> None:
        """Remove the configured sensors from BlueZ's device cache before a scan.

        BlueZ reports a device again only when its advert changes (duplicate filtering, always on for
        passive monitors, bluez#647): a pvvx-custom sensor, whose payload changes once per 10 s
        measurement, went unreported in about half of the 5 s scans of the system test. A forgotten
        device is reported at its next advert, whatever it says.
        """
        if self._bluez is None:
            return
        bus, objects = self._bluez
        for path in self._device_paths:
            if DEVICE_INTERFACE in objects.get(path, {}):
                # A failure (already gone, bluetoothd busy) only costs this optimisation for one scan.
                with contextlib.suppress(Exception):
                    await _remove_device(bus, self._path, path)

    async def _require_bluez(self) -> None:
        """Fail at once, before bleak opens a session, when BlueZ or a powered adapter is missing.

        Nobody owning org.bluez: bleak would wait 25 s for D-Bus to activate it (on a Pi without an
        adapter, bluetooth.service is skipped by its condition). A powered-off adapter: a passive
        scan "starts" but BlueZ's monitor registration is left pending in the kernel, and nothing is
        heard even after power comes back (seen with kernel 6.1, see systemtest/README.md).
        """
        start_failed = f"Bluetooth scan start on {self.adapter} failed"
        try:
            bus = await _system_bus()
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise ScanError(
                f"{start_failed}: the system D-Bus is not running ({_system_bus_address()}: {e.strerror}); "
                f"start it with `systemctl start dbus`{_no_adapter_note()}"
            ) from e
        except Exception as e:
            raise ScanError(describe_failure(e, self.adapter, "start")) from e
        powered: bool | DBusError | None = None
        path: str | None = self._path
        try:
            try:
                running = await _bluez_running(bus)
                if running and self._by_address:
                    path = (await _adapter_paths(bus)).get(self.adapter)
                if running and path is not None:
                    try:
                        properties = await _adapter_properties(bus, path)
                        powered = properties.get("Powered")
                        self.address = properties.get("Address") or self.address
                    except DBusError as e:
                        powered = e
            finally:
                bus.disconnect()
        except Exception as e:
            raise ScanError(describe_failure(e, self.adapter, "start")) from e
        if path is None:
            raise ScanError(
                f"{start_failed}: no adapter has the address {self.adapter}; check `bluetoothctl list` and "
                "`adapter:` in the config"
            )
        if path != self._path:
            self._path = path
            self._device_paths = self._paths_of(self._addresses)
            log.info("adapter %s is %s", self.adapter, path.rsplit("/", 1)[1])
        if not running:
            raise ScanError(
                f"{start_failed}: BlueZ (org.bluez) is not on the system D-Bus; bluetoothd is not running: "
                f"{START_BLUEZ}{_no_adapter_note()}"
            )
        if isinstance(powered, DBusError):
            raise ScanError(
                f"{start_failed}: adapter {self.adapter} not found ({powered.name}); {_fix('no adapter', self.adapter)}"
            )
        if powered is False:
            raise ScanError(f"{start_failed}: adapter {self.adapter} is powered off; {POWER_ON}")

    async def _attach_bluez(self) -> None:
        """Reach bleak's BlueZ manager (its D-Bus connection and object cache) for check()."""
        try:
            from bleak.backends.bluezdbus.manager import get_global_bluez_manager

            manager = await get_global_bluez_manager()
            self._bluez = (manager._bus, manager._properties)
        except Exception as e:  # an internal of bleak changed: scanning works, only the fast check is lost
            log.warning("cannot watch BlueZ for failures between scans (%s); failures show at the next scan", e)


def _system_bus_address() -> str:
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")
    return address.removeprefix("unix:path=")


def _no_adapter_note() -> str:
    """Bluetooth missing underneath BlueZ too: the kernel knows no adapter (a Pi's UART radio not enabled,
    a USB dongle not plugged in), which no restart of a service will fix."""
    if any(Path("/sys/class/bluetooth").glob("hci*")):
        return ""
    if Path("/sys/class/bluetooth").exists():
        return "; and the kernel has no Bluetooth adapter (/sys/class/bluetooth is empty): check `dmesg`"
    return "; and the kernel has no Bluetooth at all (/sys/class/bluetooth is missing): check `dmesg`"


# --- BlueZ over D-Bus: each name and each call written once (as bleak's backends/bluezdbus/defs.py and
# utils.assert_reply do), with dbus_fast, bleak's own D-Bus library in every version we support ----------

BLUEZ_SERVICE = "org.bluez"
ADAPTER_INTERFACE = "org.bluez.Adapter1"
DEVICE_INTERFACE = "org.bluez.Device1"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"


class DBusError(Exception):
    """An ERROR reply: its D-Bus error name and body."""

    def __init__(self, name: str, body: Sequence[Any]) -> None:
        super().__init__(f"{name} {list(body)}")
        self.name = name


async def _system_bus() -> Any:
    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus

    return await MessageBus(bus_type=BusType.SYSTEM).connect()


async def _call(
    bus: Any, destination: str, path: str, interface: str, member: str, *, signature: str = "", body: Sequence[Any] = ()
) -> list[Any]:
    """One method call; its reply's body, or DBusError for an ERROR reply."""
    from dbus_fast import Message, MessageType

    message = Message(
        destination=destination, path=path, interface=interface, member=member, signature=signature, body=list(body)
    )
    reply = await bus.call(message)
    if reply is None:
        return []
    if reply.message_type == MessageType.ERROR:
        raise DBusError(reply.error_name or "?", reply.body)
    return list(reply.body)


async def _bluez_running(bus: Any) -> bool:
    """Whether bluetoothd (org.bluez) is on the bus right now."""
    body = await _call(
        bus,
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "NameHasOwner",
        signature="s",
        body=[BLUEZ_SERVICE],
    )
    return bool(body and body[0] is True)


async def _powered(bus: Any, adapter_path: str) -> bool | None:
    """Adapter1.Powered; DBusError when the adapter does not exist."""
    body = await _call(
        bus,
        BLUEZ_SERVICE,
        adapter_path,
        PROPERTIES_INTERFACE,
        "Get",
        signature="ss",
        body=[ADAPTER_INTERFACE, "Powered"],
    )
    value = getattr(body[0], "value", None) if body else None
    return value if isinstance(value, bool) else None


async def _adapter_properties(bus: Any, adapter_path: str) -> dict[str, Any]:
    """Adapter1's properties (Powered, Address, ...) as plain values; DBusError when there is no such adapter."""
    body = await _call(
        bus, BLUEZ_SERVICE, adapter_path, PROPERTIES_INTERFACE, "GetAll", signature="s", body=[ADAPTER_INTERFACE]
    )
    return {name: getattr(value, "value", value) for name, value in (body[0] if body else {}).items()}


async def _adapter_paths(bus: Any) -> dict[str, str]:
    """Every adapter's object path by its address (upper case), from BlueZ's object manager."""
    body = await _call(bus, BLUEZ_SERVICE, "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")
    paths: dict[str, str] = {}
    for path, interfaces in (body[0] if body else {}).items():
        address = getattr(interfaces.get(ADAPTER_INTERFACE, {}).get("Address"), "value", None)
        if isinstance(address, str):
            paths[address.upper()] = path
    return paths


async def _set_powered(bus: Any, adapter_path: str, powered: bool) -> None:
    from dbus_fast import Variant

    await _call(
        bus,
        BLUEZ_SERVICE,
        adapter_path,
        PROPERTIES_INTERFACE,
        "Set",
        signature="ssv",
        body=[ADAPTER_INTERFACE, "Powered", Variant("b", powered)],
    )


async def _remove_device(bus: Any, adapter_path: str, device_path: str) -> None:
    await _call(bus, BLUEZ_SERVICE, adapter_path, ADAPTER_INTERFACE, "RemoveDevice", signature="o", body=[device_path])


Patterns = list[tuple[int, int, bytes]]  # (start, AD type, content): an advert matching any is reported


class _Together:
    """Several BleakScanners of one adapter started and stopped as one (the first last stopped)."""

    def __init__(self, scanners: list[Any]) -> None:
        self.scanners = scanners

    async def start(self) -> None:
        started: list[Any] = []
        try:
            for scanner in self.scanners:
                await scanner.start()
                started.append(scanner)
        except Exception:
            for scanner in reversed(started):
                with contextlib.suppress(Exception):
                    await scanner.stop()
            raise

    async def stop(self) -> None:
        for scanner in reversed(self.scanners):
            await scanner.stop()


def passive_patterns(addresses: Sequence[str]) -> list[Patterns]:
    """The passive advertisement monitors' patterns, at most MAX_PATTERNS each: the first monitor's are the
    ones every version needs (and all that was registered before sensors without Flags were).

    Flags (LE General Discoverable, no BR/EDR) is what the pvvx, atc1441 and Xiaomi firmwares send,
    and matches on every BlueZ. A sensor can send no Flags (MJWSD05MMC ships so, pvvx lets users turn
    them off); its service data must match then, and BlueZ matches it two ways. Up to 5.68 a
    service-data pattern is compared with the UUID and the payload after it: the UUID patterns match.
    From 5.69 (Debian 13's 5.82) it is compared with the payload only when the controller has no
    monitor offload, as the Pi's has none (bluez #1176 #2110), so the patterns below are on the
    payload's first bytes: BTHome v2's device-info byte (plain, encrypted), plain BTHome v1's packet
    id object, MiBeacon's frame control (version 5), and the address pvvx custom (reversed, from its
    third byte) and atc1441 (in order) start with, by the configured sensors' address blocks (OUIs;
    as many as the kernel's 16 patterns leave room for). Each is harmless where the other BlueZ
    compares it, and the engine keeps only the configured addresses. Encrypted pvvx custom, atc1441
    and BTHome v1 payloads start with a counter or ciphertext: with no Flags those are heard passively
    only up to BlueZ 5.68 (README)."""
    service_data = AD_SERVICE_DATA_UUID16
    first = [(0, service_data, uuid16.to_bytes(2, "little")) for uuid16 in sorted(set(SERVICE_UUIDS.values()))]
    first.append((0, AD_FLAGS, PASSIVE_FLAGS))
    payload = [
        (0, service_data, b"\x40"),  # BTHome v2, plain (device info: version 2)
        (0, service_data, b"\x41"),  # BTHome v2, encrypted
        (0, service_data, b"\x02\x00"),  # BTHome v1, plain: the packet id object pvvx sends first
        (1, service_data, b"\x58"),  # MiBeacon v5 (frame control 0x58xx, pvvx and Xiaomi)
    ]
    sensors_in = Counter(mac.upper()[:8] for mac in addresses)
    ouis = sorted(sensors_in, key=lambda oui: (-sensors_in[oui], oui)) or [DEFAULT_OUI]  # the most used first
    room = MAX_PATTERNS * (MAX_MONITORS - 1) - len(payload)
    for oui in ouis[: room // 2]:
        block = bytes.fromhex(oui.replace(":", ""))
        payload += [(3, service_data, block[::-1]), (0, service_data, block)]  # pvvx custom, atc1441
    monitors = [first]
    for pattern in payload:
        if len(monitors[-1]) == MAX_PATTERNS or monitors[-1] is first:
            monitors.append([])
        monitors[-1].append(pattern)
    return monitors


def adapter_in_bluez_args(bleak_version: str) -> bool:
    """bleak 3.0 (Debian forky) takes the adapter inside `bluez={"adapter": ...}` and deprecates the
    `adapter=` keyword, with a DeprecationWarning for each scanner; older bleak (0.20 to 2.x) knows
    only the keyword."""
    return int(bleak_version.split(".", 1)[0]) >= 3


@functools.cache
def _bleak_version() -> str:
    return importlib.metadata.version("bleak")


def _passive_unavailable(e: Exception) -> bool:
    # bleak 0.21-0.22 raise BleakNoPassiveScanError; 0.20 and >= 1.0 a BleakError naming passive scanning.
    return type(e).__name__ == "BleakNoPassiveScanError" or "passive scanning" in str(e)


# Kinds of failure, by D-Bus error name (bleak's BleakDBusError.dbus_error) ...
_DBUS_KINDS = {
    "org.freedesktop.DBus.Error.ServiceUnknown": "not running",
    "org.bluez.Error.NotReady": "powered off",
    "org.freedesktop.DBus.Error.UnknownObject": "disappeared",
    "org.freedesktop.DBus.Error.AccessDenied": "denied",
    "org.bluez.Error.NotPermitted": "denied",
    "org.bluez.Error.InProgress": "in progress",
}
# ... and by BleakBluetoothNotAvailableError.reason (bleak >= 1.0).
_REASON_KINDS = {
    "NO_BLUETOOTH": "no adapter",
    "NO_BLE_CENTRAL_ROLE": "no adapter",
    "POWERED_OFF": "powered off",
    "DENIED_BY_USER": "denied",
    "DENIED_BY_SYSTEM": "denied",
    "DENIED_BY_UNKNOWN": "denied",
}
# What to do about each kind; every message of this module takes its fix from here.
POWER_ON = "run `rfkill unblock bluetooth` and `bluetoothctl power on`"
START_BLUEZ = "start it with `systemctl start bluetooth`"
_FIXES = {
    "not running": f"BlueZ is not running on the system D-Bus; {START_BLUEZ}",
    "no adapter": "adapter {adapter} does not exist; check `bluetoothctl list` and `adapter:` in the config",
    "powered off": f"adapter {{adapter}} is powered off or blocked; {POWER_ON}",
    "disappeared": "adapter {adapter} disappeared; check the adapter (USB dongle, `dmesg`) and `bluetoothctl list`",
    "denied": "not allowed to use BlueZ; the service user must be in the `bluetooth` group",
    "in progress": "BlueZ reports a scan already in progress; restarting usually clears it",
    "other": "check `systemctl status bluetooth` and `journalctl -u bluetooth`",
}


def _fix(kind: str, adapter: str) -> str:
    return _FIXES[kind].format(adapter=adapter)


def _not_available_error() -> type[Exception] | None:
    try:  # bleak >= 1.0
        from bleak.exc import BleakBluetoothNotAvailableError
    except ImportError:
        return None
    return BleakBluetoothNotAvailableError


def _kind(e: BaseException, text: str, adapter: str) -> str:
    """What failed: from bleak's typed errors where the installed bleak has them, else from the message
    (bleak 0.20's BleakError, dbus_fast's own errors)."""
    not_available = _not_available_error()
    if not_available is not None and isinstance(e, not_available):
        kind = _REASON_KINDS.get(getattr(getattr(e, "reason", None), "name", ""))
        if kind is not None:
            return kind
    dbus_error = getattr(e, "dbus_error", None)
    if isinstance(dbus_error, str) and dbus_error in _DBUS_KINDS:
        return _DBUS_KINDS[dbus_error]
    if (
        isinstance(e, (FileNotFoundError, ConnectionRefusedError))
        or "ServiceUnknown" in text
        or "org.bluez was not provided" in text
    ):
        return "not running"
    if ("not found" in text and adapter in text) or "No Bluetooth adapters" in text:
        return "no adapter"
    if "NotReady" in text or "No powered" in text or "powered" in text.lower():
        return "powered off"
    if "UnknownObject" in text or "does not exist" in text:
        return "disappeared"
    if "AccessDenied" in text or "NotPermitted" in text or isinstance(e, PermissionError):
        return "denied"
    if "InProgress" in text:
        return "in progress"
    return "other"


def describe_failure(e: BaseException, adapter: str, action: str) -> str:
    """One line naming what failed and the likely fix, from whatever bleak or D-Bus raised."""
    # bleak >= 2's BleakBluetoothNotAvailableError prints as a tuple; its message is the first argument.
    not_available = _not_available_error()
    plain = not_available is not None and isinstance(e, not_available) and e.args and isinstance(e.args[0], str)
    text = (e.args[0] if plain else str(e)) or type(e).__name__
    fix = _fix(_kind(e, text, adapter), adapter)
    return f"Bluetooth scan {action} on {adapter} failed: {text.strip().splitlines()[0]}; {fix}"
