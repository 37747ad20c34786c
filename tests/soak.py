"""Soak: the exporter process with simulated sensors at a compressed scan interval, scraped continuously.

    python tests/soak.py --cycles 10000 --devices 50

runs `python -m ble_exporter run --simulate` (this interpreter, this checkout) with `--devices`
configured sensors (every fourth with a bindkey, so every format and the decryption run), scans every
`--interval` seconds for `--duration`, while `--scrapers` threads GET /metrics back to back and every
answer goes through prometheus_client's text parser. It stops the process with SIGTERM after
`--cycles` scans and reports the scrapes, the resident memory (start, after warm-up, end, maximum),
the log's error lines and the exit status; its own exit status is 0 only if all of it is clean.

The suite runs a short version (tests/test_soak.py); this file is not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from support import REPO, Exporter, Scraper, free_port, proc_status, start_cli

KEY = "231d39c1d7cc1ab1aee224cd096db932"
MIB = 1024.0


@dataclass
class Report:
    cycles: int = 0  # scans the exporter completed (ble_exporter_scans_total at the end)
    devices: int = 0
    seconds: float = 0.0
    scrapes: int = 0
    scrape_failures: list[str] = field(default_factory=list)  # the first few, and how many in total below
    failed_scrapes: int = 0
    max_scrape_seconds: float = 0.0
    heard: list[int] = field(default_factory=list)  # configured devices in each scraped snapshot
    rss_start_kib: int = 0
    rss_warm_kib: int = 0  # after 10 % of the cycles
    rss_end_kib: int = 0
    rss_max_kib: int = 0
    log_lines: int = 0
    error_lines: list[str] = field(default_factory=list)
    warning_lines: int = 0
    exit_status: int | None = None
    stop_seconds: float = 0.0
    stderr: str = ""

    def problems(self, max_growth_mib: float) -> list[str]:
        found = []
        if self.failed_scrapes:
            found.append(f"{self.failed_scrapes} scrapes failed, e.g. {self.scrape_failures[:3]}")
        if self.scrapes == 0:
            found.append("no scrape at all")
        if self.error_lines:
            found.append(f"{len(self.error_lines)} error lines in the log, e.g. {self.error_lines[:3]}")
        if self.exit_status != 0:
            found.append(f"exit status {self.exit_status}: {self.stderr[-2000:]}")
        elif self.stderr:
            found.append(f"stderr: {self.stderr[-2000:]}")
        if self.stop_seconds >= 2.0:
            found.append(f"SIGTERM took {self.stop_seconds:.1f} s")
        growth = (self.rss_end_kib - self.rss_warm_kib) / MIB
        if growth > max_growth_mib:
            found.append(f"RSS grew {growth:.1f} MiB after warm-up (limit {max_growth_mib} MiB)")
        return found

    def summary(self) -> str:
        heard = self.heard or [0]
        return "\n".join(
            [
                f"soak: {self.cycles} scan cycles with {self.devices} devices in {self.seconds:.0f} s",
                f"scrapes: {self.scrapes}, every one parsed: {'yes' if not self.failed_scrapes else 'NO'} "
                f"({self.failed_scrapes} failed), slowest {self.max_scrape_seconds * 1000:.0f} ms",
                f"devices in a scrape: min {min(heard)}, median {statistics.median(heard):g}, max {max(heard)}",
                f"RSS: start {self.rss_start_kib / MIB:.1f} MiB, after warm-up {self.rss_warm_kib / MIB:.1f} MiB, "
                f"end {self.rss_end_kib / MIB:.1f} MiB, max {self.rss_max_kib / MIB:.1f} MiB",
                f"log: {self.log_lines} lines, {len(self.error_lines)} error lines, {self.warning_lines} warnings",
                f"SIGTERM: exit status {self.exit_status} after {self.stop_seconds:.2f} s",
            ]
        )


def rss_kib(pid: int) -> int:
    return proc_status(pid, "VmRSS", default=0)


def config_text(devices: int, interval: float, duration: float, port: int, log_file: Path) -> str:
    lines = [
        f"scan_interval_seconds: {interval}",
        f"scan_duration_seconds: {duration}",
        "listen_address: 127.0.0.1",
        f"listen_port: {port}",
        f"log_file: {log_file}",
        "devices:" if devices else "devices: {}",
    ]
    for i in range(devices):
        mac = f"A4:C1:38:5A:{i // 256:02X}:{i % 256:02X}"
        if i % 4 == 3:
            lines.append(f'  "{mac}": {{name: sensor_{i:03d}, bindkey: "{KEY}"}}')
        else:
            lines.append(f'  "{mac}": sensor_{i:03d}')
    return "\n".join(lines) + "\n"


class SoakScraper(Scraper):
    """/metrics back to back (and /status every 50th time), into the shared report: a scrape fails when
    it does not parse or when ble_exporter_scans_total went down."""

    def __init__(self, port: int, report: Report, lock: threading.Lock, done: threading.Event) -> None:
        super().__init__(port, every=0, timeout=5, done=done)
        self.report, self.lock = report, lock
        self.scans = 0.0
        self.heard = 0
        self.n = 0

    def check(self, body: str) -> None:
        if self.n % 50 == 49:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=5) as response:
                json.loads(response.read().decode())
        scans = heard = None
        for family in text_string_to_metric_families(body):
            if family.name == "ble_exporter_scans":
                scans = family.samples[0].value
            elif family.name == "ble_sensor_seen":
                heard = len(family.samples)
        if scans is None or scans < self.scans:
            raise RuntimeError(f"ble_exporter_scans_total went from {self.scans} to {scans}")
        self.scans, self.heard = scans, heard or 0

    def record(self, status: int | str, seconds: float) -> None:
        self.n += 1
        with self.lock:
            if status == 200:
                self.report.scrapes += 1
                self.report.heard.append(self.heard)
                self.report.max_scrape_seconds = max(self.report.max_scrape_seconds, seconds)
            else:
                self.report.failed_scrapes += 1
                if len(self.report.scrape_failures) < 10:
                    self.report.scrape_failures.append(str(status))


def run_soak(
    cycles: int,
    devices: int,
    *,
    interval: float = 0.05,
    duration: float = 0.04,
    scrapers: int = 2,
    python: str = sys.executable,
    progress: bool = False,
) -> Report:
    report = Report(devices=devices)
    with tempfile.TemporaryDirectory(prefix="ble-exporter-soak-") as tmp:
        port = free_port()
        log_file = Path(tmp) / "ble_exporter.log"
        config = Path(tmp) / "config.yaml"
        config.write_text(config_text(devices, interval, duration, port, log_file))
        began = time.monotonic()
        process = start_cli("run", "--simulate", "--config", str(config), stdout=subprocess.DEVNULL, python=python)
        done = threading.Event()
        lock = threading.Lock()
        threads: list[SoakScraper] = []
        try:
            Exporter(process, port, config, log_file).wait_healthy(30)
            report.rss_start_kib = report.rss_max_kib = rss_kib(process.pid)
            threads = [SoakScraper(port, report, lock, done) for _ in range(scrapers)]
            for thread in threads:
                thread.start()
            last_print = time.monotonic()
            while True:
                time.sleep(0.25)
                if process.poll() is not None:
                    break
                rss = rss_kib(process.pid)
                report.rss_max_kib = max(report.rss_max_kib, rss)
                scans = int(max(t.scans for t in threads))
                if not report.rss_warm_kib and scans >= cycles // 10:
                    report.rss_warm_kib = rss
                if progress and time.monotonic() - last_print > 30:
                    last_print = time.monotonic()
                    print(
                        f"  {scans}/{cycles} scans, {report.scrapes} scrapes, RSS {rss / MIB:.1f} MiB",
                        file=sys.stderr,
                    )
                if scans >= cycles:
                    break
            if process.poll() is None:
                report.rss_end_kib = rss_kib(process.pid)
                report.rss_max_kib = max(report.rss_max_kib, report.rss_end_kib)
        finally:
            done.set()
            for thread in threads:
                thread.join(10)
            report.cycles = int(max((t.scans for t in threads), default=0))
            report.seconds = time.monotonic() - began
            stopped = time.monotonic()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                _, report.stderr = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                _, report.stderr = process.communicate()
            report.stop_seconds = time.monotonic() - stopped
            report.exit_status = process.returncode
            if log_file.exists():
                with log_file.open(encoding="utf-8", errors="replace") as f:
                    for line in f:
                        report.log_lines += 1
                        if " ERROR " in line or " CRITICAL " in line or "Traceback" in line:
                            report.error_lines.append(line.rstrip())
                        elif " WARNING " in line:
                            report.warning_lines += 1
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=10_000, help="scan cycles to run (default 10000)")
    parser.add_argument("--devices", type=int, default=50, help="configured simulated sensors (default 50)")
    parser.add_argument("--interval", type=float, default=0.05, help="scan_interval_seconds (default 0.05)")
    parser.add_argument("--duration", type=float, default=0.04, help="scan_duration_seconds (default 0.04)")
    parser.add_argument("--scrapers", type=int, default=2, help="threads scraping /metrics back to back")
    parser.add_argument("--max-growth-mib", type=float, default=10.0, help="allowed RSS growth after warm-up")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the exporter")
    args = parser.parse_args(argv)
    report = run_soak(
        args.cycles,
        args.devices,
        interval=args.interval,
        duration=args.duration,
        scrapers=args.scrapers,
        python=args.python,
        progress=True,
    )
    print(report.summary())
    problems = report.problems(args.max_growth_mib)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
