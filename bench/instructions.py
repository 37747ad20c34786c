"""Instructions per /metrics request, the measure that a shared machine's load does not move (issue 20).

Usage: python bench/instructions.py [TREE ...]   (default: this tree; TREE: a checkout, e.g. of f200936)
Environment: BENCH_CONNECTIONS (wrk -c, default 1), BENCH_SECONDS (default 5), BENCH_PYTHON (default
/usr/bin/python3).

For each tree, the HTTP server as make_app and serve build it (no scanner: a static registry of 100
devices, rendered once) runs under valgrind's callgrind on Debian's python3; wrk warms it up for 3 s, the
counters are zeroed, wrk loads /metrics for SECONDS, and the instructions counted since (user space only:
the kernel's share of each request is the same for every tree) are divided by the requests wrk made.
With one connection each request is one pass of the event loop, so repeated runs agree within 1 %; with
16 the count depends a little on how many requests a pass finds. Needs valgrind and wrk (Debian).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "1"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
PYTHON = os.environ.get("BENCH_PYTHON", "/usr/bin/python3")

SERVER = r"""
import asyncio, inspect, sys
sys.path.insert(0, sys.argv[1])
from prometheus_client import CollectorRegistry, Gauge
from ble_exporter import exporter
registry = CollectorRegistry()
for name in ("temperature_celsius", "humidity_percent", "battery_percent", "battery_volts", "rssi_dbm", "seen",
             "last_update_timestamp_seconds"):
    gauge = Gauge("ble_sensor_" + name, name, ["device"], registry=registry)
    for i in range(100):
        gauge.labels(f"room_{i}").set(20.0 + i / 7)
info = Gauge("ble_exporter_device_info", "info", ["device", "mac", "format"], registry=registry)
for i in range(100):
    info.labels(f"room_{i}", f"A4:C1:38:30:00:{i:02X}", "bthome_v2").set(1)
options = inspect.signature(exporter.make_app).parameters
extra = {}
if "auth" in options:  # as the daemon builds it: with its (user-less) basic auth
    from ble_exporter.auth import BasicAuth
    extra["auth"] = BasicAuth({})
if "landing" in options:
    extra["landing"] = lambda: "<html></html>"
snapshot = object()
app = exporter.make_app(registry, dict, generation=lambda: snapshot, metrics_max_age=1e9, **extra)
async def main():
    await exporter.serve(app, "127.0.0.1", int(sys.argv[2]))
    print("ready", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def wrk(port: int, seconds: int, connections: int) -> int:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/metrics"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stdout}{done.stderr}")
    out = done.stdout
    return int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]


def per_request(tree: Path) -> tuple[float, int]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        log = Path(tmp) / "log"
        with open(log, "w") as sink:
            server = subprocess.Popen(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}.%p",
                    PYTHON,
                    "-c",
                    SERVER,
                    str(tree),
                    str(port),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 120
            while "ready" not in log.read_text().splitlines():  # valgrind's own lines may say "already"
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{tree}: the server did not start under valgrind:\n{log.read_text()}")
                time.sleep(0.5)
            wrk(port, 3, CONNECTIONS)  # warm-up
            subprocess.run(["callgrind_control", "--zero", str(server.pid)], check=True, capture_output=True)
            requests = wrk(port, SECONDS, CONNECTIONS)
            subprocess.run(["callgrind_control", "--dump", str(server.pid)], check=True, capture_output=True)
        finally:
            server.terminate()
            server.wait(60)
        dump = Path(f"{out}.{server.pid}.1").read_text()
        instructions = int(re.search(r"^(?:summary|totals): (\d+)", dump, re.M).group(1))  # type: ignore[union-attr]
        return instructions / requests, requests


def main() -> None:
    trees = [Path(t).resolve() for t in sys.argv[1:]] or [ROOT]
    print(f"instructions per /metrics request, {PYTHON}, wrk -c{CONNECTIONS} for {SECONDS} s under callgrind")
    for tree in trees:
        count, requests = per_request(tree)
        print(f"  {tree}: {count / 1000:,.1f}k ({requests} requests)", flush=True)


if __name__ == "__main__":
    main()
