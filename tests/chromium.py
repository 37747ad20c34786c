"""Debian's chromium, headless, driven over the DevTools protocol with aiohttp's websocket client: the
few JSON messages the test needs, with no browser-automation library (and no chromedriver) to install.

    async with Chromium.launch(tmp_path) as browser:
        tab = await browser.new_tab(width=390, height=844, mobile=True)
        await tab.goto("http://127.0.0.1:8000/")
        title = await tab.evaluate("document.title")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:  # aiohttp >= 3.10 makes it generic; Debian 12's 3.8 does not
    WebSocket = aiohttp.ClientWebSocketResponse[bool]
else:
    WebSocket = aiohttp.ClientWebSocketResponse

BROWSERS = ("chromium", "chromium-browser")
START_TIMEOUT = 60.0  # a cold start on a loaded 2-core machine
COMMAND_TIMEOUT = 30.0


def find_chromium() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("chromium is missing: apt-get install chromium (make test-browser-deps does)")


class Chromium:
    """One headless browser process and its DevTools connection; events are kept in arrival order."""

    def __init__(self, process: asyncio.subprocess.Process, ws: WebSocket) -> None:
        self.process, self.ws = process, ws
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._arrived = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, profile: Path) -> AsyncIterator[Chromium]:
        args = [
            find_chromium(),
            "--headless",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox
        process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        assert process.stderr is not None
        seen: list[str] = []
        drain: asyncio.Task[None] | None = None
        try:
            url = await asyncio.wait_for(_devtools_url(process.stderr, seen), START_TIMEOUT)
            drain = asyncio.get_running_loop().create_task(_drain(process.stderr))
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(url, max_msg_size=0) as ws,
            ):
                browser = cls(process, ws)
                try:
                    yield browser
                finally:
                    browser._reader.cancel()
        except asyncio.TimeoutError:
            raise AssertionError("chromium did not start: " + "".join(seen)[-2000:]) from None
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except asyncio.TimeoutError:
                    process.kill()
                    await process.wait()
            if drain is not None:
                drain.cancel()

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            future = self._pending.pop(data["id"], None) if "id" in data else None
            if future is not None and not future.done():
                if "error" in data:
                    future.set_exception(AssertionError(f"DevTools error: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            elif "method" in data:
                self.events.append(data)
                self._arrived.set()

    async def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        await self.ws.send_str(json.dumps(message))
        return await asyncio.wait_for(future, COMMAND_TIMEOUT)

    async def wait_event(self, method: str, session: str, after: int, timeout: float) -> dict[str, Any]:
        """The first event `method` of `session` among those that arrived after the first `after` events."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for event in self.events[after:]:
                if event["method"] == method and event.get("sessionId") == session:
                    return event
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {method} within {timeout} s")
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def new_tab(self, width: int, height: int, mobile: bool = False, scripts: bool = True) -> Tab:
        target = (await self.send("Target.createTarget", url="about:blank"))["targetId"]
        session = (await self.send("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable", session)
        tab = Tab(self, session)
        await tab.resize(width, height, mobile)
        if not scripts:
            await self.send("Emulation.setScriptExecutionDisabled", session, value=True)
        return tab


class Tab:
    """One page of the browser (a DevTools session attached to its target)."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser, self.session = browser, session

    async def resize(self, width: int, height: int, mobile: bool = False) -> None:
        await self.browser.send(
            "Emulation.setDeviceMetricsOverride",
            self.session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    async def colour_scheme(self, scheme: str) -> None:
        """Emulate the system's `light` or `dark` preference (prefers-color-scheme)."""
        await self.browser.send(
            "Emulation.setEmulatedMedia", self.session, features=[{"name": "prefers-color-scheme", "value": scheme}]
        )

    def mark(self) -> int:
        """A point in the event stream: `loaded(after=mark)` waits for a load after it."""
        return len(self.browser.events)

    async def loaded(self, after: int, timeout: float = 30.0) -> None:
        await self.browser.wait_event("Page.loadEventFired", self.session, after, timeout)

    async def goto(self, url: str) -> None:
        mark = self.mark()
        result = await self.browser.send("Page.navigate", self.session, url=url)
        assert "errorText" not in result, result
        await self.loaded(mark)

    async def evaluate(self, expression: str) -> Any:
        result = await self.browser.send(
            "Runtime.evaluate", self.session, expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> bytes:
        png = base64.b64decode((await self.browser.send("Page.captureScreenshot", self.session, format="png"))["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return png

    def console(self) -> list[str]:
        """What the browser logged for this page: its own messages (CSP refusals among them) and exceptions."""
        out = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            if event["method"] == "Log.entryAdded":
                entry = event["params"]["entry"]
                out.append(f"{entry['level']}: {entry['text']}")
            elif event["method"] == "Runtime.exceptionThrown":
                out.append(f"exception: {event['params']['exceptionDetails'].get('text')}")
        return out


async def _devtools_url(stderr: asyncio.StreamReader, seen: list[str]) -> str:
    while True:
        line = (await stderr.readline()).decode(errors="replace")
        if not line:
            raise AssertionError("chromium exited: " + "".join(seen)[-2000:])
        seen.append(line)
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:
            return match.group(1)


async def _drain(stderr: asyncio.StreamReader) -> None:
    """Read what chromium goes on writing, so a full pipe never blocks it."""
    while await stderr.read(65536):
        pass
