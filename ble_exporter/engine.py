"""The scan engine: the one mutable state both front ends read.

Adverts go in through `ingest` (address filter first, then parse, then merge into the open scan
window). `close_window` turns the window into an immutable `Snapshot` and swaps it in whole, so
readers (the /metrics collector, the watch view) never see a half-updated scan. Time is passed in,
which keeps the engine pure and its tests free of clocks. Everything runs on one event loop: no locks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ble_exporter.config import Device
from ble_exporter.parser import FORMAT_BTHOME_V1, FORMAT_BTHOME_V2, SERVICE_UUIDS, NotDecodable, Reading, parse

log = logging.getLogger(__name__)

# Rejections decided here rather than in the parser (they need per-device history).
REJECT_REPLAY = "replay"
REJECT_DOWNGRADE = "downgrade"
# Encryption counter resets (battery change, reflash) are accepted when the new counter is this small,
# or when the device has not been accepted for RESET_AFTER_SECONDS: other receivers lose a sensor
# forever by rejecting every packet after a reset (bthome-ble #116).
COUNTER_RESET_BELOW = 256
RESET_AFTER_SECONDS = 3600.0
# Formats whose encryption counter is 32-bit and rises with every advert. Encrypted pvvx custom and
# atc1441 carry an 8-bit measurement count that wraps every 256 measurements and repeats across the
# adverts of one measurement, so it can't tell a replay from a resend; their AES-CCM tag still
# authenticates every packet.
COUNTER_FORMATS = frozenset({FORMAT_BTHOME_V2, FORMAT_BTHOME_V1})


@dataclass(slots=True)
class LiveState:
    """What is known of one device, updated per advert (the watch view reads this)."""

    mac: str
    name: str | None  # None: not in the config (only tracked when the engine keeps unknown devices)
    temperature: float | None = None
    humidity: float | None = None
    battery: int | None = None
    voltage: float | None = None
    rssi: int | None = None
    format: str | None = None
    encrypted: bool = False
    last_seen: float | None = None
    packets: int = 0
    history: list[tuple[float, float]] = field(default_factory=list)  # (time, temperature) for trends


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """One device's merged readings from one scan."""

    mac: str
    name: str
    last_seen: float
    packets: int
    rssi: int | None
    format: str | None
    encrypted: bool
    temperature: float | None
    humidity: float | None
    battery: int | None
    voltage: float | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The result of one finished scan: only devices heard during it, in config order."""

    started: float | None = None
    ended: float | None = None
    devices: tuple[DeviceSnapshot, ...] = ()


@dataclass(slots=True)
class _Window:
    """Fields merged over one scan; a packet's missing fields never erase another packet's values."""

    last_seen: float = 0.0
    packets: int = 0
    rssi: int | None = None
    format: str | None = None
    encrypted: bool = False
    temperature: float | None = None
    humidity: float | None = None
    battery: int | None = None
    voltage: float | None = None


@dataclass(slots=True)
class Counters:
    adverts_received: int = 0  # every advert the scanner reported, configured device or not
    adverts_decoded: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    scans: int = 0


@dataclass(slots=True)
class ScanHealth:
    """How the scanner is doing, as the cycle runner sees it (for /status and the watch header)."""

    mode: str = "starting"  # passive, active or simulated once the first scan started
    up: bool = True  # False after `silent` scans in a row heard no advert at all
    silent_scans: int = 0
    restarts: int = 0
    last_error: str | None = None


HISTORY_SECONDS = 600.0
HISTORY_MAX = 1024  # entries per device, whatever the advert rate (a fast or spoofed sender, a soak)


class ScanEngine:
    def __init__(self, devices: Iterable[Device], keep_unknown: bool = False) -> None:
        self.devices = tuple(devices)
        self._by_mac: dict[str, Device] = {d.mac: d for d in self.devices}
        self.keep_unknown = keep_unknown
        self.live: dict[str, LiveState] = {d.mac: LiveState(d.mac, d.name) for d in self.devices}
        self.counters = Counters()
        self.health = ScanHealth()
        self.snapshot = Snapshot()
        self.last_advert: float | None = None  # any advert at all, configured or not
        self._window: dict[str, _Window] = {}
        self._window_started: float | None = None
        self._adverts_in_window = 0
        self._last_counter: dict[str, tuple[int, float]] = {}  # mac -> (counter, time accepted)
        self._warned: set[tuple[str, str]] = set()

    # -- the hot path -------------------------------------------------------------------------------

    def ingest(self, mac: str, rssi: int | None, service_data: Mapping[str, bytes], now: float) -> None:
        """Take one advert as the scanner reports it; unknown devices cost one dict lookup."""
        self.counters.adverts_received += 1
        self._adverts_in_window += 1
        self.last_advert = now
        device = self._by_mac.get(mac)
        if device is None and not self.keep_unknown:
            return
        for key, data in service_data.items():
            uuid16 = SERVICE_UUIDS.get(key)
            if uuid16 is None:
                continue
            if device is None:
                self._ingest_unknown(mac, rssi, parse(uuid16, data, mac), now)
            else:
                self._ingest_configured(device, rssi, parse(uuid16, data, mac, device.bindkey), now)

    def _ingest_configured(self, device: Device, rssi: int | None, result: Reading | NotDecodable, now: float) -> None:
        if isinstance(result, NotDecodable):
            self._reject(device, result.reason, now)
            return
        if device.bindkey is not None:
            if not result.encrypted:
                self._reject(device, REJECT_DOWNGRADE, now)
                return
            if (
                result.counter is not None
                and result.format in COUNTER_FORMATS
                and not self._counter_ok(device.mac, result.counter, now)
            ):
                self._reject(device, REJECT_REPLAY, now)
                return
        self.counters.adverts_decoded += 1
        window = self._window.get(device.mac)
        if window is None:
            window = self._window[device.mac] = _Window()
        _merge(window, result, rssi, now)
        _update_live(self.live[device.mac], result, rssi, now)

    def _ingest_unknown(self, mac: str, rssi: int | None, result: Reading | NotDecodable, now: float) -> None:
        if isinstance(result, NotDecodable):
            return
        state = self.live.get(mac)
        if state is None:
            state = self.live[mac] = LiveState(mac, None)
        _update_live(state, result, rssi, now)

    def _counter_ok(self, mac: str, counter: int, now: float) -> bool:
        last = self._last_counter.get(mac)
        if last is None or counter > last[0] or counter < COUNTER_RESET_BELOW or now - last[1] > RESET_AFTER_SECONDS:
            if last is not None and counter <= last[0]:
                log.warning(
                    "device %s: encryption counter restarted (%d after %d); accepted as a reset",
                    mac,
                    counter,
                    last[0],
                )
            self._last_counter[mac] = (counter, now)
            return True
        return False

    def _reject(self, device: Device, reason: str, now: float) -> None:
        rejected = self.counters.rejected
        rejected[reason] = rejected.get(reason, 0) + 1
        if (device.mac, reason) in self._warned:
            return
        self._warned.add((device.mac, reason))
        log.warning(
            "device %s (%s): advert rejected: %s (logged once per device)",
            device.name,
            device.mac,
            _EXPLAIN.get(reason, reason),
        )

    # -- scan windows --------------------------------------------------------------------------------

    def open_window(self, now: float) -> None:
        self._window = {}
        self._window_started = now
        self._adverts_in_window = 0

    def close_window(self, now: float) -> Snapshot:
        """Publish the open window as the new snapshot, replacing the previous one at once."""
        window = self._window
        devices = tuple(
            DeviceSnapshot(
                mac=d.mac,
                name=d.name,
                last_seen=w.last_seen,
                packets=w.packets,
                rssi=w.rssi,
                format=w.format,
                encrypted=w.encrypted,
                temperature=w.temperature,
                humidity=w.humidity,
                battery=w.battery,
                voltage=w.voltage,
            )
            for d in self.devices
            if (w := window.get(d.mac)) is not None
        )
        self.snapshot = Snapshot(started=self._window_started, ended=now, devices=devices)
        self.counters.scans += 1
        self._window = {}
        self._window_started = None
        return self.snapshot

    @property
    def adverts_in_window(self) -> int:
        """Adverts of any device heard since the window opened: zero over several scans means a silent scanner."""
        return self._adverts_in_window


_EXPLAIN = {
    REJECT_DOWNGRADE: "plaintext packet from a device that has a bindkey (possible spoofing, or encryption "
    "was turned off in the firmware: remove the bindkey from the config if so)",
    REJECT_REPLAY: "encryption counter did not increase (replayed or duplicated packet)",
    "encrypted_no_key": "the packet is encrypted but the config has no bindkey for this device; add `bindkey:`",
    "decrypt_failed": "decryption failed: the bindkey in the config is probably wrong for this device",
}


def _merge(target: _Window | LiveState, r: Reading, rssi: int | None, now: float) -> None:
    """Overlay one packet on what is known: pvvx sends temperature and voltage in separate packets."""
    target.last_seen = now
    target.packets += 1
    target.format = r.format
    target.encrypted = r.encrypted
    if rssi is not None:
        target.rssi = rssi
    if r.temperature is not None:
        target.temperature = r.temperature
    if r.humidity is not None:
        target.humidity = r.humidity
    if r.battery is not None:
        target.battery = r.battery
    if r.voltage is not None:
        target.voltage = r.voltage


def _update_live(state: LiveState, r: Reading, rssi: int | None, now: float) -> None:
    _merge(state, r, rssi, now)
    if r.temperature is not None:
        history = state.history
        history.append((now, r.temperature))
        if now - history[0][0] > HISTORY_SECONDS or len(history) > HISTORY_MAX:
            del history[: len(history) // 4 or 1]
