"""The HTTP front end: /metrics, /healthz, /status and a landing page, on aiohttp in the scan loop."""

from __future__ import annotations

import asyncio
import asyncio.base_events
import gzip
import logging
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric

from ble_exporter.auth import BasicAuth
from ble_exporter.httpguard import MAX_REQUEST_LINE, URI_TOO_LONG_PATH, ClientMistakes, ConnectionGuard

METRICS_MAX_AGE = 1.0
"""Seconds a rendering of /metrics or / is served from cache (besides, a new scan's snapshot renders at once)."""


class _Rendering:
    """One body (/metrics, /) with its headers, and its gzip form once a client asked for it. The headers
    are built once, read-only: aiohttp copies them into each response (a dict would be converted each time)."""

    def __init__(self, rendered_at: float, generation: object, body: bytes, headers: Mapping[str, str]) -> None:
        self.rendered_at, self.generation, self.body = rendered_at, generation, body
        self.headers, self.gzip_headers = _headers(headers)
        self._gzipped: bytes | None = None

    def gzipped(self) -> bytes:
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzipped


def _headers(headers: Mapping[str, str]) -> tuple[CIMultiDictProxy[str], CIMultiDictProxy[str]]:
    """`headers` and Vary: Accept-Encoding, plain and for a gzipped body."""
    plain = CIMultiDict(headers)
    plain[hdrs.VARY] = hdrs.ACCEPT_ENCODING
    zipped = plain.copy()
    zipped[hdrs.CONTENT_ENCODING] = "gzip"
    return CIMultiDictProxy(plain), CIMultiDictProxy(zipped)


class _Only:
    """The samples of `registry` named in `names`, as prometheus_client's `restricted_registry` gives them,
    without depending on collectors describing themselves (ours don't: they are read per scrape)."""

    def __init__(self, registry: CollectorRegistry, names: set[str]) -> None:
        self._registry, self._names = registry, names

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            samples = [s for s in family.samples if s.name in self._names]
            if samples:
                only = Metric(family.name, family.documentation, family.type, family.unit)
                only.samples = samples
                yield only


def make_app(
    registry: CollectorRegistry,
    status_source: Callable[[], dict[str, Any]],
    *,
    landing: Callable[[], str] | None = None,
    landing_headers: Callable[[], Mapping[str, str]] = dict,
    generation: Callable[[], object] = lambda: None,
    metrics_max_age: float = METRICS_MAX_AGE,
    auth: BasicAuth | None = None,
) -> web.Application:
    """GET and HEAD on each route (`/` where there is a `landing` page); aiohttp answers 404 for other
    paths and 405 for other methods.

    /metrics is rendered at most once per `metrics_max_age` seconds per content type and served from
    cache in between, and at once when `generation()` changes (the daemon passes the engine's snapshot,
    replaced whenever a scan ends). So sensor series are never stale, and counters and process_* lag
    by less than `metrics_max_age`. It is gzipped for clients that accept it (Prometheus always does),
    and `name[]=` parameters pick series, as prometheus_client's own handlers do (those are not cached).
    The `landing` page is cached and gzipped the same way, and served with the headers `landing_headers()`
    gives when it is first rendered.
    """
    cache: dict[str, _Rendering] = {}  # by content type (/metrics), "/" for the landing page

    def fresh(key: str) -> _Rendering | None:
        """The rendering cached under `key`, unless a scan ended or `metrics_max_age` passed since."""
        rendering = cache.get(key)
        if rendering is None or rendering.generation is not generation():
            return None
        return rendering if time.monotonic() - rendering.rendered_at < metrics_max_age else None

    def rendered(key: str, body: Callable[[], bytes], headers: Callable[[], Mapping[str, str]]) -> _Rendering:
        cache.pop(key, None)  # first: the stale body and the new one are not in memory together
        now = time.monotonic()
        rendering = cache[key] = _Rendering(now, generation(), body(), headers())
        return rendering

    def respond(request: web.Request, rendering: _Rendering) -> web.Response:
        accept_encoding = request.headers.get("Accept-Encoding")
        if accept_encoding and gzip_accepted(accept_encoding):
            return web.Response(body=rendering.gzipped(), headers=rendering.gzip_headers)
        return web.Response(body=rendering.body, headers=rendering.headers)

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        names = request.query.getall("name[]", []) if "?" in request.raw_path else ()
        if names:
            body = encoder(_Only(registry, set(names)))  # type: ignore[arg-type]
            rendering = _Rendering(0.0, None, body, {hdrs.CONTENT_TYPE: content_type})
        else:
            rendering = fresh(content_type) or rendered(
                content_type, lambda: encoder(registry), lambda: {hdrs.CONTENT_TYPE: content_type}
            )
        return respond(request, rendering)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="OK\n")

    async def status(request: web.Request) -> web.Response:
        return web.json_response(status_source())

    async def landing_page(request: web.Request) -> web.Response:
        assert landing is not None
        rendering = fresh("/") or rendered(
            "/", lambda: landing().encode(), lambda: {"Content-Type": "text/html; charset=utf-8", **landing_headers()}
        )
        return respond(request, rendering)

    async def uri_too_long(request: web.Request) -> web.Response:
        response = web.Response(status=414, text=f"request line longer than {MAX_REQUEST_LINE} bytes\n")
        response.force_close()
        return response

    app = web.Application(client_max_size=1024, middlewares=[auth.middleware()] if auth is not None else [])
    app.router.add_get("/metrics", metrics)  # first: aiohttp 3.8 tries the routes in order, each a coroutine
    if landing is not None:
        app.router.add_get("/", landing_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/status", status)
    app.router.add_route("*", URI_TOO_LONG_PATH, uri_too_long)
    if auth is not None:
        auth.attach(app)  # frozen from here
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


async def serve(app: web.Application, host: str | None, port: int, tls: ssl.SSLContext | None = None) -> HttpServer:
    """Bind and start serving (HTTPS with `tls`); raises OSError when the address cannot be bound."""
    logging.getLogger("aiohttp.server").addFilter(ClientMistakes())
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_SECONDS)
    await runner.setup()
    assert runner.server is not None
    guard = ConnectionGuard(runner.server, tls)
    try:
        server = await asyncio.get_running_loop().create_server(guard, host, port, reuse_address=True, backlog=BACKLOG)
    except BaseException:
        await runner.cleanup()
        raise
    return HttpServer(runner, server, guard)
