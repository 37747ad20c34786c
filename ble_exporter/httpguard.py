"""Bounds on what HTTP clients can hold: open connections, their lifetime, pipelined requests, the
length of a request line, and the log lines their mistakes would cause; and a prompt answer to a TLS
client on the plain HTTP port.

aiohttp's protocol factory is wrapped rather than patched. Two bounds depend on aiohttp's version and
internals, each pinned by a test in tests/test_httpguard.py that fails loudly if the internal changes:
- aiohttp before 3.14.1 parses everything a client pipelines and keeps every parsed request until it
  is answered (1 MB of tiny GETs held ~50 MB on 3.8; 3.11 is the same). For those versions received
  bytes are fed to aiohttp a slice at a time while its queue (`RequestHandler._messages`) is short.
- aiohttp 3.8 logs an AssertionError from `_handle_request` when a client closed its connection while
  its pipelined requests were queued (fixed in 3.9): a disconnect, not a fault.
"""

from __future__ import annotations

import array
import asyncio
import asyncio.sslproto
import contextlib
import fcntl
import logging
import re
import ssl
from collections.abc import Callable

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

MAX_CONNECTIONS = 128  # beyond, the oldest connection that has sent nothing (else the oldest) is closed
CONNECTION_LIFETIME_SECONDS = 30.0  # bounds a client that trickles its request; scrapers reconnect
MAX_QUEUED_REQUESTS = 8  # pipelined requests parsed ahead of the one being answered, per connection
FEED_BYTES = 1024  # received bytes are handed to aiohttp's parser in slices this big
MAX_REQUEST_LINE = 8190  # aiohttp's own limit, beyond which it answers 400 with the line echoed
URI_TOO_LONG_PATH = "/.uri-too-long"  # what an over-long request line becomes; the app answers it 414
TLS_RECORD = b"\x16\x03"  # how a TLS connection begins (a handshake record, TLS 1.x): never HTTP
_NOT_TLS = b"400 Bad Request: this port speaks plain HTTP, not HTTPS; use http://, or set up TLS with web_config_file\n"
# The answer to a TLS client on the plain HTTP port (https:// to it), on its first two bytes. Else
# the bytes would wait in RequestLines for a newline that the first bytes of a ClientHello need
# not hold (its record header alone, or the first TCP segment of a long one): the client would hang until
# the connection's end. aiohttp's own answer differs by version, too; this one is the same on all.
PLAIN_HTTP_ONLY = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s" % (len(_NOT_TLS), _NOT_TLS)
)
_REFUSED = b"refused"  # _Tracked._start once a TLS client was answered: the rest of its bytes are dropped


def aiohttp_version(text: str = aiohttp.__version__) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


# aiohttp 3.14.1 bounds its own queue of pipelined requests (MAX_MSG_QUEUE_SIZE in web_protocol).
SLICE_PIPELINED_INPUT = aiohttp_version() < (3, 14, 1)
# aiohttp 3.9 no longer asserts in _handle_request when a pipelining client disconnects.
QUIET_DISCONNECT_ASSERTION = aiohttp_version() < (3, 9)


class ClientMistakes(logging.Filter):
    """aiohttp logs a malformed request with a traceback at ERROR; a client's mistake is not ours
    (it already got its 400), and a flood of them must not fill the disk."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if QUIET_DISCONNECT_ASSERTION and isinstance(error, AssertionError) and _raised_in(error, "_handle_request"):
            return False
        return not isinstance(error, (HttpProcessingError, ConnectionError, asyncio.CancelledError))


def _raised_in(error: BaseException, function: str) -> bool:
    """Whether `error` was raised by aiohttp's `function` itself."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name == function and "aiohttp" in tb.tb_frame.f_code.co_filename


_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")


class RequestLines:
    """Follows a client's bytes from one request line to the next (past the headers and any Content-Length
    body) and replaces a request line longer than MAX_REQUEST_LINE with `GET URI_TOO_LONG_PATH`, so the
    client gets a short 414 instead of aiohttp's 400 that echoes 8 KB of its URL. A request line is held
    back until it is complete (at most MAX_REQUEST_LINE bytes); everything else passes at once. After a
    chunked body the rest of the connection passes unchecked (aiohttp still enforces its own limit)."""

    _LINE, _DISCARD, _HEADERS, _BODY, _BLIND = range(5)

    def __init__(self) -> None:
        self._mode = self._LINE
        self._line = bytearray()  # the request line held back, or the header line being read
        self._content_length = 0
        self._chunked = False
        self._body = 0  # body bytes still to pass

    def feed(self, data: bytes) -> bytes:
        """The bytes to give aiohttp for `data` received.

        A read at the start of a request that is whole heads and nothing more, each without a body and too
        short to hold an over-long request line (a scraper's GET), passes as it is: `_walk` would pass it
        unchanged and end where it began."""
        if self._mode == self._LINE and not self._line and len(data) <= MAX_REQUEST_LINE and data.endswith(_HEAD_ENDS):
            lower = data.lower()
            if b"content-length" not in lower and b"transfer-encoding" not in lower:
                return data
        return self._walk(data)

    def _walk(self, data: bytes) -> bytes:
        """`feed`, following `data` line by line."""
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            if self._mode == self._BLIND:
                out += data[i:]
                break
            if self._mode == self._BODY:
                take = min(self._body, n - i)
                out += data[i : i + take]
                i += take
                self._body -= take
                if not self._body:
                    self._mode = self._LINE
                continue
            end = data.find(b"\n", i)
            stop = n if end < 0 else end + 1
            chunk, i = data[i:stop], stop
            if self._mode == self._DISCARD:  # the rest of an over-long request line
                if end >= 0:
                    self._mode = self._HEADERS
                continue
            if len(self._line) <= MAX_REQUEST_LINE + 2:
                self._line += chunk
            if self._mode == self._LINE:
                if len(self._line.rstrip(b"\r\n")) > MAX_REQUEST_LINE:
                    out += f"GET {URI_TOO_LONG_PATH} HTTP/1.1\r\n".encode()
                    self._mode = self._DISCARD if end < 0 else self._HEADERS
                    self._line.clear()
                elif end >= 0:
                    out += self._line
                    if self._line.strip():  # blank lines before a request line are allowed
                        self._mode = self._HEADERS
                    self._line.clear()
                continue
            out += chunk  # a header line
            if end >= 0:
                self._header(bytes(self._line).strip().lower())
                self._line.clear()
        return bytes(out)

    def _header(self, line: bytes) -> None:
        if not line:  # the end of the head
            self._mode = self._BLIND if self._chunked else self._BODY if self._content_length else self._LINE
            self._body, self._content_length, self._chunked = self._content_length, 0, False
        elif line.startswith(b"content-length:"):
            value = line[15:].strip()
            self._content_length = int(value) if value.isdigit() and len(value) < 16 else 0
        elif line.startswith(b"transfer-encoding:"):
            self._chunked = True


TLS_HANDSHAKE_SECONDS = 10.0  # a client that starts TLS and never finishes is dropped after this
# Handshakes under way at once; beyond, the oldest is dropped. A scraper finishes its handshake in
# milliseconds; TLS starts only at the client's first bytes, so a silent connection costs no TLS state.
MAX_HANDSHAKES = 16
TLS_READ_BUFFER = 32 * 1024  # per TLS connection; asyncio's 256 KiB is for bulk transfers, ours are requests


class _TLSLayer(asyncio.sslproto.SSLProtocol):
    """asyncio's TLS protocol with a smaller read buffer: 128 connections held 32 MiB with asyncio's."""

    max_size = TLS_READ_BUFFER  # Python 3.11 on (3.10's SSLProtocol has no such buffer)


class ConnectionGuard:
    """Wraps aiohttp's protocol factory to bound open connections and their lifetime: idle or
    trickling clients can neither exhaust file descriptors nor hold a slot for long.

    With `tls` set, the guard (not asyncio's server) starts TLS on each accepted connection when the
    client's first bytes (its ClientHello) arrive, so a connection before and during its handshake holds
    a counted, evictable slot like any other (a silent one is evicted first and costs no TLS buffer), at
    most MAX_HANDSHAKES handshakes run at once, and each ends after TLS_HANDSHAKE_SECONDS. TLS is asyncio's
    own `sslproto.SSLProtocol`, stacked as `create_server(ssl=...)` stacks it, and handed the bytes that
    started it: `loop.start_tls` after those bytes lost the ClientHello on Debian 12's Python 3.11.2
    (its transport reads on while paused), and every handshake timed out. `tls` may change at any time
    (a reload): new connections use the new one.
    """

    def __init__(self, factory: Callable[[], asyncio.Protocol], tls: ssl.SSLContext | None = None) -> None:
        self._factory = factory
        self.tls = tls
        self.open: dict[_Tracked, asyncio.Transport] = {}  # oldest first
        self.handshaking: dict[_Tracked, asyncio.Transport] = {}  # oldest first

    def __call__(self) -> asyncio.Protocol:
        return _Tracked(self._factory(), self)

    def close_all(self) -> None:
        """At shutdown: abort, not close, which would wait to flush answers a client is not reading."""
        for transport in list(self.open.values()):
            transport.abort()


def _spoke(connection: _Tracked, transport: asyncio.Transport) -> bool:
    """Whether the client has sent something, read or still waiting in the kernel: in a burst of new
    connections, a scraper's request may not have been read yet when its slot is wanted."""
    if not connection.spoke and not transport.is_closing():
        import termios  # here, at the first eviction: its 250 names alone would grow the interned-string table

        waiting = array.array("i", [0])
        with contextlib.suppress(OSError):
            fcntl.ioctl(transport.get_extra_info("socket").fileno(), termios.FIONREAD, waiting)
        connection.spoke = waiting[0] > 0
    return connection.spoke


class _Tracked(asyncio.Protocol):
    """aiohttp's protocol, seen through the guard (its class has __slots__, so it is wrapped). With TLS
    it is first the TCP connection's protocol, then, once the client speaks, the TLS layer's."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner, self._guard = inner, guard
        self._raw: asyncio.Transport | None = None  # the TCP connection
        self._transport: asyncio.Transport | None = None  # what aiohttp writes to: the TCP or the TLS one
        self._tls: ssl.SSLContext | None = None  # to be started at the client's first bytes
        self._lines = RequestLines()
        self._start: bytes | None = None  # a plain connection's first bytes, until they show whether TLS begins
        self._held = bytearray()  # received, not yet given to aiohttp
        self._paused = False  # reading paused by us (not by aiohttp's own flow control)
        self.spoke = False  # has sent something: a burst of idle connections must not evict its request
        self._deadline: asyncio.TimerHandle | None = None  # closes it at the end of its lifetime

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self._raw is not None:  # the TLS layer's, its handshake done (_start_tls)
            self._guard.handshaking.pop(self, None)
            self._transport = transport
            self._inner.connection_made(transport)
            return
        self._raw = transport
        open_connections = self._guard.open
        open_connections[self] = transport
        if len(open_connections) > MAX_CONNECTIONS:
            oldest = next(iter(open_connections))
            silent = next((c for c, t in open_connections.items() if c is not self and not _spoke(c, t)), oldest)
            open_connections.pop(silent).close()
        self._deadline = asyncio.get_running_loop().call_later(CONNECTION_LIFETIME_SECONDS, transport.close)
        self._tls = self._guard.tls
        if self._tls is None:
            self._start = b""
            self._transport = transport
            self._inner.connection_made(transport)

    def _start_tls(self, raw: asyncio.Transport, tls: ssl.SSLContext, hello: bytes) -> None:
        """Stack TLS on the connection and hand it the bytes received so far."""
        handshaking = self._guard.handshaking
        handshaking[self] = raw
        if len(handshaking) > MAX_HANDSHAKES:
            handshaking.pop(next(iter(handshaking))).close()
        loop = asyncio.get_running_loop()
        handshake: asyncio.Future[None] = loop.create_future()
        handshake.add_done_callback(self._handshake_ended)
        layer = _TLSLayer(
            loop,
            self,
            tls,
            handshake,
            server_side=True,
            ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS,  # type: ignore[arg-type]  # typeshed says int; a float works
        )
        raw.set_protocol(layer)
        layer.connection_made(raw)
        if isinstance(layer, asyncio.BufferedProtocol):  # Python 3.11 on
            asyncio.protocols._feed_data_to_buffered_proto(layer, hello)  # type: ignore[attr-defined]
        else:
            layer.data_received(hello)

    def _handshake_ended(self, handshake: asyncio.Future[None]) -> None:
        """Plain HTTP on the TLS port, a bad, stalled or evicted handshake: nothing to answer, and the TLS
        layer does not report the loss of a connection it never made."""
        failed = handshake.cancelled() or handshake.exception() is not None
        if self._transport is None or failed:
            if self._raw is not None:
                self._raw.close()
            self._forget()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        if self._transport is not None:  # aiohttp's side exists only once (TLS) data can flow
            self._inner.connection_lost(exc)

    def _forget(self) -> None:
        self._guard.open.pop(self, None)
        self._guard.handshaking.pop(self, None)
        if self._deadline is not None:  # else the timer keeps the closed connection alive for its lifetime
            self._deadline.cancel()

    def data_received(self, data: bytes) -> None:
        self.spoke = True
        if self._transport is None:  # the first bytes of a TLS connection
            if self._raw is not None and self._tls is not None and not self._raw.is_closing():
                self._start_tls(self._raw, self._tls, data)
            return
        if self._start is not None:
            data = self._first_bytes(data)
        data = self._lines.feed(data)
        if not data:
            return
        if not SLICE_PIPELINED_INPUT:
            self._inner.data_received(data)
            return
        if not self._held and len(data) <= FEED_BYTES and len(self._inner._messages) < MAX_QUEUED_REQUESTS:  # type: ignore[attr-defined]
            if not self._transport.is_closing():  # what _feed would do, without copying `data` twice
                self._inner.data_received(data)
            return
        self._held += data
        self._feed()

    def _first_bytes(self, data: bytes) -> bytes:
        """What to read of `data` among the first bytes of a plain connection: nothing while they may
        still begin TLS, all of them (those held back too) once they do not. A TLS client (https:// to
        the plain port) is answered 400 at once, in plain text, and its further bytes are dropped until
        it closes, so that it reports a protocol error instead of waiting. The answer is followed by a
        FIN, not a close: closing with its ClientHello unread would reset the connection, and the client
        might never read the answer."""
        if self._start is _REFUSED:
            return b""
        assert self._start is not None and self._transport is not None
        data = self._start + data
        if len(data) < len(TLS_RECORD) and TLS_RECORD.startswith(data):
            self._start = data  # the next byte tells
            return b""
        if not data.startswith(TLS_RECORD):
            self._start = None  # HTTP, or anything aiohttp answers itself
            return data
        self._start = _REFUSED
        self._transport.write(PLAIN_HTTP_ONLY)
        self._transport.write_eof()
        return b""

    def _feed(self) -> None:
        """Hand aiohttp the received bytes a slice at a time while few requests wait in its queue.
        Reading from the client pauses meanwhile, so the rest waits in the kernel's bounded buffers."""
        transport = self._transport
        if transport is None or transport.is_closing():
            self._held.clear()
            return
        queue = self._inner._messages  # type: ignore[attr-defined]  # aiohttp's parsed, unanswered requests
        while self._held and len(queue) < MAX_QUEUED_REQUESTS:
            chunk = bytes(self._held[:FEED_BYTES])
            del self._held[:FEED_BYTES]
            self._inner.data_received(chunk)
        if self._held:
            if not self._paused:
                transport.pause_reading()
                self._paused = True
            asyncio.get_running_loop().call_later(0.01, self._feed)
        elif self._paused:
            self._paused = False
            transport.resume_reading()

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._transport is not None else None

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._inner.resume_writing()
