"""Simulated thermometers (the spec's test mode): real advertisement bytes, made by the encoder,
delivered through the same sink and parser as the radio's, so `--simulate` exercises every path.

Like the pvvx firmware, each sensor advertises every ~2.5 s and takes a new measurement every
fourth advert; BTHome v2 sensors alternate the climate packet and the voltage packet under the same
packet id; MiBeacon ("Mijia") sensors send temperature and humidity in three adverts of four and the
battery in the fourth, or, encrypted, one value per measurement (temperature, humidity, battery in
turn), the same frame for all adverts of the measurement (pvvx src/mi_beacon.c).

Frame counters move as the firmware's do: once per measurement, the 8-bit one wrapping at 256, the
32-bit encryption counter never; plain Mijia bumps it for its battery frame too. Of the demo sensors,
the bedroom's is far away and a third of its adverts are lost, and the balcony's browns out every few
minutes and starts counting again, so `make demo` moves every reception series.

Readings behave like a thermometer's in a room over hours and days (SimulatedSensor). A
couple of unconfigured neighbours advertise too, as they do in a block of flats.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from ble_exporter.devices import Device
from ble_exporter.encoder import encode
from ble_exporter.parser import Format, Reading, uuid128
from ble_exporter.scanner import AdvertSink, ScanMode

# The first three plain formats are the demo sensors' (DEMO_DEVICES); every format is in both lists.
PLAIN_FORMATS = (Format.BTHOME_V2, Format.PVVX, Format.MIJIA, Format.ATC1441, Format.BTHOME_V1)
ENCRYPTED_FORMATS = (Format.BTHOME_V2, Format.BTHOME_V1, Format.PVVX, Format.ATC1441, Format.MIJIA)
DEMO_DEVICES = (
    Device("A4:C1:38:00:00:01", "demo_living_room"),
    Device("A4:C1:38:00:00:02", "demo_bedroom"),
    Device("A4:C1:38:00:00:03", "demo_balcony"),
)
NEIGHBOURS = (Device("A4:C1:38:99:00:01", "neighbour_1"), Device("A4:C1:38:99:00:02", "neighbour_2"))


# Battery: a CR2032 under a LYWSD03MMC lasts about a year, from ~3.0 V to the firmware's empty mark.
DRAIN_VOLTS_PER_SECOND = 0.3 / (365 * 86400)
EMPTY_VOLTS, FULL_VOLTS = 2.2, 3.1  # the atc1441 scale the firmware's percentage follows


@dataclass(frozen=True)
class Room:
    """Where a simulated thermometer hangs."""

    temperature: float  # °C, the day's mean
    swing: float  # °C, half the day's range; warmest at 15:00 local time
    humidity: float  # %RH, the day's mean; relative humidity falls as the room warms
    rssi: float  # dBm, the level the signal wanders around


def _wander(value: float, dt: float, tau: float, sigma: float, rng: random.Random) -> float:
    """One step of slow noise (an Ornstein-Uhlenbeck process): it drifts, but is pulled back to 0 over
    `tau` seconds and stays within a few `sigma` however long it runs."""
    pull = math.exp(-dt / tau)
    return value * pull + sigma * math.sqrt(1 - pull * pull) * rng.gauss(0.0, 1.0)


@dataclass
class SimulatedSensor:
    """A thermometer in a room, as the pvvx firmware reports it: it measures every fourth advert (10 s
    at its default 2.5 s), and its readings follow a daily cycle with slow noise around the room's set
    point; its signal wanders around a level of its own and its battery drains over a year. Time is
    passed in, so a week can be simulated in a second."""

    device: Device
    format: Format
    rng: random.Random
    room: Room = Room(21.0, 1.0, 45.0, -70.0)
    volts_at_start: float = 2.95
    temperature: float = 21.0
    humidity: float = 45.0
    battery: int = 83
    voltage: float = 2.95
    rssi: int = -70
    packet_id: int = 0  # the 8-bit frame counter
    counter: int = 0  # the 32-bit encryption counter
    measurements: int = 0
    loss: float = 0.0  # the share of adverts that never arrive
    restart_every: float | None = None  # seconds between brown-outs: the counters start again
    restarts: int = 0
    adverts: int = 0
    started: float | None = None
    sent: list[Reading] = field(default_factory=list)  # kept short; tests compare with what arrives
    _last: float | None = field(default=None, init=False, repr=False)
    _noise_t: float = field(default=0.0, init=False, repr=False)
    _noise_h: float = field(default=0.0, init=False, repr=False)
    _noise_rssi: float = field(default=0.0, init=False, repr=False)
    _last_advert: float | None = field(default=None, init=False, repr=False)
    _booted: float | None = field(default=None, init=False, repr=False)

    def measure(self, now: float) -> None:
        if self.started is None:
            self.started = now
        if self._booted is None or (self.restart_every is not None and now - self._booted >= self.restart_every):
            if self._booted is not None:  # a brown-out: the firmware counts from 0 again
                self.packet_id, self.counter = 0, 0
                self.restarts += 1
            self._booted = now
        dt = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        self._noise_t = _wander(self._noise_t, dt, 1800.0, 0.3, self.rng)
        self._noise_h = _wander(self._noise_h, dt, 1800.0, 2.0, self.rng)
        local = time.localtime(now)
        hours = local.tm_hour + local.tm_min / 60 + local.tm_sec / 3600
        day = math.sin(2 * math.pi * (hours - 9) / 24)  # 1 at 15:00, -1 at 03:00
        room = self.room
        self.temperature = round(room.temperature + room.swing * day + self._noise_t, 2)
        self.humidity = round(min(99.0, max(5.0, room.humidity - 2.5 * room.swing * day + self._noise_h)), 2)
        volts = max(EMPTY_VOLTS, self.volts_at_start - DRAIN_VOLTS_PER_SECOND * (now - self.started))
        self.voltage = round(volts, 3)
        self.battery = round(100 * min(1.0, (volts - EMPTY_VOLTS) / (FULL_VOLTS - EMPTY_VOLTS)))
        self.packet_id = (self.packet_id + 1) & 0xFF
        self.counter += 1
        self.measurements += 1

    def arrives(self) -> bool:
        """Whether the advert just made reaches the receiver (a far sensor's often do not)."""
        return self.loss == 0.0 or self.rng.random() >= self.loss

    def next_payload(self, now: float) -> tuple[str, bytes]:
        """The advert sent at `now`: its (service-data key, payload), alternating pvvx's two BTHome packets."""
        if self.adverts % 4 == 0:
            self.measure(now)
        dt = 0.0 if self._last_advert is None else max(0.0, now - self._last_advert)
        self._last_advert = now
        self._noise_rssi = _wander(self._noise_rssi, dt, 60.0, 3.0, self.rng)
        self.rssi = round(min(-30.0, max(-100.0, self.room.rssi + self._noise_rssi)))
        encrypted = self.device.bindkey is not None
        climate = Reading(
            format=self.format,
            encrypted=encrypted,
            temperature=self.temperature,
            humidity=self.humidity,
            battery=self.battery,
            voltage=self.voltage,
            packet_id=self.packet_id,
        )
        reading = climate
        if self.format in (Format.BTHOME_V2, Format.BTHOME_V1):
            climate = replace(climate, voltage=None)
            reading = (
                climate
                if self.adverts % 2 == 0
                else Reading(format=self.format, encrypted=encrypted, voltage=self.voltage, packet_id=self.packet_id)
            )
        self.adverts += 1
        counter = self.counter
        if self.format == Format.MIJIA:
            reading, counter = self._mijia(climate)
        uuid16, payload = encode(reading, self.device.mac, self.device.bindkey, counter)
        self.sent.append(reading)
        del self.sent[:-8]
        return uuid128(uuid16), payload

    def _mijia(self, climate: Reading) -> tuple[Reading, int]:
        """pvvx's MiBeacon: plain, temperature and humidity (0x100D) in three adverts of four and the
        battery in the fourth; encrypted, one value per measurement in turn, counter = measurements."""
        mac = self.device.mac
        if not climate.encrypted:
            if self.adverts % 4 == 0:  # (adverts was counted already) the fourth advert of a measurement
                self.packet_id = (self.packet_id + 1) & 0xFF  # the battery frame is a frame of its own
                return Reading(format=Format.MIJIA, battery=self.battery, packet_id=self.packet_id, mac=mac), 0
            return replace(climate, battery=None, voltage=None, mac=mac), 0
        stage = self.measurements % 3
        reading = Reading(
            format=Format.MIJIA,
            encrypted=True,
            temperature=self.temperature if stage == 0 else None,
            humidity=self.humidity if stage == 1 else None,
            battery=self.battery if stage == 2 else None,
            mac=mac,
        )
        return reading, self.counter


def make_sensors(devices: Sequence[Device], seed: int | None = None) -> list[SimulatedSensor]:
    """One simulated sensor per device in a room of its own, the formats spread across devices so all
    are exercised."""
    rng = random.Random(seed)
    sensors = []
    for i, device in enumerate(devices):
        formats = ENCRYPTED_FORMATS if device.bindkey is not None else PLAIN_FORMATS
        room = Room(
            temperature=round(rng.uniform(18, 23), 1),
            swing=round(rng.uniform(0.3, 1.5), 1),
            humidity=round(rng.uniform(38, 58)),
            rssi=round(rng.uniform(-85, -55)),
        )
        sensor = SimulatedSensor(device, formats[i % len(formats)], random.Random(rng.random()), room)
        sensor.volts_at_start = round(rng.uniform(2.75, 3.05), 3)
        sensor.packet_id = rng.randint(0, 255)
        sensor.counter = rng.randint(0, 99_999)
        if device == DEMO_DEVICES[1]:  # pvvx custom: every advert carries every value, so a scan still has them
            sensor.loss = 1 / 3
        elif device == DEMO_DEVICES[2]:
            sensor.restart_every = rng.uniform(240.0, 360.0)
        sensors.append(sensor)
    return sensors


class Air:
    """The simulated sensors and their timer: what every simulated radio of one exporter hears, so that
    several adapters hear the same frames, as real ones do."""

    def __init__(
        self, devices: Sequence[Device], advert_interval: float, neighbours: Sequence[Device], seed: int | None
    ) -> None:
        self.neighbours = tuple(neighbours)
        self.devices = tuple(devices)
        self.sensors = make_sensors([*devices, *neighbours], seed)
        self.advert_interval = advert_interval
        self.radios: list[SimulatedScanner] = []  # every radio made on this air, in order
        self.listening: list[SimulatedScanner] = []  # those started
        self._task: asyncio.Task[None] | None = None

    def listen(self, radio: SimulatedScanner) -> None:
        if radio not in self.listening:
            self.listening.append(radio)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._advertise())

    async def leave(self, radio: SimulatedScanner) -> None:
        if radio in self.listening:
            self.listening.remove(radio)
        task = self._task
        if task is not None and not self.listening:
            self._task = None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def set_devices(self, devices: Sequence[Device]) -> None:
        """Keep the sensors of devices that stay, renamed or recalibrated as the config says (a changed
        bindkey makes a new one), add the new ones; once for all the radios."""
        if tuple(devices) == self.devices:
            return
        self.devices = tuple(devices)
        by_mac = {s.device.mac: s for s in self.sensors}
        new = make_sensors([*devices, *self.neighbours], seed=len(self.sensors))
        for i, sensor in enumerate(new):
            old = by_mac.get(sensor.device.mac)
            if old is not None and old.device.bindkey == sensor.device.bindkey:
                old.device = sensor.device
                new[i] = old
        self.sensors = new

    async def _advertise(self) -> None:
        while True:
            sensors = self.sensors  # a reload may replace the list
            if not sensors:
                await asyncio.sleep(self.advert_interval)
                continue
            gap = self.advert_interval / len(sensors)
            for sensor in sensors:
                now = time.time()
                key, payload = sensor.next_payload(now)
                for radio in self.listening:
                    radio.hear(sensor, {key: payload}, now)
                await asyncio.sleep(gap)


class SimulatedScanner:
    """A Scanner whose radio is a timer: while started, each sensor advertises every `advert_interval`.
    Radios made `air_of` another hear the same sensors, each at a signal level of its own per sensor."""

    mode = ScanMode.SIMULATED
    address: str | None = None

    def __init__(
        self,
        devices: Sequence[Device],
        sink: AdvertSink,
        advert_interval: float = 2.5,
        neighbours: Sequence[Device] = NEIGHBOURS,
        seed: int | None = None,
        *,
        adapter: str = "hci0",
        air_of: SimulatedScanner | None = None,
    ) -> None:
        self.air: Air = air_of.air if air_of is not None else Air(devices, advert_interval, neighbours, seed)
        self.adapter = adapter
        self._sink = sink
        # Each radio but the first hears every sensor weaker or stronger by a level of its own.
        self._level = random.Random(f"{adapter}/{len(self.air.radios)}") if self.air.radios else None
        self._offsets: dict[str, int] = {}
        self.air.radios.append(self)
        self.adverts = 0
        self.sessions = 0
        self.renewals = 0
        self.resets = 0
        self.silent = False  # True: the radio goes quiet, as BlueZ sometimes does
        self.failure: Exception | None = None  # raised by check(), as when BlueZ goes away
        self.on_error: Callable[[str], None] = lambda message: None  # the simulated radio survives nothing

    @property
    def sensors(self) -> list[SimulatedSensor]:
        return self.air.sensors

    @property
    def neighbours(self) -> tuple[Device, ...]:
        return self.air.neighbours

    async def start(self) -> None:
        if self.failure is not None:  # as BlueZ does: what fails a check fails a start too
            raise self.failure
        if self not in self.air.listening:
            self.sessions += 1
            self.air.listen(self)

    async def stop(self) -> None:
        await self.air.leave(self)

    def renew(self) -> None:
        self.renewals += 1

    async def reset(self) -> None:
        """A power cycle: like a real deaf radio's, it makes a silent one hear again."""
        self.resets += 1
        self.silent = False

    def set_devices(self, devices: Sequence[Device]) -> None:
        self.air.set_devices(devices)

    async def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def hear(self, sensor: SimulatedSensor, service_data: dict[str, bytes], now: float) -> None:
        """One advert on the air: heard unless this radio is silent or the advert is lost."""
        if self.silent or not sensor.arrives():
            return
        rssi = sensor.rssi
        if self._level is not None:
            mac = sensor.device.mac
            offset = self._offsets.get(mac)
            if offset is None:
                offset = self._offsets[mac] = self._level.choice((-1, 1)) * self._level.randint(3, 15)
            rssi = min(-30, max(-100, rssi + offset))
        self.adverts += 1
        self._sink(sensor.device.mac, rssi, service_data, now, self.adapter)
