#!/usr/bin/python3
"""Guest side, phase-1 proof: does bleak on one controller hear another controller's adverts?

Makes --from (e.g. hci1) advertise BTHome v2 service data through the mgmt socket, scans with
bleak on --adapter (hci0) in passive mode (advertisement monitor, or_patterns on the 16-bit service
data UUID 0xFCD2) or active mode, and measures:
  * latency: time from Add Advertising of a fresh payload to bleak's callback with that payload
  * stream: pvvx-like alternating data1/data2 for a while; which of the sent payloads arrived
Prints one JSON object; exit 0 when every latency round and >= 80 % of the stream arrived.
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

UUID_FCD2 = "0000fcd2-0000-1000-8000-00805f9b34fb"


async def probe(args: argparse.Namespace) -> dict:
    mgmt = vsensor.Mgmt()
    index = vsensor.hci_index(args.sender)
    address = mgmt.address(index)
    received: list[tuple[float, bytes]] = []
    arrived = asyncio.Event()
    wanted: list[bytes] = [b""]

    def callback(device, adv) -> None:
        if device.address.upper() != address:
            return
        data = adv.service_data.get(UUID_FCD2)
        if data is None:
            return
        received.append((time.monotonic(), bytes(data)))
        if bytes(data) == wanted[0]:
            arrived.set()

    kwargs: dict = {"adapter": args.adapter}
    if args.mode == "passive":
        from bleak.assigned_numbers import AdvertisementDataType
        from bleak.backends.bluezdbus.advertisement_monitor import OrPattern

        kwargs["scanning_mode"] = "passive"
        patterns = [OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xd2\xfc")]
        if args.flags_pattern:  # see --flags-pattern
            patterns.append(OrPattern(0, AdvertisementDataType.FLAGS, b"\x06"))
        kwargs["bluez"] = {"or_patterns": patterns}
    scanner = BleakScanner(callback, **kwargs)
    t0 = time.monotonic()
    await asyncio.wait_for(scanner.start(), 20)
    result: dict = {
        "mode": args.mode,
        "adapter": args.adapter,
        "sender": args.sender,
        "address": address,
        "scanner_start_s": round(time.monotonic() - t0, 3),
        "latency_s": [],
    }
    try:
        # latency rounds: a fresh payload each time
        for i in range(args.rounds):
            m = vsensor.measurement(index, 1000 + i)
            payload = vsensor.bthome_plain(vsensor.bthome_data1(m))
            wanted[0] = payload
            arrived.clear()
            t = time.monotonic()
            mgmt.advertise(index, vsensor.FLAGS_AD + vsensor.service_data_ad(0xFCD2, payload))
            try:
                await asyncio.wait_for(arrived.wait(), args.timeout)
                result["latency_s"].append(round(time.monotonic() - t, 3))
            except asyncio.TimeoutError:
                result["latency_s"].append(None)
        # stream: alternating data1/data2 like the firmware, new measurement every 4 packets
        sensor = vsensor.Sensor(args.sender, "bthome", None, address)
        sent: list[bytes] = []
        received.clear()
        t_end = time.monotonic() + args.stream_seconds
        while time.monotonic() < t_end:
            sensor.step(mgmt, 4)
            sent.append(bytes.fromhex(sensor.last_ad)[7:])  # strip flags AD, AD header and UUID
            await asyncio.sleep(args.tick)
        await asyncio.sleep(1.0)
        got = {p for _, p in received}
        result["stream_sent"] = len(sent)
        result["stream_received"] = sum(1 for p in sent if p in got)
        result["stream_callbacks"] = len(received)
    finally:
        await asyncio.wait_for(scanner.stop(), 20)
        mgmt.stop(index)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--adapter", default="hci0")
    ap.add_argument("--sender", default="hci1")
    ap.add_argument("--mode", choices=("passive", "active"), default="passive")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--stream-seconds", type=float, default=10.0)
    ap.add_argument("--tick", type=float, default=1.0)
    ap.add_argument(
        "--flags-pattern",
        action="store_true",
        help="also match the Flags AD (0x06): BlueZ >= 5.69 without monitor offload matches service-data "
        "patterns against the data after the UUID (bluez#1176), so the UUID pattern alone hears nothing there",
    )
    args = ap.parse_args()
    try:
        result = asyncio.run(asyncio.wait_for(probe(args), 120))
    except Exception as exc:
        print(json.dumps({"mode": args.mode, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    ok = all(x is not None for x in result["latency_s"]) and result["stream_received"] >= 0.8 * result["stream_sent"]
    result["ok"] = ok
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
