"""(1) Parser throughput per format on a fixed mixed set of valid packets, and bthome-ble on the same BTHome set.

The packets are real sensor streams made by the simulator's sensors (encoder output: firmware-exact bytes,
BTHome v2/v1 alternating the climate and the voltage packet, MiBeacon in pvvx's cycle, counters and packet
ids rising), 4 sensors per (format, encrypted) pair and 250 packets each. bthome-ble decodes the same
BTHome packets through its public entry point, BTHomeBluetoothDeviceData.update() (one device object per
sensor, as Home Assistant keeps them; adverts 5 s apart so that neither its packet-id de-duplication nor
its "same as last" check skips any).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import header, median_time
from ble_exporter.devices import Device
from ble_exporter.parser import SERVICE_UUIDS, Format, Reading, parse
from ble_exporter.simulator import SimulatedSensor

SENSORS_PER_SET = 4
PACKETS_PER_SENSOR = 250
REPEATS = 9
PASSES = 5  # each timed run decodes the set this many times

Packet = tuple[int, bytes, str, bytes | None]  # uuid16, payload, mac, bindkey


def streams() -> dict[tuple[str, bool], list[list[Packet]]]:
    """(format, encrypted) -> one packet list per sensor."""
    rng = random.Random(7)
    out: dict[tuple[str, bool], list[list[Packet]]] = {}
    n = 0
    for fmt in Format:
        for encrypted in (False, True):
            per_sensor = []
            for _ in range(SENSORS_PER_SET):
                n += 1
                key = rng.randbytes(16) if encrypted else None
                sensor = SimulatedSensor(Device(f"A4:C1:38:00:{n // 256:02X}:{n % 256:02X}", f"s{n}", key), fmt, rng)
                packets = []
                for _ in range(PACKETS_PER_SENSOR):
                    uuid, payload = sensor.next_payload(2.5 * sensor.adverts)
                    packets.append((SERVICE_UUIDS[uuid], payload, sensor.device.mac, key))
                per_sensor.append(packets)
            out[fmt, encrypted] = per_sensor
    return out


def flat(per_sensor: list[list[Packet]]) -> list[Packet]:
    return [p for packets in zip(*per_sensor, strict=True) for p in packets]  # interleaved, as on air


def ours(packets: list[Packet]) -> float:
    def run() -> None:
        for _ in range(PASSES):
            for uuid16, data, mac, key in packets:
                parse(uuid16, data, mac, key)

    for uuid16, data, mac, key in packets:
        assert isinstance(parse(uuid16, data, mac, key), Reading), (uuid16, data.hex(), mac)
    return PASSES * len(packets) / median_time(run, REPEATS)


def bthome_ble_rate(per_sensor: list[list[Packet]]) -> float | None:
    try:
        from bleak.backends.device import BLEDevice
        from bthome_ble import BTHomeBluetoothDeviceData
        from habluetooth import BluetoothServiceInfoBleak
    except ImportError:
        return None
    uuid128 = {v: k for k, v in SERVICE_UUIDS.items()}
    infos: list[list[Any]] = []
    for packets in per_sensor:
        mac = packets[0][2]
        device = BLEDevice(mac, None, None)
        infos.append(
            [
                BluetoothServiceInfoBleak(
                    "", mac, -60, {}, {uuid128[u]: d}, [], "local", device, None, False, 5.0 * i, None
                )
                for i, (u, d, _, _) in enumerate(packets)
            ]
        )
    keys = [packets[0][3] for packets in per_sensor]
    order = [(s, i) for i in range(len(infos[0])) for s in range(len(infos))]
    total = len(order)
    decoded = 0

    def run() -> None:
        nonlocal decoded
        parsers = [BTHomeBluetoothDeviceData(bindkey=k) for k in keys]  # fresh state: counters start over
        decoded = 0
        for s, i in order:
            update = parsers[s].update(infos[s][i])
            decoded += any(k.key in ("temperature", "voltage") for k in update.entity_values)

    # Construction of the device objects is inside run(); time it and take it out.
    construct = median_time(lambda: [BTHomeBluetoothDeviceData(bindkey=k) for k in keys], REPEATS)
    seconds = median_time(run, REPEATS) - construct
    assert decoded == total, f"bthome-ble decoded {decoded} of {total}"
    return total / seconds


def main() -> None:
    header("(1) parser: packets/s per format (fixed mixed set of valid packets)")
    sets = streams()
    try:
        import bthome_ble

        theirs_version = _dist_version("bthome-ble") if bthome_ble else None
    except ImportError:
        theirs_version = None
    print(f"{'format':<22}{'ours pkt/s':>12}{'µs/pkt':>9}{'bthome-ble pkt/s':>19}{'µs/pkt':>9}{'ratio':>8}")
    for (fmt, encrypted), per_sensor in sets.items():
        packets = flat(per_sensor)
        rate = ours(packets)
        name = f"{fmt}{' encrypted' if encrypted else ''}"
        line = f"{name:<22}{rate:>12,.0f}{1e6 / rate:>9.2f}"
        if fmt.startswith("bthome") and theirs_version is not None:
            theirs = bthome_ble_rate(per_sensor)
            if theirs is not None:
                line += f"{theirs:>19,.0f}{1e6 / theirs:>9.2f}{rate / theirs:>7.1f}×"
        print(line)
    mixed = [p for per_sensor in sets.values() for p in flat(per_sensor)]
    random.Random(1).shuffle(mixed)
    rate = ours(mixed)
    print(f"{f'mixed (all {len(sets)} sets)':<22}{rate:>12,.0f}{1e6 / rate:>9.2f}")
    plain = [p for (_, enc), per_sensor in sets.items() if not enc for p in flat(per_sensor)]
    rate = ours(plain)
    print(f"{'mixed plaintext':<22}{rate:>12,.0f}{1e6 / rate:>9.2f}")
    bthome = {k: v for k, v in sets.items() if k[0].startswith("bthome")}
    if theirs_version is not None:
        ours_rate = ours([p for per_sensor in bthome.values() for p in flat(per_sensor)])
        theirs_total = sum(len(flat(v)) for v in bthome.values())
        theirs_time = sum(len(flat(v)) / (bthome_ble_rate(v) or 1) for v in bthome.values())
        theirs_rate = theirs_total / theirs_time
        print(
            f"{'BTHome v1+v2 together':<22}{ours_rate:>12,.0f}{1e6 / ours_rate:>9.2f}"
            f"{theirs_rate:>19,.0f}{1e6 / theirs_rate:>9.2f}{ours_rate / theirs_rate:>7.1f}×   (target ≥ 5×)"
        )
        print(f"bthome-ble {theirs_version}")
    else:
        print("bthome-ble is not installed: `make bench` installs it (pip install bthome-ble)")


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
