"""The HTTP endpoints, through aiohttp's test client (a real server on a loopback port)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

from ble_exporter.exporter import make_app

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
    return make_app(registry, lambda: dict(STATUS))


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
    from ble_exporter.config import Device
    from ble_exporter.engine import ScanEngine
    from ble_exporter.metrics import build_registry

    engine = ScanEngine((Device("A4:C1:38:AA:BB:CC", "kitchen"),))

    async def scrape(client: Client) -> str:
        return await (await client.get("/metrics")).text()

    async def go() -> None:
        async with TestClient(TestServer(make_app(build_registry(engine), dict, metrics_max_age=3600))) as client:
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
        async with TestClient(TestServer(make_app(build_registry(engine), dict, metrics_max_age=0))) as client:
            engine.ingest("11:22:33:44:55:66", -80, {}, 4.0)
            assert "ble_exporter_advertisements_received_total 3.0" in await scrape(client)

    asyncio.run(go())
