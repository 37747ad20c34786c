"""The HTTP endpoints, through aiohttp's test client (a real server on a loopback port)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.parser import text_string_to_metric_families
from support import ExporterFactory, Scraper, TlsFiles, client_hello, proc_status

from ble_exporter.documents import View, landing_page
from ble_exporter.engine import ScanEngine
from ble_exporter.exporter import make_app
from ble_exporter.httpguard import MAX_CONNECTIONS, PLAIN_HTTP_ONLY

if TYPE_CHECKING:  # aiohttp >= 3.9 makes it generic; Debian 12's 3.8 does not
    Client = TestClient[web.Request, web.Application]
else:
    Client = TestClient

STATUS = {
    "scan_interval_seconds": 30,
    "scan_duration_seconds": 5,
    "last_scan_timestamp": 1716480000,
    "devices_seen": 2,
}


def app() -> web.Application:
    registry = CollectorRegistry()
    Gauge("ble_sensor_seen", "seen", ["device"], registry=registry).labels("kitchen").set(1)
    landing = landing_page(View.of_engine(ScanEngine(())))
    return make_app(registry, lambda: dict(STATUS), landing=lambda: landing)


def with_client(test: Callable[[Client], Awaitable[None]]) -> None:
    async def go() -> None:
        async with TestClient(TestServer(app())) as client:
            await test(client)

    asyncio.run(go())


def test_metrics_is_the_prometheus_text_format() -> None:
    async def test(client: Client) -> None:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        families = list(text_string_to_metric_families(await response.text()))
        assert [(s.name, s.labels, s.value) for f in families for s in f.samples] == [
            ("ble_sensor_seen", {"device": "kitchen"}, 1.0)
        ]

    with_client(test)


def raw_client(test: Callable[[Client], Awaitable[None]]) -> None:
    """A client that shows the bytes as sent (aiohttp's own would decompress gzip)."""

    async def go() -> None:
        async with TestClient(TestServer(app()), auto_decompress=False) as client:
            await test(client)

    asyncio.run(go())


def test_metrics_is_gzipped_for_clients_that_accept_it_as_prometheus_does() -> None:
    async def test(client: Client) -> None:
        zipped = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["Content-Encoding"] == "gzip" and zipped.headers["Vary"] == "Accept-Encoding"
        body = await zipped.read()
        plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in plain.headers and plain.headers["Vary"] == "Accept-Encoding"
        assert gzip.decompress(body) == await plain.read() and b"ble_sensor_seen" in gzip.decompress(body)
        bare = await client.get("/metrics", skip_auto_headers=["Accept-Encoding"])  # as wrk asks
        assert "Content-Encoding" not in bare.headers and bare.headers["Vary"] == "Accept-Encoding"
        assert await bare.read() == gzip.decompress(body)
        again = await client.get("/metrics", headers={"Accept-Encoding": "deflate, gzip;q=0.9"})
        assert await again.read() == body  # compressed once per rendering, then served from the cache

    raw_client(test)


def test_name_parameters_pick_series_as_prometheus_client_does() -> None:
    async def test(client: Client) -> None:
        only = await (await client.get("/metrics?name[]=ble_exporter_scans_total&name[]=ble_sensor_seen")).text()
        names = {s.name for f in text_string_to_metric_families(only) for s in f.samples}
        assert names == {"ble_exporter_scans_total", "ble_sensor_seen"}
        none = await (await client.get("/metrics?name[]=no_such_metric")).text()
        assert none == ""

    async def go() -> None:
        registry = CollectorRegistry()
        Gauge("ble_sensor_seen", "seen", ["device"], registry=registry).labels("kitchen").set(1)
        Gauge("ble_sensor_rssi_dbm", "rssi", ["device"], registry=registry).labels("kitchen").set(-60)
        Counter("ble_exporter_scans", "scans", registry=registry).inc()
        async with TestClient(TestServer(make_app(registry, dict))) as client:
            await test(client)

    asyncio.run(go())


def test_metrics_content_negotiation_openmetrics() -> None:
    async def test(client: Client) -> None:
        response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).endswith("# EOF\n")

    with_client(test)


def test_head_metrics_has_headers_and_no_body() -> None:
    async def test(client: Client) -> None:
        response = await client.head("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        assert await response.read() == b""

    with_client(test)


def test_healthz() -> None:
    async def test(client: Client) -> None:
        response = await client.get("/healthz")
        assert (response.status, await response.text()) == (200, "OK\n")

    with_client(test)


def test_status_has_the_spec_keys_and_types() -> None:
    async def test(client: Client) -> None:
        response = await client.get("/status")
        assert response.status == 200 and response.content_type == "application/json"
        body: dict[str, Any] = json.loads(await response.text())
        assert body == STATUS

    with_client(test)


def test_landing_page_links_the_endpoints() -> None:
    async def test(client: Client) -> None:
        response = await client.get("/")
        text = await response.text()
        assert response.status == 200 and response.content_type == "text/html"
        assert all(f'href="{p}"' in text for p in ("metrics", "status", "healthz"))

    with_client(test)


def test_unknown_path_is_404_and_other_methods_405() -> None:
    async def test(client: Client) -> None:
        assert (await client.get("/nope")).status == 404
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert (await client.request(method, "/metrics")).status == 405, method

    with_client(test)


def test_metrics_is_cached_until_a_new_snapshot_or_max_age() -> None:
    from ble_exporter.devices import Device
    from ble_exporter.documents import build_registry

    engine = ScanEngine((Device("A4:C1:38:AA:BB:CC", "kitchen"),))

    async def scrape(client: Client) -> str:
        return await (await client.get("/metrics")).text()

    async def go() -> None:
        async with TestClient(
            TestServer(
                make_app(
                    build_registry(lambda: View.of_engine(engine)),
                    dict,
                    generation=lambda: engine.snapshot,
                    metrics_max_age=3600,
                )
            )
        ) as client:
            first = await scrape(client)
            assert "ble_exporter_advertisements_received_total 0.0" in first
            engine.ingest("11:22:33:44:55:66", -80, {}, 1.0)
            assert await scrape(client) == first  # counters lag until the next scan (or max age)
            engine.open_window(1.0)
            engine.ingest(
                "A4:C1:38:AA:BB:CC", -60, {"0000fcd2-0000-1000-8000-00805f9b34fb": bytes.fromhex("4002ca09")}, 2.0
            )
            engine.close_window(3.0)
            fresh = await scrape(client)  # a new snapshot renders at once
            assert 'ble_sensor_temperature_celsius{device="kitchen"} 25.06' in fresh
            assert "ble_exporter_advertisements_received_total 2.0" in fresh
        async with TestClient(
            TestServer(
                make_app(
                    build_registry(lambda: View.of_engine(engine)),
                    dict,
                    generation=lambda: engine.snapshot,
                    metrics_max_age=0,
                )
            )
        ) as client:
            engine.ingest("11:22:33:44:55:66", -80, {}, 4.0)
            assert "ble_exporter_advertisements_received_total 3.0" in await scrape(client)

    asyncio.run(go())


def test_the_page_is_rendered_once_per_scan_or_second_gzipped_and_served_with_its_headers() -> None:
    from ble_exporter.devices import Device
    from ble_exporter.page import HEADERS, front_page

    engine = ScanEngine((Device("A4:C1:38:AA:BB:CC", "kitchen"),))
    renders: list[float] = []
    plain = {"Accept-Encoding": "identity"}

    def landing() -> str:
        renders.append(time.monotonic())
        return front_page(View.of_engine(engine), 1000.0)

    async def go(max_age: float) -> int:
        """A browser's requests, left open and reloading: the renderings they took."""
        renders.clear()
        app = make_app(
            CollectorRegistry(),
            dict,
            landing=landing,
            landing_headers=lambda: HEADERS,
            generation=lambda: engine.snapshot,
            metrics_max_age=max_age,
        )
        async with TestClient(TestServer(app), auto_decompress=False) as client:
            first = await client.get("/", headers=plain)
            body = await first.read()
            assert first.status == 200 and first.headers["Content-Type"] == "text/html; charset=utf-8"
            assert {name: first.headers[name] for name in HEADERS} == HEADERS
            for _ in range(20):
                assert await (await client.get("/", headers=plain)).read() == body
            zipped = await client.get("/", headers={"Accept-Encoding": "gzip"})
            assert zipped.headers["Content-Encoding"] == "gzip" and zipped.headers["Vary"] == "Accept-Encoding"
            assert gzip.decompress(await zipped.read()) == body
            head = await client.head("/", headers=plain)
            assert head.status == 200 and await head.read() == b""
            assert head.headers["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]
            served = len(renders)
            if max_age > 60:
                engine.open_window(1.0)
                engine.ingest(
                    "A4:C1:38:AA:BB:CC", -60, {"0000fcd2-0000-1000-8000-00805f9b34fb": bytes.fromhex("4002ca09")}, 2.0
                )
                engine.close_window(3.0)  # a new scan: rendered at once
                assert "25.06 °C" in await (await client.get("/", headers=plain)).text()
                assert len(renders) == served + 1
            return served

    assert asyncio.run(go(max_age=3600)) == 1  # 23 requests: one rendering
    assert asyncio.run(go(max_age=0)) == 23  # without the cache each request renders: the count above is its doing


def test_the_page_is_behind_the_same_basic_auth_as_metrics() -> None:
    import base64

    import bcrypt

    from ble_exporter.auth import BasicAuth
    from ble_exporter.page import HEADERS, front_page

    users = {"viewer": bcrypt.hashpw(b"secret", bcrypt.gensalt(4))}
    page = front_page(View.of_engine(ScanEngine(())), 1000.0)
    credentials = {"Authorization": "Basic " + base64.b64encode(b"viewer:secret").decode()}

    async def go() -> None:
        app = make_app(
            CollectorRegistry(), dict, landing=lambda: page, landing_headers=lambda: HEADERS, auth=BasicAuth(users)
        )
        async with TestClient(TestServer(app)) as client:
            for path in ("/", "/metrics"):
                refused = await client.get(path)
                assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Basic"), path
                assert "ble-exporter on" not in await refused.text()
            allowed = await client.get("/", headers=credentials)
            assert allowed.status == 200 and await allowed.text() == page
            assert allowed.headers["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]

    asyncio.run(go())


# ---- abuse: the real server on loopback keeps serving /metrics to others, bounded ----

REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
ONE_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
MALFORMED = {
    "garbage": b"GARBAGE\r\n\r\n",
    "no-version": b"GET\r\n\r\n",
    "http-0.9": b"GET /metrics\r\n",
    "http-9.9": b"GET / HTTP/9.9\r\n\r\n",
    "binary": bytes(range(256)) + b"\r\n\r\n",
    "invalid-utf8-path": b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    "invalid-utf8-header": b"GET /metrics HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
    "nul-in-path": b"GET /met\x00rics HTTP/1.1\r\nHost: x\r\n\r\n",
    "header-without-colon": b"GET /metrics HTTP/1.1\r\nHost x\r\n\r\n",
    "cr-in-header": b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
    "negative-length": b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "huge-length": b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "two-lengths": b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "length-and-chunked": b"GET /metrics HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad-chunk": b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "huge-header": b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1024 * 1024 + b"\r\n\r\n",
    "huge-url": b"GET /" + b"a" * 1024 * 1024 + b" HTTP/1.1\r\n\r\n",
    "too-many-headers": b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(100_000)) + b"\r\n",
    "body-on-get": b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"z" * 1_000_000,
    "chunked-body-on-get": b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n"
    + b"z" * 1024
    + b"\r\n0\r\n\r\n",
    "post-with-body": b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"z" * 2_000_000,
    "tls-client-hello": client_hello(),  # https:// to the plain port (over TLS: garbage in a TLS connection)
    "tls-record-header": client_hello()[:5],
}


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


Connect = Callable[..., socket.socket]


def connector(port: int, tls: TlsFiles | None) -> Connect:
    """Open a connection to the exporter: plain TCP, or TLS (the handshake done) when `tls` is given."""
    context = ssl.create_default_context(cafile=str(tls.ca)) if tls is not None else None

    def connect(timeout: float | None = None) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        return context.wrap_socket(s, server_hostname="127.0.0.1") if context is not None else s

    return connect


def first_line(connect: Connect, data: bytes, timeout: float = 1.0) -> bytes:
    """Send `data` and return the first line of the answer (b"" if the server closed or said nothing)."""
    with connect(timeout) as s:
        with contextlib.suppress(OSError):  # the server may close before a long request is sent
            s.sendall(data)
        got = b""
        with contextlib.suppress(OSError):
            while b"\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        return got.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_http_abuse_leaves_metrics_served_and_the_process_bounded(
    exporter_factory: ExporterFactory, tmp_path: Path, tls_files: TlsFiles, tls: bool
) -> None:
    body = "scan_interval_seconds: 0.6\nscan_duration_seconds: 0.5\n"
    if tls:
        web = tmp_path / "web.yml"
        web.write_text(f"tls_server_config:\n  cert_file: {tls_files.cert}\n  key_file: {tls_files.key}\n")
        body += f"web_config_file: {web}\n"
    exporter = exporter_factory(body, "--simulate")
    connect = connector(exporter.port, tls_files if tls else None)
    pid, port = exporter.process.pid, exporter.port
    scraper = Scraper(port, pid=pid, tls=tls_files if tls else None)
    deadline = time.monotonic() + 15
    while True:  # the TLS port answers only TLS: wait for it as a client would
        try:
            with connect(2) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    break
        except OSError:
            assert time.monotonic() < deadline and exporter.process.poll() is None, exporter.stderr()
            time.sleep(0.1)
    for _ in range(20):
        assert first_line(connect, ONE_REQUEST).startswith(b"HTTP/1.1 200")
    rss_before, fds_before = proc_status(pid, "VmRSS"), open_fds(pid)
    scraper.start()
    held: list[socket.socket] = []
    try:
        # Malformed requests: each gets a 4xx or an ordinary answer, or the server waits for more; never a 5xx.
        for name, data in MALFORMED.items():
            line = first_line(connect, data)
            assert not re.match(rb"HTTP/\S+ 5", line), (name, line)
            if not tls and name.startswith("tls-"):  # answered at once (first_line waits 1 s), by the guard
                assert line == PLAIN_HTTP_ONLY.split(b"\r\n", 1)[0], (name, line)
        # Pipelining: 200 requests in one packet are all answered, in order.
        with connect(5) as s:
            s.sendall(REQUEST * 200)
            answers = b""
            while answers.count(b"HTTP/1.1 200 OK") < 200:
                chunk = s.recv(1 << 16)
                assert chunk, answers.count(b"HTTP/1.1 200 OK")
                answers += chunk
        # A flood of pipelined requests whose answers are never read (aiohttp 3.8 alone would hold them all).
        flood = REQUEST * (1024 * 1024 // len(REQUEST))
        for _ in range(4):
            s = connect()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError, ssl.SSLWantWriteError):
                s.send(flood)
            held.append(s)
        # 300 idle connections, more than the cap: the oldest are closed to make room (over TLS: 300
        # handshakes never begun, each holding a slot, and no TLS buffer, until the cap drops it).
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        held += idle
        time.sleep(0.5)
        assert open_fds(pid) <= fds_before + MAX_CONNECTIONS + 10
        idle[0].settimeout(1)
        assert idle[0].recv(1) == b""  # closed by the server
        # 50 slow clients trickling a request a byte every 0.5 s.
        trickle = [connect() for _ in range(50)]
        held += trickle
        for i in range(6):
            for s in trickle:
                with contextlib.suppress(OSError):  # the cap may already have closed it
                    s.send(REQUEST[i : i + 1])
            time.sleep(0.5)
        assert exporter.process.poll() is None
    finally:
        scraper.done.set()
        scraper.join(5)
        for s in held:
            s.close()
    statuses = [status for status, _ in scraper.results]
    assert len(statuses) > 40 and set(statuses) == {200}, [s for s in statuses if s != 200][:5]
    assert max(seconds for _, seconds in scraper.results) < 1.0
    deadline = time.monotonic() + 10
    while open_fds(pid) > fds_before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_fds(pid) <= fds_before + 2
    rss_after = proc_status(pid, "VmRSS")
    assert rss_after - rss_before < 20 * 1024, (rss_before, scraper.max_rss, rss_after)  # KiB
    assert scraper.max_rss - rss_before < 40 * 1024, (rss_before, scraper.max_rss, rss_after)
    assert first_line(connect, ONE_REQUEST).startswith(b"HTTP/1.1 200")
    assert exporter.stop() == 0
    log = exporter.log_file.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
