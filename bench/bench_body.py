"""(7b) What a /metrics body's size costs the server: aiohttp serving N bytes, wrk -c16 on loopback.

The A/B (7) compares daemons whose /metrics differ in size (f200936's 47.5 KB, 82 KB today at 100
devices), so part of what it measures is the kernel sending more bytes. This isolates that part: the
smallest aiohttp app there is (one route, one static body, no exporter code) on Debian's python3,
pinned as in (7), for a range of body sizes. It prints scrapes/s and the server's user and kernel CPU time
per request. The kernel's share grows with the body and steps up past 64 KB, loopback's largest segment:
a body over it leaves as two segments, each passed through the receiver's TCP path on the sender's CPU.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_ab import PYTHON
from bench.bench_metrics import BOOST
from bench.common import cpu_times, free_port, get, header, stop

SIZES_KB = [int(kb) for kb in os.environ.get("BENCH_BODY_KB", "40 48 56 63 66 70 82 100").split()]
SECONDS = 5

SERVER = """
import sys
from aiohttp import web
body = b"x" * int(sys.argv[2])
async def metrics(request): return web.Response(body=body, content_type="text/plain")
app = web.Application()
app.router.add_get("/metrics", metrics)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, handle_signals=True)
"""


def measure(kb: int) -> tuple[float, float, float]:
    """(requests/s, user µs per request, kernel µs per request)"""
    port = free_port()
    server = subprocess.Popen(["taskset", "-c", "0", *BOOST, PYTHON, "-c", SERVER, str(port), str(kb * 1000)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                get(port, "/metrics", timeout=1)
                break
            time.sleep(0.05)
        user0, system0 = cpu_times(server.pid)
        cmd = ["taskset", "-c", "1", *BOOST, "wrk", "-t1", "-c16", f"-d{SECONDS}s", f"http://127.0.0.1:{port}/metrics"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        user1, system1 = cpu_times(server.pid)
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        return requests / SECONDS, (user1 - user0) / requests * 1e6, (system1 - system0) / requests * 1e6
    finally:
        stop(server)


def main() -> None:
    header(f"(7b) a static body of N KB from aiohttp on {PYTHON}, wrk -c16 {SECONDS} s, loopback")
    for kb in SIZES_KB:
        rate, user, system = measure(kb)
        print(f"  {kb:4} KB: {rate:7,.0f} requests/s, {user:4.1f} µs user + {system:4.1f} µs kernel per request")


if __name__ == "__main__":
    main()
