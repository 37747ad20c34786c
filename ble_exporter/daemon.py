"""`ble-exporter run`: the exporter's lifecycle around the core: HTTP, systemd's notify protocol and
watchdog, signals, and reloading the config without a restart.

SIGTERM/SIGINT stop it (status 0, `stopped` in the log); SIGHUP (`systemctl reload`) re-reads the
config: a valid one takes effect from the next scan, keeping the HTTP socket (unless the address
changed), the counters and the live state of devices that stay; an invalid one is logged line by line
and the process runs on with the old one. Either way /metrics and /status say how the last reload went.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ble_exporter import __version__, sdnotify, signals
from ble_exporter.config import Config, ConfigError, load_config
from ble_exporter.core import Core
from ble_exporter.exits import Exit
from ble_exporter.logger import setup_logging
from ble_exporter.scanner import ScanError
from ble_exporter.startup import check, privileged_port

if TYPE_CHECKING:  # loaded only where there is a web config
    from ble_exporter.webconfig import WebConfig

log = logging.getLogger("ble_exporter")


def error(message: str) -> None:
    """A fatal error: once on stderr (for the journal and `systemctl status`) and once in the log."""
    for line in message.splitlines():
        print(f"ble-exporter: error: {line}", file=sys.stderr)
    log.error("%s", message)
    # systemctl status shows STATUS= even after the start limit hid the journal lines of earlier runs.
    sdnotify.notify(f"STATUS={message.splitlines()[0] if message else 'failed'}")


def config_changes(old: Config, new: Config) -> str:
    """What a reload changed, in a few words for its log line."""
    before = {d.mac: d for d in old.devices}
    after = {d.mac: d for d in new.devices}
    parts = []
    if added := [d.name for mac, d in after.items() if mac not in before]:
        parts.append(f"devices added: {', '.join(added)}")
    if removed := [d.name for mac, d in before.items() if mac not in after]:
        parts.append(f"devices removed: {', '.join(removed)}")
    if changed := [d.name for mac, d in after.items() if mac in before and before[mac] != d]:
        parts.append(f"devices changed: {', '.join(changed)}")
    for key in (
        "scan_interval_seconds",
        "scan_duration_seconds",
        "watchdog_silent_scans",
        "adapter_reset_after_silent_scans",
        "adapter",
        "scan_mode",
        "log_file",
        "live_page",
    ):
        if getattr(old, key) != getattr(new, key):
            parts.append(f"{key} {_shown(getattr(old, key))} -> {_shown(getattr(new, key))}")
    if old.http_address != new.http_address:
        parts.append(f"HTTP {old.http_address} -> {new.http_address}")
    return "; ".join(parts) or "nothing changed"


def _shown(value: object) -> str:
    """A key's value as the config writes it: `hci0, hci1` for a list."""
    return ", ".join(value) if isinstance(value, tuple) else str(value)


class Daemon:
    """The `run` command: one Core, one HTTP server, until SIGTERM; SIGHUP reloads."""

    def __init__(
        self,
        cfg: Config,
        *,
        simulate: bool,
        log_file_option: str | None,
        log_level: int,
        web: WebConfig | None = None,
        warnings: Sequence[str] = (),
    ) -> None:
        from ble_exporter.auth import BasicAuth

        self.cfg = cfg
        self.web = web
        self.auth = BasicAuth(web.users if web else {})
        self.simulate = simulate
        self.log_file_option = log_file_option  # --log-file wins over the config's log_file, reloads too
        self.log_level = log_level
        self.started_at = time.time()
        self.warnings = warnings  # of the start-up check, logged once logging runs
        self.core = Core(cfg, simulate=simulate)
        self.http: Any = None

    def _app(self) -> Any:
        from ble_exporter.documents import Documents, build_registry, status_document
        from ble_exporter.exporter import make_app

        auth = self.auth
        documents = Documents(self.core, self.started_at, auth_failures=lambda: auth.failures)

        # page.py and formatting.py at the first visit of /: Prometheus never asks for it, and their names
        # would grow CPython's table of interned strings past a doubling (bench/results.md, (7)).
        def page() -> str:
            from ble_exporter.page import front_page

            now = time.time()
            return front_page(documents.view(now), now)

        def page_headers() -> Mapping[str, str]:
            from ble_exporter.page import HEADERS

            return HEADERS

        return make_app(
            build_registry(lambda: documents.view(time.time())),
            lambda: status_document(documents.view(time.time())),
            landing=page,
            landing_headers=page_headers,
            generation=documents.generation,
            auth=auth,
        )

    async def _serve(self, cfg: Config) -> Any:
        """The HTTP server on the config's address; OSError with a one-line message when it cannot bind."""
        from ble_exporter.exporter import serve

        # "::" is every address, IPv4 included, as leaving the key out is: asyncio would bind IPv6 only.
        host = None if cfg.listen_address in ("::", "") else cfg.listen_address
        try:
            return await serve(self._app(), host, cfg.listen_port, self.web.tls if self.web else None)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                fix = f"another program uses the port (`ss -ltnp | grep {cfg.listen_port}`); change listen_port"
            elif e.errno == errno.EACCES:
                fix = f"{privileged_port()}; change listen_port"
            else:
                fix = "listen_address must be an address of this machine (`ip addr`); change listen_address"
            reason = os.strerror(e.errno) if e.errno else str(e)  # not asyncio's "error while attempting to bind"
            raise OSError(e.errno, f"cannot listen on {cfg.http_address} ({reason}); {fix} in {cfg.path}") from None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        reload = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload.set)
        cfg, core = self.cfg, self.core
        log.info("ble-exporter %s starting: %d devices, config %s", __version__, len(core.devices), cfg.path)
        for warning in self.warnings:
            log.warning("%s", warning)
        try:
            self.http = await self._serve(cfg)
        except OSError as e:
            error(str(e.strerror))
            return Exit.LISTEN
        core.start(stop)
        watchdog = loop.create_task(_ping_watchdog())
        reloads = loop.create_task(self._reload_on(reload))
        try:
            if await core.wait_started():
                gc.freeze()  # start-up's objects live forever: keep them out of the full collections
                sdnotify.notify("READY=1")
                log.info(
                    "ready: HTTP on %s, scanning on %s",
                    cfg.http_address,
                    ", ".join(f"{a} ({h.mode})" if not h.failed else f"{a} (failed)" for a, h in core.health.items()),
                )
                if signals.reload_requested():  # a SIGHUP came during start-up
                    reload.set()
            await core.cycles
        except ScanError as e:
            error(str(e))
            return Exit.BLUETOOTH
        finally:
            sdnotify.notify("STOPPING=1")
            watchdog.cancel()
            reloads.cancel()
            await core.finish()
            await self.http.close()
        return Exit.OK

    async def _reload_on(self, requested: asyncio.Event) -> None:
        while True:
            await requested.wait()
            requested.clear()
            await self.reload()

    async def reload(self) -> None:
        """Re-read the config: apply it whole, or not at all."""
        sdnotify.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        old = self.cfg
        log.info("reload: reading %s", old.path)
        try:
            cfg = load_config(old.path)
            log_changed = self.log_file_option is None and cfg.log_file != old.log_file
            found = check(cfg, simulate=self.simulate, log_file=cfg.log_file if log_changed else None).or_raise()
            web = found.web
            http = self.http
            if (cfg.listen_address, cfg.listen_port) != (old.listen_address, old.listen_port):
                try:
                    http = await self._serve(cfg)  # the new socket first: a failure keeps the old one
                except OSError as e:
                    raise ConfigError([str(e.strerror)]) from None
        except ConfigError as e:
            for problem in e.problems:
                log.error("reload rejected, running on as before: %s", problem)
            self.core.config_status.rejected(e.problems)
            sdnotify.notify(f"READY=1\nSTATUS=config reload rejected: {e.problems[0]}")
            return
        self.web = web
        self.auth.users = web.users if web else {}
        if http is not self.http:
            old_http, self.http = self.http, http
            await old_http.close()
        self.http.guard.tls = web.tls if web else None  # new connections from now on
        if self.log_file_option is None and cfg.log_file != old.log_file:
            setup_logging(cfg.log_file, self.log_level)
        self.core.reconfigure(cfg)
        self.cfg = cfg
        self.core.config_status.loaded(time.time())
        log.info("reload: config %s loaded: %s", cfg.path, config_changes(old, cfg))
        for warning in found.warnings:
            log.warning("%s", warning)
        sdnotify.notify("READY=1\nSTATUS=config reloaded")


async def _ping_watchdog() -> None:
    """WATCHDOG=1 from the event loop itself, so a blocked loop stops the pings and systemd restarts us."""
    interval = sdnotify.watchdog_interval()
    if interval is None:
        return
    while True:
        sdnotify.notify("WATCHDOG=1")
        await asyncio.sleep(interval)
