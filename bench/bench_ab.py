"""(7) A/B on the shipped runtime: /metrics under load, a base commit against this tree, interleaved.

Both sides run on Debian's `/usr/bin/python3` with Debian's packages (what the .deb runs: Python 3.11.2
and aiohttp 3.8.4 on Debian 12), each through its own `bench/driver.py` (the daemon with a drift-free
simulated radio), with 100 configured devices and back-to-back 0.3 s scans (~1,000 adverts/s, as in (4)).
The base commit (`BENCH_BASE`, default f200936: the last figures before the HTTP guard, TLS and basic
auth) is checked out into a temporary `git worktree`, removed afterwards; so is `BENCH_AB_THIS` when it
names a commit to measure instead of this working tree. Both trees are byte-compiled first, as the .deb's
postinst does (`BENCH_AB_SOURCE=1`: run from the sources, as a checkout does under PYTHONDONTWRITEBYTECODE).

Each run is a fresh daemon (pinned to CPU 0) that first hears all 100 devices, then
`wrk -t1 -c16 -d10s` on /metrics (pinned to CPU 1); it reports scrapes/s, wrk's p99 and the daemon's
peak RSS (VmHWM) after the load. Runs alternate base, this tree, this tree, base, base, this tree, ...
(`BENCH_AB_ROUNDS` pairs, default 3), so a change in the machine's load hits both sides alike; the
ratios are of the medians, and per pair. The machine is shared: the CPU time that other processes used
during each run (all CPUs' busy time from /proc/stat less the daemon's and wrk's own) is printed with it,
and so is the daemon's CPU time per scrape, which such load disturbs less than the rate.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_metrics import BOOST, CONNECTIONS, SECONDS, wrk_command
from bench.common import ROOT, commit, cpu_times, free_port, get, header, memory_mb, metric, stop, write_config

BASE = os.environ.get("BENCH_BASE", "f200936")
THIS = os.environ.get("BENCH_AB_THIS", "")  # a commit; empty: this working tree
ROUNDS = int(os.environ.get("BENCH_AB_ROUNDS", "3"))
PYTHON = os.environ.get("BENCH_AB_PYTHON", "/usr/bin/python3")  # Debian's, with Debian's packages
FROM_SOURCE = bool(os.environ.get("BENCH_AB_SOURCE"))
# BENCH_AB_GZIP=1: wrk asks for gzip, as Prometheus does (a side that cannot gzip sends its body as it is).
GZIP = bool(os.environ.get("BENCH_AB_GZIP"))
DEVICES = int(os.environ.get("BENCH_AB_DEVICES", "100"))
# What the .deb depends on.
RUNTIME = "python3-aiohttp python3-prometheus-client python3-yaml python3-rich python3-bleak python3-cryptography"
RUNTIME += " python3-bcrypt"


@dataclass
class Run:
    rate: float  # scrapes/s
    p99: float  # ms
    peak_mib: float  # VmHWM after the load
    cpu_us: float  # the daemon's CPU time per scrape (less sensitive to the machine's load than the rate)
    system_us: float  # the part of it spent in the kernel: mostly sending the body over loopback
    body_kb: float  # /metrics as wrk gets it, in KB
    adverts: float  # adverts/s the daemon took in during the load: the same scan-side work on both sides
    others: float  # CPU seconds per second used by other processes during the load (of os.cpu_count())
    load1: float  # 1-minute load average as the run began


def busy_seconds() -> float:
    """All CPUs' busy time so far (user, nice, system, irq, softirq, steal), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(url: str) -> tuple[float, float, int]:
    """(requests/s, p99 ms, requests)"""
    command = wrk_command(url)
    if GZIP:
        command[-1:-1] = ["-H", "Accept-Encoding: gzip"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rate, float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit], requests


def served_kb(port: int) -> float:
    """The size of /metrics as wrk gets it."""
    headers = {"Accept-Encoding": "gzip"} if GZIP else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=2) as response:
        return len(response.read()) / 1000


def adverts(port: int) -> float:
    return metric(get(port, "/metrics")[1].decode(), "ble_exporter_advertisements_received_total")


def measure(tree: Path, tmp: Path) -> Run:
    port = free_port()
    devices = [(f"A4:C1:38:30:00:{i:02X}", f"room_{i}", None) for i in range(DEVICES)]
    config = write_config(tmp, port, devices, scan_interval_seconds=0.3, scan_duration_seconds=0.3)
    cmd = ["taskset", "-c", "0", PYTHON, str(tree / "bench" / "driver.py"), "run", "--config", str(config)]
    with open(tmp / "stderr", "wb") as stderr:  # a file: a pipe nobody reads could block the daemon
        process = subprocess.Popen([*cmd, "--simulate"], cwd=tree, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{tree}: exited with {process.returncode}: {(tmp / 'stderr').read_text()}")
            with contextlib.suppress(OSError, KeyError):
                if metric(get(port, "/metrics", timeout=1)[1].decode(), "ble_exporter_devices_seen") >= DEVICES:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{tree}: not all {DEVICES} devices seen in 30 s")
            time.sleep(0.1)
        if BOOST:
            os.setpriority(os.PRIO_PROCESS, process.pid, -15)
        load1 = os.getloadavg()[0]
        adverts0 = adverts(port)
        body_kb = served_kb(port)
        busy0, (user0, system0), wrk0, t0 = busy_seconds(), cpu_times(process.pid), children_cpu(), time.monotonic()
        rate, p99, requests = wrk(f"http://127.0.0.1:{port}/metrics")
        user1, system1 = cpu_times(process.pid)
        daemon, system = user1 - user0 + system1 - system0, system1 - system0
        elapsed = time.monotonic() - t0
        others = max(0.0, busy_seconds() - busy0 - daemon - (children_cpu() - wrk0)) / elapsed
        taken_in = (adverts(port) - adverts0) / elapsed
        per_scrape = 1e6 / requests
        return Run(
            rate,
            p99,
            memory_mb(process.pid)[1],
            daemon * per_scrape,
            system * per_scrape,
            body_kb,
            taken_in,
            others,
            load1,
        )
    finally:
        stop(process)


@contextlib.contextmanager
def checked_out(ref: str, where: Path) -> Iterator[Path]:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), ref], check=True, capture_output=True
    )
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], check=False)


def byte_compile(tree: Path) -> None:
    """As the .deb's postinst (py3compile) does for the installed package."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cmd = [PYTHON, "-m", "compileall", "-q", str(tree / "ble_exporter"), str(tree / "bench")]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)


def runtime() -> str:
    try:
        return subprocess.run(
            [
                PYTHON,
                "-c",
                "import sys, aiohttp, prometheus_client, yaml; print(sys.version.split()[0], aiohttp.__version__)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sys.exit(f"{PYTHON} lacks the Debian runtime the .deb depends on: apt-get install {RUNTIME}")


def main() -> None:
    version = runtime()
    this_label = THIS or commit()
    load = f"wrk -c{CONNECTIONS} {SECONDS} s{' with gzip' if GZIP else ''}"
    header(f"(7) A/B, {BASE} vs {this_label}: /metrics, {DEVICES} devices, {load}, {PYTHON}")
    print(
        f"daemons on {PYTHON}: Python {version.replace(' ', ', aiohttp ')}; "
        f"{'from the sources' if FROM_SOURCE else 'byte-compiled first, as the .deb is'}; "
        f"{ROUNDS} runs each, interleaved"
    )
    print(f"priority: {'nice -15 for the daemon and wrk (root)' if BOOST else 'default (BENCH_NO_BOOST or not root)'}")
    runs: dict[str, list[Run]] = {"base": [], "this": []}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ab-")))
        trees = {"base": stack.enter_context(checked_out(BASE, tmp / "base"))}
        trees["this"] = stack.enter_context(checked_out(THIS, tmp / "this")) if THIS else ROOT
        if not FROM_SOURCE:
            for tree in trees.values():
                byte_compile(tree)
        for i in range(ROUNDS):
            for side in ("base", "this") if i % 2 == 0 else ("this", "base"):
                run = measure(trees[side], tmp / f"{side}{i}")
                runs[side].append(run)
                print(
                    f"  {side:>4} {i + 1}: {run.rate:6,.0f} scrapes/s, p99 {run.p99:6.2f} ms, peak RSS "
                    f"{run.peak_mib:.1f} MiB, {run.cpu_us:3.0f} µs CPU/scrape ({run.system_us:.0f} in the kernel), "
                    f"{run.body_kb:.1f} KB, {run.adverts:5,.0f} adverts/s; "
                    f"others used {run.others:.2f} of {os.cpu_count()} CPUs, load average {run.load1:.2f}",
                    flush=True,
                )
    fields = ("rate", "p99", "peak_mib", "cpu_us", "system_us", "body_kb")
    med = {side: [statistics.median(getattr(r, f) for r in rs) for f in fields] for side, rs in runs.items()}
    pairs = ", ".join(f"{t.rate / b.rate:.2f}" for b, t in zip(runs["base"], runs["this"], strict=True))
    others = [r.others for rs in runs.values() for r in rs]
    for side, label in (("base", BASE), ("this", this_label)):
        rate, p99, peak, cpu, system, body = med[side]
        print(
            f"{label:>14}: {rate:,.0f} scrapes/s, p99 {p99:.2f} ms, peak RSS {peak:.1f} MiB, "
            f"{cpu:.0f} µs CPU/scrape: {cpu - system:.0f} user, {system:.0f} kernel; /metrics {body:.1f} KB (medians)"
        )
    print(
        f"{this_label} / {BASE}: throughput {med['this'][0] / med['base'][0]:.2f}x (per pair {pairs}), "
        f"CPU per scrape {med['this'][3] / med['base'][3]:.2f}x, p99 {med['this'][1] / med['base'][1]:.2f}x, "
        f"peak RSS {med['this'][2] - med['base'][2]:+.1f} MiB"
    )
    print(f"machine: other processes used {min(others):.2f}-{max(others):.2f} of {os.cpu_count()} CPUs during the runs")


if __name__ == "__main__":
    main()
