"""The HTTP guard: connection cap and lifetime, the pipelining bound, and the aiohttp internals both rely
on (each checked here against the installed aiohttp, so an upgrade that changes them fails loudly)."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import collections
import gc
import inspect
import logging
import socket
import ssl
import sys
import time

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from support import TlsFiles, client_hello, free_port

from ble_exporter import httpguard
from ble_exporter.exporter import make_app, serve
from ble_exporter.httpguard import (
    FEED_BYTES,
    MAX_QUEUED_REQUESTS,
    MAX_REQUEST_LINE,
    PLAIN_HTTP_ONLY,
    URI_TOO_LONG_PATH,
    ClientMistakes,
    RequestLines,
    aiohttp_version,
)

REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"


def app() -> web.Application:
    return make_app(CollectorRegistry(), dict)


@pytest.mark.parametrize(
    ("text", "version"),
    [("3.8.4", (3, 8, 4)), ("3.11.16", (3, 11, 16)), ("3.14.1", (3, 14, 1)), ("4.0.0a1", (4, 0, 0))],
)
def test_aiohttp_version(text: str, version: tuple[int, ...]) -> None:
    assert aiohttp_version(text) == version


def test_the_pipelining_bound_matches_the_installed_aiohttp() -> None:
    """Slicing is on exactly where aiohttp does not bound its own queue, and there it reads the queue
    aiohttp really keeps: a renamed internal fails here rather than silently unbounding the queue."""
    from aiohttp import web_protocol

    own_bound = hasattr(web_protocol, "MAX_MSG_QUEUE_SIZE")
    assert httpguard.SLICE_PIPELINED_INPUT is not own_bound, (aiohttp.__version__, own_bound)

    async def handler_queue() -> object:
        async def answer(request: web.BaseRequest) -> web.StreamResponse:
            return web.Response()

        server = web.Server(answer)
        return server()._messages  # type: ignore[attr-defined]

    if httpguard.SLICE_PIPELINED_INPUT:
        assert isinstance(asyncio.run(handler_queue()), collections.deque)


def test_a_pipelining_flood_is_parsed_a_few_requests_at_a_time() -> None:
    """1 MB of pipelined GETs whose answers are never read: aiohttp holds at most a few parsed requests."""
    held: list[int] = []

    async def scenario() -> None:
        port = free_port()
        server = await serve(app(), "127.0.0.1", port)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST * (1024 * 1024 // len(REQUEST)))
            for _ in range(20):
                await asyncio.sleep(0.05)
                (tracked,) = server.guard.open
                held.append(len(tracked._inner._messages))  # type: ignore[attr-defined]
            writer.close()
        finally:
            await server.close()

    asyncio.run(scenario())
    bound = MAX_QUEUED_REQUESTS + FEED_BYTES // len(REQUEST) + 1 if httpguard.SLICE_PIPELINED_INPUT else 64
    assert max(held) <= bound, held


def test_client_mistakes_are_not_logged_but_our_errors_are() -> None:
    def record(error: BaseException) -> logging.LogRecord:
        try:
            raise error
        except BaseException:
            return logging.LogRecord(
                "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", (), sys.exc_info()
            )

    quiet = ClientMistakes()
    assert not quiet.filter(record(aiohttp.http_exceptions.BadStatusLine("x")))
    assert not quiet.filter(record(ConnectionResetError()))
    assert quiet.filter(record(ValueError("a bug of ours")))
    assert quiet.filter(record(AssertionError("raised here, not in aiohttp")))


def test_the_disconnect_assertion_filter_matches_the_installed_aiohttp() -> None:
    """aiohttp 3.8's `_handle_request` asserts on a pipelining client's disconnect; the filter names
    that function, so it must exist where the filter is on."""
    from aiohttp.web_protocol import RequestHandler

    assert httpguard.QUIET_DISCONNECT_ASSERTION is (aiohttp_version() < (3, 9))
    if httpguard.QUIET_DISCONNECT_ASSERTION:
        assert callable(getattr(RequestHandler, "_handle_request", None))


def test_connection_cap_and_lifetime_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpguard, "MAX_CONNECTIONS", 4)
    monkeypatch.setattr(httpguard, "CONNECTION_LIFETIME_SECONDS", 0.5)

    async def scenario() -> None:
        port = free_port()
        server = await serve(app(), "127.0.0.1", port)
        try:
            talker = await asyncio.open_connection("127.0.0.1", port)
            talker[1].write(REQUEST[:5])  # a trickler: it has spoken, so idle connections go first
            opened = time.monotonic()
            await asyncio.sleep(0.05)
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(6)]
            await asyncio.sleep(0.05)
            assert len(server.guard.open) == 4
            for reader, _ in idle[:3]:  # the oldest silent ones made room
                assert await asyncio.wait_for(reader.read(), 1) == b""
            # The trickler is closed at the end of its lifetime, its request unfinished.
            assert await asyncio.wait_for(talker[0].read(), 2) == b""
            assert 0.4 < time.monotonic() - opened < 1.0
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            assert (await asyncio.wait_for(reader.readline(), 1)).startswith(b"HTTP/1.1 200")
            for _, w in [*idle, talker, (reader, writer)]:
                w.close()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_a_request_not_yet_read_counts_as_spoken_when_a_burst_wants_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(httpguard, "MAX_CONNECTIONS", 4)

    async def scenario() -> tuple[bytes, int]:
        port = free_port()
        server = await serve(app(), "127.0.0.1", port)
        try:
            # Without yielding to the loop: a scraper connects and sends its request, then a burst of six
            # idle connections; the server accepts all seven before it reads anything.
            scraper = socket.create_connection(("127.0.0.1", port))
            scraper.sendall(REQUEST)
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
            reader, writer = await asyncio.open_connection(sock=scraper)
            answer = await asyncio.wait_for(reader.readline(), 2)
            counted = len(server.guard.open)
            writer.close()
            for s in idle:
                s.close()
            return answer, counted
        finally:
            await server.close()

    answer, counted = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 200") and counted == 4


def test_closed_connections_are_released_at_once() -> None:
    # The lifetime timer of a connection must not keep it (transport, aiohttp's handler, buffers)
    # alive for 30 s after it closed: at a scrape per few ms that was megabytes.
    async def scenario() -> None:
        port = free_port()
        server = await serve(app(), "127.0.0.1", port)
        try:
            for _ in range(100):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert (await reader.read()).startswith(b"HTTP/1.1 200")
                writer.close()
            await asyncio.sleep(0.1)
            gc.collect()
            alive = [o for o in gc.get_objects() if isinstance(o, asyncio.BaseTransport)]
            assert len(alive) <= 5, len(alive)
        finally:
            await server.close()

    asyncio.run(scenario())


def test_an_over_long_request_line_gets_a_short_414_without_its_url() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        port = free_port()
        server = await serve(app(), "127.0.0.1", port)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            long = await asyncio.wait_for(reader.read(), 5)  # then the server closes
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            fine = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            return long, fine
        finally:
            await server.close()

    long, fine = asyncio.run(scenario())
    assert long.startswith(b"HTTP/1.1 414 ") and long.endswith(b"\r\n\r\nrequest line longer than 8190 bytes\n")
    assert b"aaaa" not in long and len(long) < 400
    assert fine.startswith(b"HTTP/1.1 200")


def test_request_lines_are_followed_past_headers_and_bodies() -> None:
    lines = RequestLines()
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    assert lines.feed(request * 3) == request * 3  # passed whole, pipelined
    assert b"".join(lines.feed(bytes([b])) for b in request) == request  # a byte at a time
    body = b"POST /x HTTP/1.1\r\nContent-Length: 20000\r\n\r\n" + b"z" * 20_000
    assert lines.feed(body + request) == body + request  # a long body is not a long request line
    long = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    pieces = b"".join(lines.feed(long[i : i + 1000]) for i in range(0, len(long), 1000))
    assert pieces == f"GET {URI_TOO_LONG_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    exactly = b"GET /" + b"a" * (MAX_REQUEST_LINE - 14) + b" HTTP/1.1\r\n\r\n"
    assert lines.feed(exactly) == exactly  # 8190 bytes are still fine, as aiohttp has it
    chunked = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n" + b"y" * 9000
    assert lines.feed(chunked) == chunked  # after a chunked body the guard stops looking


HEADS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET / HTTP/1.1\nHost: x\n\n",  # bare LF
                b"\r\n",  # a blank line before a request line
                b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab\r\n\r\n",  # a body that looks like a head end
                b"POST /x HTTP/1.1\r\ncontent-LENGTH: 3\r\n\r\n\n\n\n",
                b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                b"POST /x HTTP/1.1\r\nContent-Length: 9001\r\n\r\n",  # its body in a read of its own
                b"PUT /x HTTP/1.1\r\nTransfer-encoding: chunked\r\n\r\n",
                b"q" * 9001,
                b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
                b"GET /" + b"b" * (MAX_REQUEST_LINE - 14) + b" HTTP/1.1\r\n\r\n",
            ]
        ),
        st.binary(max_size=40),
    ),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(HEADS, st.one_of(st.none(), st.lists(st.integers(min_value=1, max_value=9000), max_size=6)))
def test_request_lines_pass_whole_heads_unfollowed_as_they_would_line_by_line(
    heads: list[bytes], cuts: list[int] | None
) -> None:
    """The shortcut for reads that are whole heads (a scraper's GET) gives what following the bytes line
    by line gives, and leaves the same state behind, however the stream is cut into reads (`None`: a
    read per piece)."""
    reads = heads
    if cuts is not None:
        stream, reads, at = b"".join(heads), [], 0
        for cut in cuts:
            reads.append(stream[at : at + cut])
            at += cut
        reads.append(stream[at:])
    fast, slow = RequestLines(), RequestLines()
    out_fast = [fast.feed(read) for read in reads]
    out_slow = [slow._walk(read) for read in reads]
    assert out_fast == out_slow
    assert vars(fast) == vars(slow)


# ---- https:// to the plain HTTP port: answered at once, whatever aiohttp would do ----


def test_a_tls_client_on_the_plain_port_is_answered_at_once() -> None:
    """Answered on its first two bytes: aiohttp says nothing before a newline byte, which the first
    bytes of a ClientHello need not hold (its record header alone, or the first TCP segment of a long
    one), and its answer differs from version to version."""
    hello = client_hello()
    before_newline = hello[: hello.index(b"\n")]  # supported_groups (0x000a) puts one in every TLS 1.3 hello

    async def answer(port: int, *pieces: bytes) -> tuple[bytes, float]:
        """What the server sends until it ends its side, for `pieces` sent 50 ms apart; how long after them."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for piece in pieces:
            writer.write(piece)
            await asyncio.sleep(0.05)
        sent = time.monotonic()
        got = await asyncio.wait_for(reader.read(), 5)
        took = time.monotonic() - sent
        writer.close()
        return got, took

    async def scenario() -> dict[str, tuple[bytes, float] | BaseException]:
        port = free_port()
        server = await serve(app(), "127.0.0.1", port)
        try:
            seen: dict[str, tuple[bytes, float] | BaseException] = {
                "hello": await answer(port, hello),
                "its record header": await answer(port, hello[:5]),
                "up to its first newline": await answer(port, before_newline),
                "a byte, a byte, the rest": await answer(port, hello[:1], hello[1:2], hello[2:]),
                "0x16, then HTTP": await answer(port, b"\x16", b"GET / HTTP/1.1\r\n\r\n"),
                "HTTP": await answer(port, REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")),
            }
            try:  # a real TLS client, as a browser pointed at https://: a protocol error, not a wait
                await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ssl.create_default_context()), 5)
            except (ssl.SSLError, asyncio.TimeoutError) as e:
                seen["TLS client"] = e
            return seen
        finally:
            await server.close()

    seen = asyncio.run(scenario())
    for how in ("hello", "its record header", "up to its first newline", "a byte, a byte, the rest"):
        got, took = seen[how]  # type: ignore[misc]
        assert got == PLAIN_HTTP_ONLY and took < 1.0, (how, got, took)
    assert PLAIN_HTTP_ONLY.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert PLAIN_HTTP_ONLY.endswith(
        b"\r\n\r\n400 Bad Request: this port speaks plain HTTP, not HTTPS; "
        + b"use http://, or set up TLS with web_config_file\n"
    )
    got, _ = seen["0x16, then HTTP"]  # type: ignore[misc]
    assert got.split(b" ")[1] == b"400" and got != PLAIN_HTTP_ONLY  # aiohttp's own: the byte held back went on
    got, _ = seen["HTTP"]  # type: ignore[misc]
    assert got.startswith(b"HTTP/1.1 200")
    assert isinstance(seen["TLS client"], ssl.SSLError), seen["TLS client"]


# ---- TLS: the guard starts it, so a handshake holds a counted, bounded slot ----


def client_context(tls_files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    return context


def server_context(tls_files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.cert, tls_files.key)
    return context


def test_https_through_the_guard_and_plain_http_on_the_tls_port(tls_files: TlsFiles) -> None:
    async def scenario() -> tuple[bytes, bytes, bytes]:
        port = free_port()
        server = await serve(app(), "127.0.0.1", port, server_context(tls_files))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(tls_files))
            writer.write(REQUEST)
            secured = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)  # plain HTTP: not a ClientHello
            plain = await asyncio.wait_for(reader.read(), 5)
            server.guard.tls = None  # a reload that turns TLS off: new connections are plain
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            after = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            return secured, plain, after
        finally:
            await server.close()

    secured, plain, after = asyncio.run(scenario())
    assert secured.startswith(b"HTTP/1.1 200") and plain == b"" and after.startswith(b"HTTP/1.1 200")


def test_a_handshake_that_never_finishes_holds_a_slot_for_a_bounded_time(
    tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(httpguard, "TLS_HANDSHAKE_SECONDS", 0.3)
    monkeypatch.setattr(httpguard, "CONNECTION_LIFETIME_SECONDS", 1.0)
    monkeypatch.setattr(httpguard, "MAX_CONNECTIONS", 4)

    async def scenario() -> tuple[int, list[bytes], int, int, bytes]:
        port = free_port()
        server = await serve(app(), "127.0.0.1", port, server_context(tls_files))
        try:
            # Two clients begin a handshake (the first bytes of a ClientHello) and stall.
            stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            for _, writer in stalled:
                writer.write(b"\x16\x03\x01\x02\x00\x01")
            await asyncio.sleep(0.1)
            handshaking = len(server.guard.handshaking)
            dropped = [await asyncio.wait_for(reader.read(), 2) for reader, _ in stalled]  # TLS_HANDSHAKE_SECONDS
            # Six that send nothing: the cap of 4 evicts the oldest, the lifetime the rest.
            silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(6)]
            await asyncio.sleep(0.1)
            counted = len(server.guard.open)
            dropped += [await asyncio.wait_for(reader.read(), 3) for reader, _ in silent]
            await asyncio.sleep(0.1)
            left = len(server.guard.open) + len(server.guard.handshaking)
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(tls_files))
            writer.write(REQUEST)
            answer = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            for _, w in [*stalled, *silent]:
                w.close()
            return handshaking, dropped, counted, left, answer
        finally:
            await server.close()

    handshaking, dropped, counted, left, answer = asyncio.run(scenario())
    assert handshaking == 2 and dropped == [b""] * 8
    assert counted == 4 and left == 0 and answer.startswith(b"HTTP/1.1 200")


def test_handshakes_under_way_are_capped_oldest_dropped_first(
    tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(httpguard, "MAX_HANDSHAKES", 2)

    async def scenario() -> tuple[bytes, int, bytes]:
        port = free_port()
        server = await serve(app(), "127.0.0.1", port, server_context(tls_files))
        try:
            stalled = []
            for _ in range(3):  # each begins a handshake and stalls
                stalled.append(await asyncio.open_connection("127.0.0.1", port))
                stalled[-1][1].write(b"\x16\x03\x01\x02\x00\x01")
                await asyncio.sleep(0.05)
            first = await asyncio.wait_for(stalled[0][0].read(), 2)  # dropped for the third
            handshaking = len(server.guard.handshaking)
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(tls_files))
            writer.write(REQUEST)
            answer = await asyncio.wait_for(reader.readline(), 5)
            for _, w in [*stalled, (reader, writer)]:
                w.close()
            return first, handshaking, answer
        finally:
            await server.close()

    first, handshaking, answer = asyncio.run(scenario())
    assert first == b"" and handshaking == 2 and answer.startswith(b"HTTP/1.1 200")


def test_asyncio_tls_internals_the_guard_builds_on() -> None:
    """The guard stacks asyncio's own TLS protocol as loop.start_tls does (see httpguard): if a Python
    release renames these, this fails before any client does."""
    parameters = inspect.signature(asyncio.sslproto.SSLProtocol).parameters
    assert list(parameters)[:4] == ["loop", "app_protocol", "sslcontext", "waiter"]
    assert {"server_side", "ssl_handshake_timeout"} <= set(parameters)
    assert parameters["call_connection_made"].default is True
    if issubclass(asyncio.sslproto.SSLProtocol, asyncio.BufferedProtocol):
        assert callable(asyncio.protocols._feed_data_to_buffered_proto)  # type: ignore[attr-defined]
        assert asyncio.sslproto.SSLProtocol.max_size == 256 * 1024  # type: ignore[attr-defined]  # the guard's is smaller
        loop = asyncio.new_event_loop()
        try:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            layer = httpguard._TLSLayer(loop, asyncio.Protocol(), context, loop.create_future(), True)
            assert len(layer._ssl_buffer) == httpguard.TLS_READ_BUFFER  # type: ignore[attr-defined]
        finally:
            loop.close()
