"""(3) CPU per advert through the real bleak BlueZ backend and a real dbus-daemon, split into bleak's and ours.

tests/bluez_mock.py's BluezMock (private dbus-daemon + python-dbusmock's bluez5 "bluetoothd") with one extra
harness method, AdvertiseFile, that replays a file of adverts inside the mock (one dbus-send per advert
would make the mock, not the exporter, the bottleneck). The exporter runs as a process
(`python -m ble_exporter run`, active scan, one long scan, pinned to CPU 0; the mock's processes on CPU 1).
After a warm-up round (every device's first advert: InterfacesAdded), N adverts go out as BlueZ sends
them (PropertiesChanged with RSSI and ServiceData), 90 % from 180 unknown devices, 10 % from 20 configured.
The exporter's CPU time (/proc/<pid>/stat) over the delivery, divided by the adverts it counted, is the
total per advert; "ours" is the same advert stream through BluezScanner._on_detect -> engine in-process
(as in (2)); bleak's share (dbus-fast unmarshalling, BlueZ manager, BLEDevice/AdvertisementData) is the rest.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import bluez_mock  # noqa: E402

from bench.common import (  # noqa: E402
    cpu_seconds,
    free_port,
    get,
    header,
    memory_mb,
    metric,
    start_exporter,
    stop,
    wait_healthy,
    write_config,
)
from ble_exporter.bluez import BluezScanner  # noqa: E402
from ble_exporter.devices import Device  # noqa: E402
from ble_exporter.engine import ScanEngine  # noqa: E402
from ble_exporter.parser import Format  # noqa: E402
from ble_exporter.scanner import ScanMode  # noqa: E402
from ble_exporter.simulator import SimulatedSensor  # noqa: E402

ADVERTS = 20_000  # per round
ROUNDS = 3
CHUNK = 1000
CONFIGURED = 20
UNKNOWN = 180
FORMATS = (Format.BTHOME_V2, Format.PVVX, Format.ATC1441, Format.BTHOME_V1)

REPLAY_METHOD = r'''

@dbus.service.method(HARNESS_IFACE, in_signature='ssii', out_signature='i')
def AdvertiseFile(self, adapter_name, path, start, count):
    """Deliver adverts [start, start+count) of a JSON file [[address, advert], ...] (bench/bench_bluez.py)."""
    with open(path) as f:
        adverts = json.load(f)[start:start + count]
    for address, advert in adverts:
        Advertise(self, adapter_name, address, json.dumps(advert))
    return len(adverts)
'''


def stream() -> tuple[list[Device], list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
    """(configured devices, warm-up round, measured adverts) as [address, advert-json] pairs."""
    rng = random.Random(5)
    devices: list[Device] = []
    sensors: list[SimulatedSensor] = []
    for i in range(CONFIGURED):
        key = rng.randbytes(16) if i % 5 == 4 else None
        device = Device(f"A4:C1:38:50:00:{i:02X}", f"room_{i}", key)
        devices.append(device)
        sensors.append(SimulatedSensor(device, FORMATS[i % 4], random.Random(i)))
    neighbours = [
        SimulatedSensor(Device(f"A4:C1:38:60:00:{i:02X}", f"n{i}"), FORMATS[i % 4], random.Random(100 + i))
        for i in range(UNKNOWN // 3)
    ]
    others = [f"5C:{i:02X}:00:00:00:42" for i in range(UNKNOWN - len(neighbours))]

    def advert(address: str, service_data: dict[str, bytes]) -> tuple[str, dict[str, Any]]:
        sd = {k: v.hex() for k, v in service_data.items()}
        return address, {"rssi": rng.randint(-95, -50), "service_data": sd}

    def from_sensor(sensor: SimulatedSensor) -> tuple[str, dict[str, Any]]:
        key, payload = sensor.next_payload(2.5 * sensor.adverts)
        return advert(sensor.device.mac, {key: payload})

    other_data = {"0000fe9f-0000-1000-8000-00805f9b34fb": bytes(20)}
    warmup = [from_sensor(s) for s in (*sensors, *neighbours)] + [advert(a, other_data) for a in others]
    measured = []
    for n in range(ADVERTS * ROUNDS):
        if n % 10 == 0:
            measured.append(from_sensor(sensors[(n // 10) % CONFIGURED]))
        else:
            who = rng.randrange(UNKNOWN)
            if who < len(neighbours):
                measured.append(from_sensor(neighbours[who]))
            else:
                measured.append(advert(others[who - len(neighbours)], other_data))
    return devices, warmup, measured


def our_share(devices: list[Device], adverts: list[tuple[str, dict[str, Any]]]) -> float:
    """Seconds per advert for the same stream through _on_detect -> engine, in this process."""
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    objects = []
    for address, advert in adverts:
        sd = {k: bytes.fromhex(v) for k, v in advert["service_data"].items()}
        objects.append(
            (BLEDevice(address, None, {}), AdvertisementData(None, {}, sd, list(sd), None, advert["rssi"], ({}, {})))
        )
    times = []
    for _ in range(8):
        engine = ScanEngine(devices)
        engine.open_window(0.0)
        detect = BluezScanner("hci0", ScanMode.ACTIVE, engine.ingest)._on_detect
        t0 = time.perf_counter()
        for device, adv in objects:
            detect(device, adv)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) / len(objects)


def wait_quiet(pid: int, settle: float = 0.5, timeout: float = 60) -> None:
    """Until the process's CPU time stops growing for `settle` seconds."""
    deadline = time.monotonic() + timeout
    last, since = cpu_seconds(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = cpu_seconds(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            return


def main() -> None:
    header("(3) CPU per advert through real bleak + dbus-daemon (BlueZ mock)")
    reason = bluez_mock.missing_requirements()
    if reason is not None:
        print(f"skipped: {reason}")
        return
    from importlib.metadata import version

    devices, warmup, measured = stream()
    bluez_mock._TEMPLATE_SOURCE += REPLAY_METHOD
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-bluez-") as tmp_name, bluez_mock.BluezMock() as mock:
        tmp = Path(tmp_name)
        for pid in mock.pids():
            os.sched_setaffinity(pid, {1})
        mock.add_adapter("hci0")
        files = {}
        rounds = [measured[i * ADVERTS : (i + 1) * ADVERTS] for i in range(ROUNDS)]
        for name, adverts in (("warmup", warmup), *((f"round{i}", r) for i, r in enumerate(rounds))):
            files[name] = tmp / f"{name}.json"
            files[name].write_text(json.dumps(adverts))
        config = write_config(
            tmp,
            port,
            [(d.mac, d.name, d.bindkey) for d in devices],
            scan_mode="active",
            scan_interval_seconds=3600,
            scan_duration_seconds=3600,
            watchdog_silent_scans=0,
        )
        process = start_exporter(config, env=mock.env(), cpus="0")
        try:
            wait_healthy(process, port)
            deadline = time.monotonic() + 20
            while not mock.is_discovering():
                if time.monotonic() > deadline:
                    raise RuntimeError("the exporter did not start discovery")
                time.sleep(0.05)

            def deliver(name: str, count: int) -> float:
                t0 = time.monotonic()
                for start in range(0, count, CHUNK):
                    mock._call(
                        "AdvertiseFile", "string:hci0", f"string:{files[name]}", f"int32:{start}", f"int32:{CHUNK}"
                    )
                return time.monotonic() - t0

            idle_rss, _ = memory_mb(process.pid)
            deliver("warmup", len(warmup))
            wait_quiet(process.pid)
            per_advert, rates = [], []
            for i in range(ROUNDS):
                before = metric(get(port, "/metrics")[1].decode(), "ble_exporter_advertisements_received_total")
                cpu0 = cpu_seconds(process.pid)
                sent_in = deliver(f"round{i}", ADVERTS)
                wait_quiet(process.pid)
                cpu1 = cpu_seconds(process.pid)
                text = get(port, "/metrics")[1].decode()
                received = metric(text, "ble_exporter_advertisements_received_total") - before
                if received != ADVERTS:
                    print(f"round {i}: the exporter counted {received:.0f} of {ADVERTS} adverts")
                per_advert.append((cpu1 - cpu0) / received)
                rates.append(ADVERTS / sent_in)
            decoded = metric(text, "ble_exporter_advertisements_decoded_total")
            rss, hwm = memory_mb(process.pid)
        finally:
            stop(process)
    total = statistics.median(per_advert)
    ours = our_share(devices, measured[:ADVERTS])
    print(
        f"bleak {version('bleak')}, dbus-fast {version('dbus-fast')}; "
        f"{ROUNDS} rounds of {ADVERTS:,} adverts, 90 % unknown"
    )
    print(
        f"mock delivery: {statistics.median(rates):,.0f} adverts/s (median); exporter decoded {decoded:,.0f} in all; "
        f"CPU per advert by round: {', '.join(f'{x * 1e6:.1f}' for x in per_advert)} µs"
    )
    print(
        f"CPU per advert: {total * 1e6:.1f} µs total = bleak {(total - ours) * 1e6:.1f} µs "
        f"({(total - ours) / total:.0%}) + ours {ours * 1e6:.2f} µs ({ours / total:.1%})"
    )
    print(
        f"-> one core handles ~{1 / total:,.0f} adverts/s through bleak; at the radio limit (2,600/s): "
        f"{2600 * total * 100:.0f} % of a core"
    )
    print(
        f"exporter RSS, bleak's BlueZ backend loaded: {idle_rss:.1f} MiB scanning before any advert, "
        f"{rss:.1f} MiB after them (peak {hwm:.1f} MiB; encrypted sensors load cryptography)"
    )


if __name__ == "__main__":
    main()
