"""(2) The whole receive path, from bleak's detection callback to the engine's state, on one core.

Every advert enters through BluezScanner._on_detect(device, adv), the callback bleak calls, with bleak's own
BLEDevice and AdvertisementData objects (made beforehand: building them is bleak's share, measured in (3)).
From there: time.time(), ScanEngine.ingest (address filter, parse, replay/downgrade checks, merge into the
scan window and the live state). Mix: 90 % adverts from 400 devices not in the config (a third of them
neighbours' thermometers sending our service UUIDs, the rest phones, TVs, tags with other service data or
none), 10 % from 20 configured sensors (16 plaintext, 4 encrypted, all four formats) as the simulator makes
them. A fresh engine per timed run, so encryption counters always rise.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RADIO_LIMIT, header, pin
from ble_exporter.bluez import BluezScanner
from ble_exporter.devices import Device
from ble_exporter.engine import ScanEngine
from ble_exporter.parser import Format
from ble_exporter.scanner import ScanMode
from ble_exporter.simulator import SimulatedSensor

CONFIGURED = 20
UNKNOWN = 400
ADVERTS = 100_000
REPEATS = 7
FORMATS = (Format.BTHOME_V2, Format.PVVX, Format.ATC1441, Format.BTHOME_V1)
OTHER_SERVICE_DATA = (
    {},
    {"0000fe9f-0000-1000-8000-00805f9b34fb": bytes(20)},  # Google
    {"0000fd6f-0000-1000-8000-00805f9b34fb": bytes(22)},  # exposure notification
    {"0000feaa-0000-1000-8000-00805f9b34fb": bytes(18)},  # Eddystone
    {"0000fe95-0000-1000-8000-00805f9b34fb": bytes(14)},  # Xiaomi MiBeacon
)


def bleak_objects(address: str, rssi: int, service_data: dict[str, bytes]) -> tuple[Any, Any]:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    device = BLEDevice(address, None, {"path": f"/org/bluez/hci0/dev_{address.replace(':', '_')}"})
    adv = AdvertisementData(None, {}, service_data, list(service_data), None, rssi, ({}, {}))
    return device, adv


def build() -> tuple[list[Device], list[tuple[Any, Any]], list[tuple[Any, Any]]]:
    rng = random.Random(3)
    configured: list[Device] = []
    sensors: list[SimulatedSensor] = []
    for i in range(CONFIGURED):
        key = rng.randbytes(16) if i % 5 == 4 else None
        device = Device(f"A4:C1:38:10:00:{i:02X}", f"room_{i}", key)
        configured.append(device)
        sensors.append(SimulatedSensor(device, FORMATS[i % 4], random.Random(i)))
    neighbours = [
        SimulatedSensor(Device(f"A4:C1:38:20:00:{i:02X}", f"n{i}"), FORMATS[i % 4], random.Random(100 + i))
        for i in range(UNKNOWN // 3)
    ]
    others = [f"{rng.randrange(256):02X}:{i >> 8:02X}:{i & 255:02X}:00:00:42" for i in range(UNKNOWN - len(neighbours))]
    stream: list[tuple[Any, Any]] = []
    unknown_only: list[tuple[Any, Any]] = []
    for n in range(ADVERTS):
        rssi = rng.randint(-95, -50)
        if n % 10 == 0:
            sensor = sensors[(n // 10) % CONFIGURED]
            key, payload = sensor.next_payload(2.5 * sensor.adverts)
            stream.append(bleak_objects(sensor.device.mac, rssi, {key: payload}))
            continue
        who = rng.randrange(UNKNOWN)
        if who < len(neighbours):
            key, payload = neighbours[who].next_payload(2.5 * neighbours[who].adverts)
            pair = bleak_objects(neighbours[who].device.mac, rssi, {key: payload})
        else:
            pair = bleak_objects(others[who - len(neighbours)], rssi, rng.choice(OTHER_SERVICE_DATA))
        stream.append(pair)
        unknown_only.append(pair)
    return configured, stream, unknown_only


def measure(devices: list[Device], adverts: list[tuple[Any, Any]]) -> tuple[float, ScanEngine]:
    """Median seconds per advert through _on_detect, a fresh engine per run."""
    state: dict[str, Any] = {}

    def setup() -> None:
        engine = ScanEngine(devices)
        engine.open_window(0.0)
        state["detect"] = BluezScanner("hci0", ScanMode.PASSIVE, engine.ingest)._on_detect
        state["engine"] = engine

    def run() -> None:
        detect = state["detect"]
        for device, adv in adverts:
            detect(device, adv)

    times = []
    for _ in range(REPEATS + 1):  # the first run warms up
        setup()
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) / len(adverts), state["engine"]


def main() -> None:
    pin({0} if os.cpu_count() else set())
    header("(2) receive path: bleak's callback -> engine state, one core")
    devices, stream, unknown_only = build()
    per_advert, engine = measure(devices, stream)
    decoded = engine.counters.adverts_decoded
    configured_adverts = sum(1 for d, _ in stream if d.address in {x.mac for x in devices})
    engine.close_window(1.0)
    assert engine.counters.adverts_received == len(stream)
    assert decoded == configured_adverts, (decoded, configured_adverts, engine.counters.rejected)
    assert len(engine.snapshot.devices) == CONFIGURED
    rate = 1 / per_advert
    print(f"mix: {len(stream):,} adverts, 90 % from {UNKNOWN} unknown devices, 10 % from {CONFIGURED} configured")
    print(
        f"whole path (BluezScanner._on_detect -> ScanEngine.ingest): {rate:,.0f} adverts/s, "
        f"{per_advert * 1e9:,.0f} ns/advert   (target ≥ 100,000/s)"
    )
    print(f"radio limit: ~{RADIO_LIMIT:,} adverts/s on a legacy channel -> headroom {rate / RADIO_LIMIT:,.0f}×")
    unknown = measure(devices, unknown_only)[0]
    print(f"unknown-device advert dropped: {unknown * 1e9:,.0f} ns each   (target < 1,000 ns)")
    configured_only = [pair for pair in stream if pair[0].address in {d.mac for d in devices}]
    configured = measure(devices, configured_only)[0]
    print(f"configured-sensor advert (parse + merge, 16 plain/4 encrypted): {configured * 1e9:,.0f} ns each")
    at_radio_limit = RADIO_LIMIT * per_advert
    print(f"CPU at the radio limit with this mix: {at_radio_limit * 100:.2f} % of a core")


if __name__ == "__main__":
    main()
