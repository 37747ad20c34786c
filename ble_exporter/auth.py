"""Basic auth for the HTTP endpoints, as the exporter-toolkit does it: users with bcrypt hashes, a
verified (user, password) cached so that a scrape every few seconds does not pay for bcrypt each time,
and a client guessing passwords kept from stalling anything else.

A bcrypt check costs tens of milliseconds of CPU: it runs in a worker thread (bcrypt releases the GIL),
one at a time, so the event loop (scans, other scrapes) never waits for it; while checks queue up,
further unknown credentials are refused at once rather than queued without bound. Cached results are
keyed by a salted digest of user, stored hash and password: the password itself is kept nowhere, and a
changed hash (a reload) misses the cache. Failures are counted, and logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("ble_exporter.http")

CACHE_SIZE = 256  # verified or refused credentials remembered
MAX_WAITING_CHECKS = 4  # bcrypt checks queued behind the one running; more are refused at once
SUMMARY_SECONDS = 60.0
BCRYPT_MAX_PASSWORD_BYTES = 72  # bcrypt's key is 72 bytes: the rest of a longer password is not checked
OPEN_PATHS = frozenset({"/healthz"})  # liveness tells nothing; local probes need no password
# The toolkit's hash of "fakepassword": an unknown user costs the same bcrypt time as a known one.
_UNKNOWN_USER_HASH = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BasicAuth:
    """The credentials check, as an aiohttp middleware that runs only while there are users.

    aiohttp decides when an app is frozen whether to run its middlewares at all, and when it does, 3.8
    (Debian 12's) builds the chain anew for every request: 14 % of the CPU time of a /metrics request
    on the shipped runtime (bench/results.md), for a check that has nothing to check. So `attach`
    freezes the app and sets that decision (`Application._run_middlewares`, pinned by
    tests/test_auth.py) from `users`, and so does every change of `users` (a reload that adds or
    removes them). If aiohttp stopped reading it, the middleware would simply run for every request:
    slower, never open.
    """

    def __init__(self, users: dict[str, bytes]) -> None:
        self._apps: list[weakref.ref[web.Application]] = []  # an app is a mapping: no WeakSet
        self.users = users
        self.failures = 0  # ble_exporter_http_auth_failures_total
        self._salt = os.urandom(16)
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._checking = asyncio.Semaphore(1)
        self._waiting = 0
        self._unlogged = 0
        self._last_summary = time.monotonic() - SUMMARY_SECONDS
        self._last_client = ""

    @property
    def users(self) -> dict[str, bytes]:
        return self._users

    @users.setter
    def users(self, users: dict[str, bytes]) -> None:
        self._users = users
        self._apps = [ref for ref in self._apps if ref() is not None]
        for ref in self._apps:
            app = ref()
            if app is not None:
                app._run_middlewares = bool(users)

    def attach(self, app: web.Application) -> None:
        """Freeze `app`, built with `self.middleware()`, and run that middleware only while there are users."""
        app.freeze()
        self._apps.append(weakref.ref(app))
        app._run_middlewares = bool(self._users)

    async def allowed(self, header: str | None) -> bool:
        """Whether an Authorization header names a user with the right password (any request, when no
        users are configured)."""
        if not self.users:
            return True
        credentials = _basic(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self.users.get(user)
        stored = hashed if hashed is not None else _UNKNOWN_USER_HASH
        key = hashlib.blake2b(b"\0".join((self._salt, user.encode(), stored, password)), digest_size=32).digest()
        cached = self._cache.get(key)
        if cached is None:
            if self._waiting > MAX_WAITING_CHECKS:  # one running, MAX_WAITING_CHECKS behind it
                return False  # a flood of guesses: refused unchecked, the queue stays short
            self._waiting += 1
            try:
                async with self._checking:
                    cached = await asyncio.to_thread(_checkpw, password, stored)
            finally:
                self._waiting -= 1
            self._cache[key] = cached
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return cached and hashed is not None

    def refused(self, client: str) -> None:
        self.failures += 1
        self._unlogged += 1
        self._last_client = client
        now = time.monotonic()
        if now - self._last_summary >= SUMMARY_SECONDS:
            log.warning(
                "HTTP: %d requests with wrong or missing credentials refused since the last such line (the last "
                "from %s); `ble_exporter_http_auth_failures_total` counts them",
                self._unlogged,
                client,
            )
            self._unlogged, self._last_summary = 0, now

    def middleware(self) -> Any:  # aiohttp's Middleware type differs between 3.8 and 3.14

        @web.middleware
        async def require_credentials(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path in OPEN_PATHS or await self.allowed(request.headers.get("Authorization")):
                return await handler(request)
            self.refused(request.remote or "?")
            return web.Response(
                status=401,
                text="401 Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="ble-exporter", charset="UTF-8"'},
            )

        return require_credentials


def _basic(header: str | None) -> tuple[str, bytes] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "replace"), password


def _checkpw(password: bytes, hashed: bytes) -> bool:
    """Only the first 72 bytes of a password count, with every bcrypt, as with the exporter-toolkit (Go) and
    htpasswd: bcrypt before 5.0 (Debian 12 and 13, Ubuntu 24.04) ignores the rest itself; 5.0 (Ubuntu
    26.04, Debian forky) raises ValueError instead, which would refuse every such password."""
    import bcrypt

    try:
        return bool(bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD_BYTES], hashed))
    except ValueError:  # not a bcrypt hash (load_web_config refuses those): never a match
        return False
