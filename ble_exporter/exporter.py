"""The HTTP front end: /metrics, /healthz, /status and a landing page, on aiohttp in the scan loop."""

from __future__ import annotations

import asyncio
import asyncio.base_events
import html
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from ble_exporter import __version__
from ble_exporter.httpguard import ClientMistakes, ConnectionGuard

LANDING = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ble-exporter</title></head>
<body><h1>ble-exporter {html.escape(__version__)}</h1>
<p>Prometheus exporter for BLE thermometers.</p>
<ul><li><a href="metrics">/metrics</a> – Prometheus metrics</li>
<li><a href="status">/status</a> – scanner status (JSON)</li>
<li><a href="healthz">/healthz</a> – liveness</li></ul>
</body></html>
"""


METRICS_MAX_AGE = 1.0
"""Seconds a /metrics rendering is served from cache (besides, a new scan's snapshot renders at once)."""


def make_app(
    registry: CollectorRegistry,
    status_source: Callable[[], dict[str, Any]],
    *,
    generation: Callable[[], object] = lambda: None,
    metrics_max_age: float = METRICS_MAX_AGE,
) -> web.Application:
    """GET and HEAD on each route; aiohttp answers 404 for other paths and 405 for other methods.

    /metrics is rendered at most once per `metrics_max_age` seconds per content type and served from
    cache in between, and at once when `generation()` changes (the daemon passes the engine's snapshot,
    replaced whenever a scan ends). So sensor series are never stale, and counters and process_* lag
    by less than `metrics_max_age`.
    """
    cache: dict[str, tuple[float, object, bytes]] = {}  # content type -> (rendered at, generation, body)

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        now = time.monotonic()
        current = generation()
        hit = cache.get(content_type)
        if hit is None or hit[1] is not current or now - hit[0] >= metrics_max_age:
            hit = cache[content_type] = (now, current, encoder(registry))
        return web.Response(body=hit[2], headers={"Content-Type": content_type})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="OK\n")

    async def status(request: web.Request) -> web.Response:
        return web.json_response(status_source())

    async def landing(request: web.Request) -> web.Response:
        return web.Response(text=LANDING, content_type="text/html")

    app = web.Application(client_max_size=1024)
    app.router.add_get("/", landing)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/status", status)
    return app


KEEPALIVE_SECONDS = 5.0
BACKLOG = 1024  # a burst of connections waits to be accepted (and capped) instead of having its SYNs dropped


class HttpServer:
    """The bound socket and aiohttp's runner, closed together."""

    def __init__(self, runner: web.AppRunner, server: asyncio.base_events.Server, guard: ConnectionGuard) -> None:
        self.runner, self.server, self.guard = runner, server, guard

    async def close(self) -> None:
        self.server.close()
        self.guard.close_all()
        await self.runner.cleanup()


async def serve(app: web.Application, host: str | None, port: int) -> HttpServer:
    """Bind and start serving; raises OSError when the address cannot be bound."""
    logging.getLogger("aiohttp.server").addFilter(ClientMistakes())
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_SECONDS)
    await runner.setup()
    assert runner.server is not None
    guard = ConnectionGuard(runner.server)
    try:
        server = await asyncio.get_running_loop().create_server(guard, host, port, reuse_address=True, backlog=BACKLOG)
    except BaseException:
        await runner.cleanup()
        raise
    return HttpServer(runner, server, guard)
