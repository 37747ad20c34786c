"""(6) /metrics over TLS with basic auth next to plain HTTP: 100 devices, same machine, same run.

The daemon runs twice (`--simulate`, 100 configured devices, all seen), once with plain HTTP and once
with a web_config_file of TLS (an EC P-256 certificate) and one basic-auth user (bcrypt cost 10, as
`htpasswd -nBC 10` makes). The load is `wrk -t1 -c16 -d10s` with keep-alive, as Prometheus scrapes
(one TLS handshake per connection; every request carries the Authorization header, verified by bcrypt
once and from the cache after), then the same with `Connection: close` (a handshake per request).
"""

from __future__ import annotations

import base64
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench.bench_metrics import BOOST, CONNECTIONS, RUNS, SECONDS, wrk_command
from bench.common import free_port, header, start_exporter, stop, write_config

DEVICES = 100
PASSWORD = "bench-password"


def run_wrk(url: str, *headers: str) -> tuple[float, float]:
    cmd = wrk_command(url)
    for h in headers:
        cmd[-1:-1] = ["-H", h]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rate = float(out.split("Requests/sec:")[1].split()[0])
    p99 = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("99%"))
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return rate, float(p99.rstrip("ms").rstrip("u")) / (1000 if p99.endswith("us") else 1)


def wait(url: str, context: ssl.SSLContext | None) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as response:
                if b"ble_exporter_devices_seen 100.0" in response.read() or url.endswith("/healthz"):
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready")
        time.sleep(0.2)


def measure(tmp: Path, secured: bool) -> dict[str, tuple[float, float]]:
    import bcrypt
    from support import make_tls_files

    port = free_port()
    devices = [(f"A4:C1:38:30:00:{i:02X}", f"room_{i}", None) for i in range(DEVICES)]
    settings: dict[str, object] = {"scan_interval_seconds": 0.3, "scan_duration_seconds": 0.3}
    context = None
    headers: tuple[str, ...] = ()
    scheme = "http"
    if secured:
        files = make_tls_files(tmp)
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
        web = tmp / "web.yml"
        web.write_text(
            f"tls_server_config:\n  cert_file: {files.cert}\n  key_file: {files.key}\n"
            f"basic_auth_users:\n  prometheus: {hashed}\n"
        )
        settings["web_config_file"] = str(web)
        context = ssl.create_default_context(cafile=str(files.ca))
        headers = ("Authorization: Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode(),)
        scheme = "https"
    config = write_config(tmp / ("tls" if secured else "plain"), port, devices, **settings)
    process = start_exporter(config, "--simulate", cpus="0")
    try:
        url = f"{scheme}://127.0.0.1:{port}/metrics"
        wait(url.replace("/metrics", "/healthz"), context)
        if secured:
            request = urllib.request.Request(url, headers=dict(h.split(": ", 1) for h in headers))
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                assert response.status == 200
        results = {}
        for label, extra in (("keep-alive", ()), ("a connection per request", ("Connection: close",))):
            runs = [run_wrk(url, *headers, *extra) for _ in range(RUNS)]
            results[label] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        return results
    finally:
        stop(process)


def main() -> None:
    header(
        f"(6) /metrics over TLS with basic auth vs plain HTTP: {DEVICES} devices, {CONNECTIONS} clients, {SECONDS} s"
    )
    print(f"priority: {'nice -15 for the exporter and wrk (root)' if BOOST else 'default'}; {RUNS} runs each, medians")
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        plain = measure(Path(tmp), secured=False)
        secured = measure(Path(tmp), secured=True)
    for label in plain:
        (p_rate, p_p99), (s_rate, s_p99) = plain[label], secured[label]
        print(
            f"{label:>25}: plain HTTP {p_rate:,.0f} scrapes/s (p99 {p_p99:.2f} ms); TLS + basic auth "
            f"{s_rate:,.0f} scrapes/s (p99 {s_p99:.2f} ms): {s_rate / p_rate:.0%} of plain"
        )


if __name__ == "__main__":
    main()
