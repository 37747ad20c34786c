#!/usr/bin/python3
"""Guest side: is the exporter's RemoveDevice before each scan (BluezScanner._forget) still needed?

Scans the way the exporter does (one passive BleakScanner, or_patterns on the BTHome and pvvx/atc1441
service UUIDs, plus one on the Flags AD, without which BlueZ >= 5.69 hears nothing here (bleak-probe.py
--flags-pattern); start, listen --scan seconds, stop, every --interval seconds) for --cycles scans,
once as is ("keep": BlueZ keeps the sensors in its device cache between scans) and once removing
the sensors from the cache before each start ("forget": what the exporter does). Prints, per
sensor and format, in how many scans it was reported, as one JSON object.

Needs the virtual sensors running (vsensor.py run) on the controllers given with --sensor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vsensor
from bleak import BleakScanner
from bleak.assigned_numbers import AdvertisementDataType
from dbus_fast import BusType, Message
from dbus_fast.aio import MessageBus

try:  # bleak >= 1.0
    from bleak.args.bluez import OrPattern
except ImportError:  # bleak 0.20 (Debian 12), 0.22 (Debian 13)
    from bleak.backends.bluezdbus.advertisement_monitor import OrPattern

UUIDS16 = (0x181A, 0xFCD2)  # pvvx custom / atc1441, BTHome v2


async def run_mode(mode: str, args: argparse.Namespace, sensors: dict[str, str]) -> dict[str, int]:
    heard: set[str] = set()
    counts = dict.fromkeys(sensors.values(), 0)

    def callback(device, _adv) -> None:
        heard.add(device.address.upper())

    patterns = [OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, u.to_bytes(2, "little")) for u in UUIDS16]
    patterns.append(OrPattern(0, AdvertisementDataType.FLAGS, b"\x06"))
    scanner = BleakScanner(callback, adapter=args.adapter, scanning_mode="passive", bluez={"or_patterns": patterns})
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        for _ in range(args.cycles):
            t = time.monotonic()
            if mode == "forget":
                for address in sensors.values():
                    await bus.call(
                        Message(
                            destination="org.bluez",
                            path=f"/org/bluez/{args.adapter}",
                            interface="org.bluez.Adapter1",
                            member="RemoveDevice",
                            signature="o",
                            body=[f"/org/bluez/{args.adapter}/dev_{address.replace(':', '_')}"],
                        )
                    )  # an error reply (not in the cache) is fine
            heard.clear()
            await scanner.start()
            await asyncio.sleep(args.scan)
            await scanner.stop()
            for address in heard & set(counts):
                counts[address] += 1
            await asyncio.sleep(max(0.0, args.interval - (time.monotonic() - t)))
    finally:
        bus.disconnect()
    return counts


async def main_async(args: argparse.Namespace) -> dict:
    mgmt = vsensor.Mgmt()
    sensors = {spec: mgmt.address(vsensor.hci_index(spec.split(":")[0])) for spec in args.sensor}
    mgmt.close()
    result: dict = {"cycles": args.cycles, "scan_s": args.scan, "interval_s": args.interval}
    for mode in ("keep", "forget"):
        counts = await run_mode(mode, args, sensors)
        result[mode] = {spec.split(":")[1]: f"{counts[a]}/{args.cycles}" for spec, a in sensors.items()}
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", default="hci0")
    ap.add_argument("--sensor", action="append", required=True, help="hciN:FORMAT of a running virtual sensor")
    ap.add_argument("--cycles", type=int, default=15)
    ap.add_argument("--scan", type=float, default=5.0)
    ap.add_argument("--interval", type=float, default=6.0)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
