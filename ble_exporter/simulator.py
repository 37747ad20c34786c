"""Simulated thermometers (the spec's test mode): real advertisement bytes, made by the encoder,
delivered through the same sink and parser as the radio's, so `--simulate` exercises every path.

Like the pvvx firmware, each sensor advertises every ~2.5 s and takes a new measurement every
fourth advert; BTHome v2 sensors alternate the climate packet and the voltage packet under the same
packet id. A couple of unconfigured neighbours advertise too, as they do in a block of flats.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ble_exporter.devices import Device
from ble_exporter.encoder import encode
from ble_exporter.parser import Format, Reading, uuid128
from ble_exporter.scanner import AdvertSink, ScanMode

PLAIN_FORMATS = (Format.BTHOME_V2, Format.PVVX, Format.ATC1441, Format.BTHOME_V1)
ENCRYPTED_FORMATS = (Format.BTHOME_V2, Format.BTHOME_V1, Format.PVVX, Format.ATC1441)
DEMO_DEVICES = (
    Device("A4:C1:38:00:00:01", "demo_living_room"),
    Device("A4:C1:38:00:00:02", "demo_bedroom"),
    Device("A4:C1:38:00:00:03", "demo_balcony"),
)
NEIGHBOURS = (Device("A4:C1:38:99:00:01", "neighbour_1"), Device("A4:C1:38:99:00:02", "neighbour_2"))


@dataclass
class SimulatedSensor:
    device: Device
    format: Format
    rng: random.Random
    temperature: float = 21.0
    humidity: float = 45.0
    battery: int = 90
    voltage: float = 2.95
    packet_id: int = 0
    counter: int = 0
    adverts: int = 0
    rssi: int = -70
    sent: list[Reading] = field(default_factory=list)  # kept short; tests compare with what arrives

    def measure(self) -> None:
        self.temperature = round(min(40.0, max(-10.0, self.temperature + self.rng.uniform(-0.3, 0.3))), 2)
        self.humidity = round(min(99.0, max(5.0, self.humidity + self.rng.uniform(-1.0, 1.0))), 2)
        self.packet_id = (self.packet_id + 1) & 0xFF
        self.rssi = self.rng.randint(-90, -50)

    def next_payload(self) -> tuple[str, bytes]:
        """The next advert's (service-data key, payload), alternating pvvx's two BTHome packets."""
        if self.adverts % 4 == 0:
            self.measure()
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
        self.counter += 1
        uuid16, payload = encode(reading, self.device.mac, self.device.bindkey, self.counter)
        self.sent.append(reading)
        del self.sent[:-8]
        return uuid128(uuid16), payload


def make_sensors(devices: Sequence[Device], seed: int | None = None) -> list[SimulatedSensor]:
    """One simulated sensor per device, the formats spread across devices so all are exercised."""
    rng = random.Random(seed)
    sensors = []
    for i, device in enumerate(devices):
        formats = ENCRYPTED_FORMATS if device.bindkey is not None else PLAIN_FORMATS
        sensor = SimulatedSensor(device, formats[i % len(formats)], random.Random(rng.random()))
        sensor.temperature = round(rng.uniform(15, 25), 2)
        sensor.humidity = round(rng.uniform(35, 60), 2)
        sensor.battery = rng.randint(40, 100)
        sensor.voltage = round(2.5 + sensor.battery / 200, 3)
        sensor.packet_id = rng.randint(0, 255)
        sensors.append(sensor)
    return sensors


class SimulatedScanner:
    """A Scanner whose radio is a timer: while started, each sensor advertises every `advert_interval`."""

    mode = ScanMode.SIMULATED

    def __init__(
        self,
        devices: Sequence[Device],
        sink: AdvertSink,
        advert_interval: float = 2.5,
        neighbours: Sequence[Device] = NEIGHBOURS,
        seed: int | None = None,
    ) -> None:
        self.sensors = make_sensors([*devices, *neighbours], seed)
        self.advert_interval = advert_interval
        self._sink = sink
        self._task: asyncio.Task[None] | None = None
        self.sessions = 0
        self.renewals = 0
        self.silent = False  # True: the radio goes quiet, as BlueZ sometimes does
        self.failure: Exception | None = None  # raised by check(), as when BlueZ goes away

    async def start(self) -> None:
        if self._task is None:
            self.sessions += 1
            self._task = asyncio.get_running_loop().create_task(self._advertise())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def renew(self) -> None:
        self.renewals += 1

    async def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def _advertise(self) -> None:
        if not self.sensors:
            return
        gap = self.advert_interval / len(self.sensors)
        while True:
            for sensor in self.sensors:
                key, payload = sensor.next_payload()
                if not self.silent:
                    self._sink(sensor.device.mac, sensor.rssi, {key: payload}, time.time())
                await asyncio.sleep(gap)
