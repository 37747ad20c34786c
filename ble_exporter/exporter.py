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
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from ble_exporter import __version__

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


MAX_CONNECTIONS = 128  # beyond, the oldest connection that has sent nothing (else the oldest) is closed
CONNECTION_LIFETIME_SECONDS = 30.0  # bounds a client that trickles its request; scrapers reconnect
KEEPALIVE_SECONDS = 5.0
BACKLOG = 1024  # a burst of connections waits to be accepted (and capped) instead of having its SYNs dropped
MAX_QUEUED_REQUESTS = 8  # pipelined requests parsed ahead of the one being answered, per connection
FEED_BYTES = 1024  # received bytes are handed to aiohttp's parser in slices this big


class _ClientMistakes(logging.Filter):
    """aiohttp logs a malformed request with a traceback at ERROR; a client's mistake is not ours
    (it already got its 400), and a flood of them must not fill the disk."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, AssertionError) and _raised_in(error, "_handle_request"):
            # aiohttp 3.8 asserts when a client's connection closed while its pipelined requests were
            # queued (fixed in later versions): a disconnect, not a fault.
            return False
        return not isinstance(error, (HttpProcessingError, ConnectionError, asyncio.CancelledError))


def _raised_in(error: BaseException, function: str) -> bool:
    """Whether `error` was raised by aiohttp's `function` itself."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name == function and "aiohttp" in tb.tb_frame.f_code.co_filename


class _ConnectionGuard:
    """Wraps aiohttp's protocol factory to bound open connections and their lifetime: idle or
    trickling clients can neither exhaust file descriptors nor hold a slot for long."""

    def __init__(self, factory: Callable[[], asyncio.Protocol]) -> None:
        self._factory = factory
        self.open: dict[_Tracked, asyncio.BaseTransport] = {}  # oldest first

    def __call__(self) -> asyncio.Protocol:
        return _Tracked(self._factory(), self)


class _Tracked(asyncio.Protocol):
    """aiohttp's protocol, seen through the guard (its class has __slots__, so it is wrapped)."""

    def __init__(self, inner: asyncio.Protocol, guard: _ConnectionGuard) -> None:
        self._inner, self._guard = inner, guard
        self._transport: asyncio.BaseTransport | None = None
        self._held = bytearray()  # received, not yet given to aiohttp
        self._paused = False  # reading paused by us (not by aiohttp's own flow control)
        self.spoke = False  # has sent something: a burst of idle connections must not evict its request
        self._deadline: asyncio.TimerHandle | None = None  # closes it at the end of its lifetime

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        open_connections = self._guard.open
        open_connections[self] = transport
        if len(open_connections) > MAX_CONNECTIONS:
            oldest = next(iter(open_connections))
            silent = next((c for c in open_connections if not c.spoke and c is not self), oldest)
            open_connections.pop(silent).close()
        self._deadline = asyncio.get_running_loop().call_later(CONNECTION_LIFETIME_SECONDS, transport.close)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.open.pop(self, None)
        if self._deadline is not None:  # else the timer keeps the closed connection alive for its lifetime
            self._deadline.cancel()
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.spoke = True
        self._held += data
        self._feed()

    def _feed(self) -> None:
        """Hand aiohttp the received bytes a slice at a time while few requests wait in its queue.

        aiohttp before 3.10 (Debian 12 has 3.8) parses everything a client pipelines at once and keeps
        every parsed request until it is answered: 1 MB of tiny GETs held ~50 MB. Reading from the
        client pauses meanwhile, so the rest waits in the kernel's buffers, which are bounded.
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            self._held.clear()
            return
        queue = getattr(self._inner, "_messages", ())  # aiohttp's parsed-but-unanswered requests
        while self._held and len(queue) < MAX_QUEUED_REQUESTS:
            chunk = bytes(self._held[:FEED_BYTES])
            del self._held[:FEED_BYTES]
            self._inner.data_received(chunk)
        assert isinstance(transport, asyncio.ReadTransport)
        if self._held:
            if not self._paused:
                transport.pause_reading()
                self._paused = True
            asyncio.get_running_loop().call_later(0.01, self._feed)
        elif self._paused:
            self._paused = False
            transport.resume_reading()

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class HttpServer:
    """The bound socket and aiohttp's runner, closed together."""

    def __init__(self, runner: web.AppRunner, server: asyncio.base_events.Server, guard: _ConnectionGuard) -> None:
        self.runner, self.server, self.guard = runner, server, guard

    async def close(self) -> None:
        self.server.close()
        for transport in list(self.guard.open.values()):
            transport.close()
        await self.runner.cleanup()


async def serve(app: web.Application, host: str | None, port: int) -> HttpServer:
    """Bind and start serving; raises OSError when the address cannot be bound."""
    logging.getLogger("aiohttp.server").addFilter(_ClientMistakes())
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_SECONDS)
    await runner.setup()
    assert runner.server is not None
    guard = _ConnectionGuard(runner.server)
    try:
        server = await asyncio.get_running_loop().create_server(guard, host, port, reuse_address=True, backlog=BACKLOG)
    except BaseException:
        await runner.cleanup()
        raise
    return HttpServer(runner, server, guard)
