"""Basic auth: right and wrong credentials, the cache that spares bcrypt, a guessing client kept from
stalling anything, failures counted and summarised at most once a minute."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

import bcrypt
import pytest

from ble_exporter import auth as auth_module
from ble_exporter.auth import MAX_WAITING_CHECKS, BasicAuth

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4))


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record every bcrypt check made."""
    made: list[bytes] = []
    real = auth_module._checkpw

    def counted(password: bytes, hashed: bytes) -> bool:
        made.append(password)
        return real(password, hashed)

    monkeypatch.setattr(auth_module, "_checkpw", counted)
    return made


def test_right_and_wrong_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    made = checks(monkeypatch)
    guard = BasicAuth({"prometheus": HASH})

    async def go() -> list[bool]:
        return [
            await guard.allowed(header("prometheus", "s3cret")),
            await guard.allowed(header("prometheus", "wrong")),
            await guard.allowed(header("mallory", "s3cret")),  # unknown user: checked against a fake hash
            await guard.allowed(None),
            await guard.allowed("Bearer abc"),
            await guard.allowed("Basic !!!not-base64"),
            await guard.allowed("Basic " + base64.b64encode(b"no-colon").decode()),
        ]

    assert asyncio.run(go()) == [True, False, False, False, False, False, False]
    assert made == [b"s3cret", b"wrong", b"s3cret"]  # the unknown user cost a bcrypt check too (no timing leak)


def test_verified_credentials_are_cached_and_a_changed_hash_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    made = checks(monkeypatch)
    guard = BasicAuth({"prometheus": HASH})

    async def scrapes(n: int) -> list[bool]:
        return [await guard.allowed(header("prometheus", "s3cret")) for _ in range(n)]

    assert asyncio.run(scrapes(100)) == [True] * 100 and len(made) == 1
    guard.users = {"prometheus": bcrypt.hashpw(b"new", bcrypt.gensalt(4))}  # a reload with a new password
    assert asyncio.run(scrapes(1)) == [False] and len(made) == 2


def test_a_guessing_client_never_blocks_the_loop_and_its_queue_stays_short(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[bytes] = []

    def slow_check(password: bytes, hashed: bytes) -> bool:
        made.append(password)
        time.sleep(0.05)  # bcrypt at cost 10 on a Pi: tens of ms, in a worker thread
        return False

    monkeypatch.setattr(auth_module, "_checkpw", slow_check)
    guard = BasicAuth({"prometheus": HASH})
    ticks: list[float] = []

    async def go() -> list[bool]:
        async def heartbeat() -> None:  # the scan loop's stand-in: it must keep its 10 ms rhythm
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(heartbeat())
        results = await asyncio.gather(*(guard.allowed(header("prometheus", f"guess{i}")) for i in range(50)))
        beat.cancel()
        return results

    assert not any(asyncio.run(go()))
    assert len(made) == 1 + MAX_WAITING_CHECKS  # 50 guesses at once: the rest were refused unchecked
    # The checks ran beside the loop, not on it: the heartbeat kept beating through their 0.25 s (on
    # the loop they would have allowed none at all until the last one ended).
    assert len(ticks) >= 5


def test_failures_are_counted_and_summarised_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    guard = BasicAuth({"prometheus": HASH})
    with caplog.at_level(logging.WARNING):
        for _ in range(500):
            guard.refused("10.0.0.5")
    assert guard.failures == 500
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "requests with wrong or missing credentials refused" in lines[0]
    assert "10.0.0.5" in lines[0]


def test_no_users_means_no_credentials_needed() -> None:
    assert asyncio.run(BasicAuth({}).allowed(None))


def test_the_middleware_runs_only_while_there_are_users(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without users aiohttp skips the middleware altogether (Application._run_middlewares, set by
    BasicAuth.attach: aiohttp 3.8 builds the middleware chain anew for each request), and a reload
    that adds users puts it back in front of every path, unknown ones included, and takes it out again."""
    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import CollectorRegistry

    from ble_exporter.exporter import make_app

    guard = BasicAuth({})
    asked: list[str | None] = []
    real = guard.allowed

    async def allowed(header: str | None) -> bool:
        asked.append(header)
        return await real(header)

    monkeypatch.setattr(guard, "allowed", allowed)
    app = make_app(CollectorRegistry(), dict, auth=guard)
    assert app.frozen

    async def statuses(client: Any, *paths: str, **kwargs: Any) -> list[int]:
        return [(await client.get(path, **kwargs)).status for path in paths]

    async def go() -> None:
        async with TestClient(TestServer(app)) as client:
            assert await statuses(client, "/metrics", "/status", "/nowhere") == [200, 200, 404]
            assert asked == []  # not even called
            guard.users = {"prometheus": HASH}  # a reload that adds a user
            assert await statuses(client, "/metrics", "/status", "/nowhere") == [401, 401, 401]
            assert await statuses(client, "/healthz") == [200]
            right = {"Authorization": header("prometheus", "s3cret")}
            assert await statuses(client, "/metrics", "/nowhere", headers=right) == [200, 404]
            guard.users = {}  # and one that removes it
            asked.clear()
            assert await statuses(client, "/metrics", "/nowhere") == [200, 404]
            assert asked == []

    asyncio.run(go())


# An 87-byte password and its hash as bcrypt 3.2.2 (Debian 12) made it, from the whole password; htpasswd
# and the exporter-toolkit (Go) make the same, as all of them hash only the first 72 bytes.
LONG_PASSWORD = "correct horse battery staple " * 3
LONG_HASH = b"$2b$04$ZkW2pd6bj.veWlD78CL2weJuVk5SwRvwp1ekJCK5NKCRbhatAweKq"


def test_a_password_over_72_bytes_counts_by_its_first_72_on_every_bcrypt() -> None:
    # bcrypt 5.0 (Ubuntu 26.04, Debian forky) raises on such a password where older ones cut it: either
    # way the exporter checks the first 72 bytes, so the same users get in on every release.
    assert len(LONG_PASSWORD.encode()) == 87
    made_here = bcrypt.hashpw(LONG_PASSWORD.encode()[:72], bcrypt.gensalt(4))
    for hashed in (LONG_HASH, made_here):
        guard = BasicAuth({"prometheus": hashed})

        async def go(guard: BasicAuth = guard) -> list[bool]:
            return [
                await guard.allowed(header("prometheus", LONG_PASSWORD)),
                await guard.allowed(header("prometheus", LONG_PASSWORD[:72])),
                await guard.allowed(header("prometheus", LONG_PASSWORD[:72] + "anything else")),
                await guard.allowed(header("prometheus", LONG_PASSWORD[:71])),
                await guard.allowed(header("prometheus", "C" + LONG_PASSWORD[1:])),
            ]

        assert asyncio.run(go()) == [True, True, True, False, False], (getattr(bcrypt, "__version__", "?"), hashed)
