"""The scan engine: the one mutable state both front ends read.

Adverts go in through `ingest` (address filter first, then parse, then merge into the open scan
window). `close_window` turns the window into an immutable `Snapshot` and swaps it in whole, so
readers (the /metrics collector, the watch view) never see a half-updated scan. Time is passed in,
which keeps the engine pure and its tests free of clocks. Everything runs on one event loop: no locks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from ble_exporter.devices import Device
from ble_exporter.parser import SERVICE_UUIDS, Format, NoReading, NotDecodable, Reading, Reason, parse
from ble_exporter.reception import Reception

log = logging.getLogger(__name__)

# Encryption counter resets (battery change, reflash) are accepted when the new counter is this small,
# or when the device has not been accepted for RESET_AFTER_SECONDS: other receivers lose a sensor
# forever by rejecting every packet after a reset (bthome-ble #116).
COUNTER_RESET_BELOW = 256
RESET_AFTER_SECONDS = 3600.0
# Formats whose encryption counter is 32-bit and never goes back. Encrypted pvvx custom and atc1441
# carry an 8-bit measurement count that wraps every 256 measurements, so it can't tell a replay from a
# counter that wrapped; their AES-CCM tag still authenticates every packet. (MiBeacon's 32-bit counter
# counts measurements too: pvvx sends each encrypted frame for all adverts of its measurement.)
COUNTER_FORMATS = frozenset({Format.BTHOME_V2, Format.BTHOME_V1, Format.MIJIA})
# What ble_exporter_advertisements_rejected_total counts (from start-up, at 0 until it happens): every
# reason but unknown_uuid, as the engine parses only the service data of the UUIDs the parser knows.
REJECTION_REASONS = tuple(r for r in Reason if r is not Reason.UNKNOWN_UUID)
HISTORY_SECONDS = 600.0
HISTORY_MAX = 1024  # entries per device, whatever the advert rate (a fast or spoofed sender, a soak)


@dataclass(frozen=True, slots=True)
class Readings:
    """What is known of a device over some packets: over one scan (the window, then its snapshot) or
    since start-up (the live state the watch view reads). Immutable, so a published snapshot is too."""

    temperature: float | None = None
    humidity: float | None = None
    battery: int | None = None
    voltage: float | None = None
    rssi: int | None = None
    format: Format | None = None
    encrypted: bool = False
    last_seen: float | None = None
    packets: int = 0

    def merged(self, r: Reading, rssi: int | None, now: float) -> Readings:
        """One more packet overlaid: a field the packet lacks keeps its value (pvvx sends temperature
        and voltage in separate packets)."""
        return Readings(
            self.temperature if r.temperature is None else r.temperature,
            self.humidity if r.humidity is None else r.humidity,
            self.battery if r.battery is None else r.battery,
            self.voltage if r.voltage is None else r.voltage,
            self.rssi if rssi is None else rssi,
            r.format,
            r.encrypted,
            now,
            self.packets + 1,
        )


NOTHING_HEARD = Readings()


@dataclass(slots=True)
class LiveState:
    """One device since start-up, updated per advert (the watch view reads this)."""

    mac: str
    name: str | None  # None: not in the config (only tracked when the engine keeps unknown devices)
    readings: Readings = NOTHING_HEARD
    history: list[tuple[float, float]] = field(default_factory=list)  # (time, temperature) for trends


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """One configured device's readings merged over one scan."""

    device: Device
    readings: Readings  # calibrated, where the device is; rssi: the strongest adapter's
    raw: Readings | None = None  # as the sensor sent them, where the device is calibrated
    adapters: Mapping[str, int | None] = field(default_factory=dict)  # adapter -> its latest RSSI in the scan


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The result of one finished scan: only devices heard during it, in config order."""

    started: float | None = None
    ended: float | None = None
    devices: tuple[DeviceSnapshot, ...] = ()


@dataclass(slots=True)
class Counters:
    adverts_received: int = 0  # every advert the scanner reported, configured device or not
    adverts_decoded: int = 0
    rejected: dict[Reason, int] = field(default_factory=dict)
    scans: int = 0


class ScanEngine:
    def __init__(
        self, devices: Iterable[Device], keep_unknown: bool = False, adapters: Iterable[str] = ("hci0",)
    ) -> None:
        self.devices = tuple(devices)
        self.adapters = tuple(adapters)
        self._by_mac: dict[str, Device] = {d.mac: d for d in self.devices}
        self.keep_unknown = keep_unknown
        self.live: dict[str, LiveState] = {d.mac: LiveState(d.mac, d.name) for d in self.devices}
        self.reception: dict[str, Reception] = {d.mac: Reception() for d in self.devices}
        # mac -> adapter -> scans in which that adapter heard a reading of the device
        self.adapter_scans_heard: dict[str, dict[str, int]] = {d.mac: {} for d in self.devices}
        self.counters = Counters()
        self.snapshot = Snapshot()
        self._window: dict[str, Readings] = {}
        self._raw_window: dict[str, Readings] = {}  # calibrated devices' readings as sent
        self._heard_by: dict[str, dict[str, int | None]] = {}  # mac -> adapter -> latest RSSI, in the window
        self._window_started: float | None = None
        self._adverts_in_window = 0
        self._last_counter: dict[str, tuple[int, float, int]] = {}  # mac -> (counter, time accepted, the one before)
        self._warned: set[tuple[str, Reason]] = set()

    def set_devices(self, devices: Iterable[Device]) -> None:
        """A reloaded config's devices: those that stay keep their live state, counters and place in the
        published snapshot (under their new name); a removed device leaves the snapshot at once; a
        device whose bindkey changed starts a new encryption counter and new reception counters."""
        old = self._by_mac
        self.devices = tuple(devices)
        self._by_mac = {d.mac: d for d in self.devices}
        live: dict[str, LiveState] = {}
        for d in self.devices:
            state = self.live.get(d.mac) or LiveState(d.mac, d.name)
            state.name = d.name
            live[d.mac] = state
            if d.mac in old and old[d.mac].bindkey != d.bindkey:
                self._last_counter.pop(d.mac, None)
                self._warned = {w for w in self._warned if w[0] != d.mac}
                self.reception.pop(d.mac, None)
        self.reception = {d.mac: self.reception.get(d.mac) or Reception() for d in self.devices}
        self.adapter_scans_heard = {d.mac: self.adapter_scans_heard.get(d.mac, {}) for d in self.devices}
        if self.keep_unknown:
            live.update({mac: s for mac, s in self.live.items() if mac not in old and mac not in live})
        self.live = live
        self._window = {mac: r for mac, r in self._window.items() if mac in self._by_mac}
        self._raw_window = {mac: r for mac, r in self._raw_window.items() if mac in self._by_mac}
        self._heard_by = {mac: a for mac, a in self._heard_by.items() if mac in self._by_mac}
        published = self.snapshot
        kept = {d.device.mac: d for d in published.devices}
        heard = tuple(replace(kept[d.mac], device=d) for d in self.devices if d.mac in kept)
        self.snapshot = Snapshot(published.started, published.ended, heard)

    # -- the hot path -------------------------------------------------------------------------------

    def set_adapters(self, adapters: Iterable[str]) -> None:
        """A reloaded config's adapters: the counters of those that stay are kept."""
        self.adapters = tuple(adapters)
        for heard in self.adapter_scans_heard.values():
            for gone in heard.keys() - set(self.adapters):
                del heard[gone]

    def ingest(
        self, mac: str, rssi: int | None, service_data: Mapping[str, bytes], now: float, adapter: str = "hci0"
    ) -> None:
        """Take one advert as the scanner reports it; unknown devices cost one dict lookup."""
        self.counters.adverts_received += 1
        self._adverts_in_window += 1
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
                self._ingest_configured(device, rssi, parse(uuid16, data, mac, device.bindkey), now, adapter)

    def _ingest_configured(
        self, device: Device, rssi: int | None, result: Reading | NoReading | NotDecodable, now: float, adapter: str
    ) -> None:
        if isinstance(result, NotDecodable):
            self._reject(device, result.reason)
            return
        if isinstance(result, NoReading):
            # A MiBeacon frame without objects: not authenticated, so no sighting of a sensor that
            # encrypts; part of its normal stream, so no downgrade either. Counted as received only.
            return
        if device.bindkey is not None:
            if not result.encrypted:
                self._reject(device, Reason.DOWNGRADE)
                return
            if result.counter is not None and result.format in COUNTER_FORMATS:
                verdict = self._counter_ok(device.mac, result.counter, now)
                if verdict is None:  # a late copy of the frame before: taken already
                    return
                if not verdict:
                    self._reject(device, Reason.REPLAY)
                    return
        self.counters.adverts_decoded += 1
        mac = device.mac
        reading = result
        if device.calibration is not None:  # stored calibrated; the raw values kept beside for /status
            self._raw_window[mac] = self._raw_window.get(mac, NOTHING_HEARD).merged(result, rssi, now)
            reading = device.calibration.apply(result)
        self._window[mac] = self._window.get(mac, NOTHING_HEARD).merged(reading, rssi, now)
        heard_by = self._heard_by.get(mac)
        if heard_by is None:
            heard_by = self._heard_by[mac] = {}
        if rssi is not None or adapter not in heard_by:
            heard_by[adapter] = rssi
        _update_live(self.live[mac], reading, rssi, now)
        # The frame counter: 32 bits where the format's encryption counter is one, else the 8-bit one.
        if result.encrypted and result.format in COUNTER_FORMATS:
            number, bits = result.counter, 32
        else:
            number, bits = result.packet_id, 8
        if number is not None:
            reception = self.reception[mac]
            if number not in (reception.last_frame, reception.previous_frame):  # the previous: a late copy
                reception.frame(number, bits, now)

    def _ingest_unknown(
        self, mac: str, rssi: int | None, result: Reading | NoReading | NotDecodable, now: float
    ) -> None:
        if not isinstance(result, Reading):
            return
        state = self.live.get(mac)
        if state is None:
            state = self.live[mac] = LiveState(mac, None)
        _update_live(state, result, rssi, now)

    def _counter_ok(self, mac: str, counter: int, now: float) -> bool | None:
        """A counter above the last accepted one, or a reset (see COUNTER_RESET_BELOW), is accepted; the
        same counter again is the same advert reported again and is accepted as a sighting without moving
        the state: BlueZ reports an unchanged advert again at every scan (the exporter makes it forget
        the sensors, see bluez.py) and when only its RSSI changed, and pvvx sends each encrypted MiBeacon
        frame for all the adverts of its measurement. The counter before the last is neither (None): with
        several adapters, one may report a frame just after another reported the next, and its older
        values are not taken. Only a lower counter is a replay."""
        last = self._last_counter.get(mac)
        if last is not None and counter == last[0]:
            return True
        if last is not None and counter == last[2]:
            return None
        if last is None or counter > last[0] or counter < COUNTER_RESET_BELOW or now - last[1] > RESET_AFTER_SECONDS:
            if last is not None and counter <= last[0]:
                log.warning(
                    "device %s: encryption counter restarted (%d after %d); accepted as a reset",
                    mac,
                    counter,
                    last[0],
                )
            self._last_counter[mac] = (counter, now, -1 if last is None else last[0])
            return True
        return False

    def _reject(self, device: Device, reason: Reason) -> None:
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
        self._window, self._raw_window, self._heard_by = {}, {}, {}
        self._window_started = now
        self._adverts_in_window = 0

    def close_window(self, now: float) -> Snapshot:
        """Publish the open window as the new snapshot, replacing the previous one at once."""
        window = self._window
        raw = self._raw_window
        heard_by = self._heard_by
        devices = tuple(
            DeviceSnapshot(d, _strongest(r, by), raw.get(d.mac), by)
            for d in self.devices
            if (r := window.get(d.mac)) is not None
            for by in [heard_by.get(d.mac, {})]
        )
        for mac, reception in self.reception.items():
            reception.scans += 1
            reception.scans_heard += mac in window
        for mac, by in heard_by.items():
            counts = self.adapter_scans_heard[mac]
            for adapter in by:
                counts[adapter] = counts.get(adapter, 0) + 1
        self.snapshot = Snapshot(started=self._window_started, ended=now, devices=devices)
        self.counters.scans += 1
        self._window, self._raw_window, self._heard_by = {}, {}, {}
        self._window_started = None
        return self.snapshot

    @property
    def adverts_in_window(self) -> int:
        """Adverts of any device heard since the window opened: zero over several scans means a silent scanner."""
        return self._adverts_in_window


_EXPLAIN = {
    Reason.DOWNGRADE: "plaintext packet from a device that has a bindkey (possible spoofing, or encryption "
    "was turned off in the firmware: remove the bindkey from the config if so)",
    Reason.REPLAY: "encryption counter went back (a replayed packet; after a counter restart the sensor is "
    "accepted again once its counter is below 256, or after an hour)",
    Reason.ENCRYPTED_NO_KEY: "the packet is encrypted but the config has no bindkey for this device; add `bindkey:`",
    Reason.DECRYPT_FAILED: "decryption failed: the bindkey in the config is probably wrong for this device",
}


def _strongest(readings: Readings, heard_by: Mapping[str, int | None]) -> Readings:
    """A device heard on several adapters in a scan: its RSSI is the strongest adapter's."""
    if len(heard_by) < 2:
        return readings
    levels = [rssi for rssi in heard_by.values() if rssi is not None]
    return replace(readings, rssi=max(levels)) if levels else readings


def _update_live(state: LiveState, r: Reading, rssi: int | None, now: float) -> None:
    state.readings = state.readings.merged(r, rssi, now)
    if r.temperature is not None:
        history = state.history
        history.append((now, r.temperature))
        if now - history[0][0] > HISTORY_SECONDS or len(history) > HISTORY_MAX:
            del history[: len(history) // 4 or 1]
