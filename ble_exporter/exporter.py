"""The HTTP front end: /metrics, /healthz, /status and a landing page, on aiohttp in the scan loop."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from ble_exporter import __version__

LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ble-exporter</title></head>
<body><h1>ble-exporter {version}</h1>
<p>Prometheus exporter for BLE thermometers.</p>
<ul><li><a href="metrics">/metrics</a> – Prometheus metrics</li>
<li><a href="status">/status</a> – scanner status (JSON)</li>
<li><a href="healthz">/healthz</a> – liveness</li></ul>
</body></html>
""".format(version=html.escape(__version__))


def make_app(registry: CollectorRegistry, status_source: Callable[[], dict[str, Any]]) -> web.Application:
    """GET and HEAD on each route; aiohttp answers 404 for other paths and 405 for other methods."""

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type})

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


async def serve(app: web.Application, host: str | None, port: int) -> web.AppRunner:
    """Bind and start serving; raises OSError when the address cannot be bound."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=1.0)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
