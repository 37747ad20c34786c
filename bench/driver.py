"""`python bench/driver.py run --simulate --config ...`: the real daemon (ble_exporter.main) with a drift-free
simulated radio, for (4).

The simulator sleeps a fixed gap after each advert, so under HTTP load (when every loop iteration is longer)
it falls behind and sends fewer adverts than configured. Here each advert has a deadline on the loop's clock
and late adverts are sent at once, as a radio's queued D-Bus messages would be: the feed rate holds under
load. Everything else (engine, scan cycle, HTTP, metrics) is the daemon's own code.

BENCH_GC_LOG=1 prints, at exit, how many full (generation 2) collections ran and the longest one.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ble_exporter import main, simulator


async def _paced_advertise(self: simulator.Air) -> None:
    if not self.sensors:
        return
    loop = asyncio.get_running_loop()
    gap = self.advert_interval / len(self.sensors)
    deadline = loop.time()
    sent = 0
    while True:
        for sensor in self.sensors:
            now = time.time()
            key, payload = sensor.next_payload(now)
            for radio in self.listening:
                radio.hear(sensor, {key: payload}, now)
            deadline += gap
            sent += 1
            delay = deadline - loop.time()
            if delay > 0 or sent % 8 == 0:  # late: catch up, yielding now and then
                await asyncio.sleep(max(delay, 0))


def _gc_log() -> None:
    pauses: list[float] = []
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started[0])

    gc.callbacks.append(callback)
    import atexit

    atexit.register(
        lambda: print(
            f"gc: {len(pauses)} full collections, longest {max(pauses, default=0) * 1e3:.1f} ms",
            file=sys.stderr,
        )
    )


if __name__ == "__main__":
    simulator.Air._advertise = _paced_advertise  # type: ignore[method-assign]
    if os.environ.get("BENCH_GC_LOG"):
        _gc_log()
    sys.exit(main.main(sys.argv[1:]))
