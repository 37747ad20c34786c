"""Helpers shared by the benchmark scripts: headers, medians, /proc readings, the exporter as a process."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
RADIO_LIMIT = 2600  # adverts/s on one legacy advertising channel (the most a scanner can report)


def header(title: str) -> None:
    print(f"\n== {title} ==")
    print(f"Python {platform.python_version()} ({sys.executable}), {platform.machine()}, {os.cpu_count()} CPUs")


def commit() -> str:
    try:
        cmd = ["git", "-C", str(ROOT), "describe", "--always", "--dirty"]
        out = subprocess.run(cmd, check=False, capture_output=True, text=True)
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def median_time(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of `run()` over `repeats` calls (after one warm-up call)."""
    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def pin(cpus: Iterable[int]) -> None:
    """Pin this process (best effort; the machine is shared)."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, set(cpus))


# --- /proc ---------------------------------------------------------------------------------------------


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of a process (not its children), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime (fields 14, 15)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (not its children)."""
    return sum(cpu_times(pid))


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM = peak RSS) in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


# --- the exporter as a process ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def device_lines(devices: Sequence[tuple[str, str, bytes | None]]) -> str:
    lines = ["devices:"]
    for mac, name, key in devices:
        if key is None:
            lines.append(f'  "{mac}": {name}')
        else:
            lines.append(f'  "{mac}":\n    name: {name}\n    bindkey: "{key.hex()}"')
    return "\n".join(lines) + "\n"


def write_config(
    directory: Path, port: int, devices: Sequence[tuple[str, str, bytes | None]], **settings: object
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    body = [f"listen_port: {port}", "listen_address: 127.0.0.1", f"log_file: {directory / 'ble_exporter.log'}"]
    body += [f"{key}: {value}" for key, value in settings.items()]
    config = directory / "config.yaml"
    config.write_text("\n".join(body) + "\n" + (device_lines(devices) if devices else "devices: {}\n"))
    return config


def start_exporter(
    config: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    cpus: str | None = None,
    python: str = sys.executable,
    entry: Sequence[str] = ("-m", "ble_exporter"),
) -> subprocess.Popen[bytes]:
    cmd = [python, *entry, "run", "--config", str(config), *args]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(env if env is not None else os.environ),
        cwd=ROOT,
    )


def get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return int(response.status), response.read()


def wait_healthy(process: subprocess.Popen[bytes], port: int, timeout: float = 20.0, poll: float = 0.005) -> float:
    """Seconds until /healthz answered 200 (measured from now)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"exporter exited with {process.returncode}: {err}")
        try:
            if get(port, "/healthz", timeout=1)[0] == 200:
                return time.monotonic() - t0
        except OSError:
            time.sleep(poll)
    raise RuntimeError("exporter did not answer /healthz in time")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)
