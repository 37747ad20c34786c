"""(5) The daemon process: start-up time, peak RSS, CPU per hour at the default cycle.

- Start: wall time from spawning `python -m ble_exporter run --simulate` (10 devices) to the first 200 from
  /healthz (polled every 5 ms); median of 5 starts. Peak RSS after start: VmHWM 2 s after /healthz answered.
- Compressed run: 10 devices, 0.5 s cycles with 0.25 s scans (sensors advertise every 0.083 s) for 60 s,
  /metrics scraped every second: 120 scans and ~4,300 adverts, i.e. 6× the scans and ~9× the adverts (~480) of
  10 minutes at the default 5 s / 30 s cycle. Peak RSS (VmHWM) at the end.
- Start and RSS are measured with this interpreter and with Debian's /usr/bin/python3 (what the .deb runs)
  when it has the Debian runtime packages.
- CPU per hour: the default cycle (5 s scan every 30 s), 10 simulated sensors (advertising every 2.5 s, plus
  the simulator's 2 neighbours), /metrics scraped every 15 s; process CPU time (utime + stime from /proc)
  over 60 s starting 1 s after /healthz (2 cycles: the scanning time in the window equals two full scans),
  scaled ×60. The simulated radio costs encoding instead of bleak's D-Bus work: see (3) for that per advert.
  The compressed run and the CPU measurement run side by side (CPU time is per process).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
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

SENSORS = [(f"A4:C1:38:40:00:{i:02X}", f"room_{i}", None) for i in range(10)]
STARTS = 5
COMPRESSED_SECONDS = 60
IDLE_SECONDS = 60


def start_times(tmp: Path, python: str) -> tuple[float, float, float]:
    """(median seconds to /healthz, VmRSS and VmHWM MiB 2 s after start) over STARTS runs."""
    times, rss, hwm = [], [], []
    for i in range(STARTS):
        port = free_port()
        config = write_config(tmp / f"start{i}", port, SENSORS)
        t0 = time.monotonic()
        process = start_exporter(config, "--simulate", python=python)
        try:
            wait_healthy(process, port)
            times.append(time.monotonic() - t0)
            time.sleep(2)
            now, peak = memory_mb(process.pid)
            rss.append(now)
            hwm.append(peak)
        finally:
            stop(process)
    return statistics.median(times), statistics.median(rss), statistics.median(hwm)


def compressed(tmp: Path, out: dict[str, float]) -> None:
    port = free_port()
    config = write_config(tmp / "compressed", port, SENSORS, scan_interval_seconds=0.5, scan_duration_seconds=0.25)
    process = start_exporter(config, "--simulate")
    try:
        wait_healthy(process, port)
        out["compressed_start_hwm"] = memory_mb(process.pid)[1]
        deadline = time.monotonic() + COMPRESSED_SECONDS
        while time.monotonic() < deadline:
            get(port, "/metrics")
            time.sleep(1)
        text = get(port, "/metrics")[1].decode()
        out["compressed_scans"] = metric(text, "ble_exporter_scans_total")
        out["compressed_adverts"] = metric(text, "ble_exporter_advertisements_received_total")
        out["compressed_rss"], out["compressed_hwm"] = memory_mb(process.pid)
    finally:
        stop(process)


def idle(tmp: Path, out: dict[str, float]) -> None:
    port = free_port()
    config = write_config(tmp / "idle", port, SENSORS)  # defaults: 5 s scan every 30 s
    process = start_exporter(config, "--simulate")
    try:
        wait_healthy(process, port)
        time.sleep(1)
        c0, t0 = cpu_seconds(process.pid), time.monotonic()
        while time.monotonic() - t0 < IDLE_SECONDS:
            get(port, "/metrics")
            time.sleep(min(15, IDLE_SECONDS - (time.monotonic() - t0)) if IDLE_SECONDS > 15 else 1)
        c1, t1 = cpu_seconds(process.pid), time.monotonic()
        out["idle_cpu"] = c1 - c0
        out["idle_wall"] = t1 - t0
        out["idle_adverts"] = metric(get(port, "/metrics")[1].decode(), "ble_exporter_advertisements_received_total")
    finally:
        stop(process)


def pythons() -> list[str]:
    """This interpreter, and Debian's (what the .deb runs) when it has the runtime dependencies."""
    found = [sys.executable]
    debian = "/usr/bin/python3"
    probe = "import aiohttp, prometheus_client, cryptography, yaml"
    if (
        Path(debian).exists()
        and subprocess.run([debian, "-c", probe], capture_output=True, check=False).returncode == 0
    ):
        found.append(debian)
    return found


def python_version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True, check=True
    )
    return f"{python} ({out.stdout.strip()})"


def main() -> None:
    header("(5) daemon: start time, peak RSS, CPU per hour (10 simulated sensors)")
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp_name:
        tmp = Path(tmp_name)
        for python in pythons():
            start, rss, hwm = start_times(tmp, python)
            print(
                f"{python_version(python)}: start to first /healthz 200: {start * 1e3:.0f} ms (median of {STARTS})"
                "   (target < 1 s)"
            )
            print(
                f"{python_version(python)}: RSS 2 s after start: {rss:.1f} MiB, peak (VmHWM) {hwm:.1f} MiB"
                "   (target < 40 MB)"
            )
        out: dict[str, float] = {}
        threads = [threading.Thread(target=f, args=(tmp, out)) for f in (compressed, idle)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print(
        f"after {COMPRESSED_SECONDS} s of 0.5 s cycles ({out['compressed_scans']:.0f} scans, "
        f"{out['compressed_adverts']:,.0f} adverts): RSS {out['compressed_rss']:.1f} MiB, "
        f"peak {out['compressed_hwm']:.1f} MiB (peak after start {out['compressed_start_hwm']:.1f})"
    )
    share = out["idle_cpu"] / out["idle_wall"]
    print(
        f"default cycle: {out['idle_cpu'] * 1e3:.0f} ms CPU in {out['idle_wall']:.0f} s "
        f"-> {share * 3600:.1f} s CPU per hour, {share * 100:.3f} % of a core   (target < 0.5 %)"
    )


if __name__ == "__main__":
    main()
