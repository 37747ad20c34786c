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
from pathlib import Path
from typing import Any

from ble_exporter import __version__, sdnotify, signals
from ble_exporter.config import Config, ConfigError, exposed_secrets, load_config, radio_problems, readable_by_others
from ble_exporter.core import Core
from ble_exporter.logger import log_file_problem, setup_logging
from ble_exporter.scanner import ScanError
from ble_exporter.webconfig import WebConfig, load_web_config

log = logging.getLogger("ble_exporter")

EXIT_OK = 0
EXIT_BLUETOOTH = 1
EXIT_CONFIG = 2
EXIT_LISTEN = 3

SERVICE_USER = "ble-exporter"  # the packaged service's user (debian/ble-exporter.sysusers)


def error(message: str) -> None:
    """A fatal error: once on stderr (for the journal and `systemctl status`) and once in the log."""
    for line in message.splitlines():
        print(f"ble-exporter: error: {line}", file=sys.stderr)
    log.error("%s", message)
    # systemctl status shows STATUS= even after the start limit hid the journal lines of earlier runs.
    sdnotify.notify(f"STATUS={message.splitlines()[0] if message else 'failed'}")


def http_address(address: str | None, port: int) -> str:
    """`*:8000`, `127.0.0.1:8000`, `[::]:8000`: as a URL writes it."""
    host = address or "*"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def unprivileged_port_start() -> int:
    """The lowest port a process without CAP_NET_BIND_SERVICE may bind (Linux: a sysctl, 1024 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def privileged_port() -> str:
    return f"ports below {unprivileged_port_start()} need privileges, which the service does not have; use e.g. 8000"


def status_document(core: Core, started: float, now: float) -> dict[str, Any]:
    """/status: the spec's four keys first, then what helps a user see why readings are missing."""
    cfg, engine = core.cfg, core.engine
    snapshot = engine.snapshot
    health = engine.health
    config = core.config_status
    return {
        "scan_interval_seconds": cfg.scan_interval_seconds,
        "scan_duration_seconds": cfg.scan_duration_seconds,
        "last_scan_timestamp": int(snapshot.ended) if snapshot.ended is not None else None,
        "devices_seen": len(snapshot.devices),
        "devices_configured": len(cfg.devices),
        "demo_devices": len(core.devices) if core.demo else 0,
        "version": __version__,
        "uptime_seconds": round(now - started, 1),
        "adapter": "simulated" if core.simulated else cfg.adapter,
        "scan_mode": health.mode,
        "scanner": {
            "up": health.up,
            "restarts": health.restarts,
            "adapter_resets": health.adapter_resets,
            "last_error": health.last_error,
            "last_error_timestamp": None if health.last_error_time is None else int(health.last_error_time),
        },
        "config": {
            "path": cfg.path,
            "last_reload_successful": config.last_reload_successful,
            "last_reload_success_timestamp": int(config.last_reload_success_time),
            "problems": list(config.problems),
        },
        "devices": [
            {
                "name": d.device.name,
                "mac": d.device.mac,
                "last_seen_timestamp": int(d.readings.last_seen or 0),
                "format": d.readings.format,
            }
            for d in snapshot.devices
        ],
    }


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
    ):
        if getattr(old, key) != getattr(new, key):
            parts.append(f"{key} {getattr(old, key)} -> {getattr(new, key)}")
    if (old.listen_address, old.listen_port) != (new.listen_address, new.listen_port):
        parts.append(
            f"HTTP {http_address(old.listen_address, old.listen_port)} -> "
            f"{http_address(new.listen_address, new.listen_port)}"
        )
    return "; ".join(parts) or "nothing changed"


class Daemon:
    """The `run` command: one Core, one HTTP server, until SIGTERM; SIGHUP reloads."""

    def __init__(
        self, cfg: Config, *, simulate: bool, log_file_option: str | None, log_level: int, web: WebConfig | None = None
    ) -> None:
        from ble_exporter.auth import BasicAuth

        self.cfg = cfg
        self.web = web
        self.auth = BasicAuth(web.users if web else {})
        self.simulate = simulate
        self.log_file_option = log_file_option  # --log-file wins over the config's log_file, reloads too
        self.log_level = log_level
        self.started_at = time.time()
        self.core = Core(cfg, simulate=simulate)
        self.http: Any = None

    def _app(self) -> Any:
        from ble_exporter.exporter import make_app
        from ble_exporter.metrics import build_registry

        core, auth = self.core, self.auth
        return make_app(
            build_registry(core.engine, core.config_status, auth_failures=lambda: auth.failures),
            lambda: status_document(core, self.started_at, time.time()),
            generation=lambda: core.engine.snapshot,
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
            address = http_address(cfg.listen_address, cfg.listen_port)
            raise OSError(e.errno, f"cannot listen on {address} ({reason}); {fix} in {cfg.path}") from None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        reload = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload.set)
        cfg, core = self.cfg, self.core
        log.info("ble-exporter %s starting: %d devices, config %s", __version__, len(core.devices), cfg.path)
        for warning in warnings(cfg, self.web):
            log.warning("%s", warning)
        try:
            self.http = await self._serve(cfg)
        except OSError as e:
            error(str(e.strerror))
            return EXIT_LISTEN
        core.start(stop)
        watchdog = loop.create_task(_ping_watchdog())
        reloads = loop.create_task(self._reload_on(reload))
        try:
            if await core.wait_started():
                gc.freeze()  # start-up's objects live forever: keep them out of the full collections
                sdnotify.notify("READY=1")
                log.info(
                    "ready: HTTP on %s, scanning on %s (%s)",
                    http_address(cfg.listen_address, cfg.listen_port),
                    cfg.adapter,
                    core.engine.health.mode,
                )
                if signals.reload_requested():  # a SIGHUP came during start-up
                    reload.set()
            await core.cycles
        except ScanError as e:
            core.engine.health.note_error(str(e), time.time())
            error(str(e))
            return EXIT_BLUETOOTH
        finally:
            sdnotify.notify("STOPPING=1")
            watchdog.cancel()
            reloads.cancel()
            await core.finish()
            await self.http.close()
        return EXIT_OK

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
            cfg = self._checked(load_config(old.path))
            web = load_web_config(cfg.web_config_file) if cfg.web_config_file else None
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
        for warning in warnings(cfg, web):
            log.warning("%s", warning)
        sdnotify.notify("READY=1\nSTATUS=config reloaded")

    def _checked(self, cfg: Config) -> Config:
        """What start-up would refuse, refused here too."""
        problems = [] if self.simulate else radio_problems(cfg)
        if self.log_file_option is None and cfg.log_file != self.cfg.log_file:
            problem = log_file_problem(cfg.log_file)
            if problem is not None:
                problems.append(f"{cfg.where('log_file')}: {problem.message}")
        if problems:
            raise ConfigError(problems)
        return cfg


def warnings(cfg: Config, web: WebConfig | None) -> list[str]:
    """Secrets that other users can read: once at start-up, at each reload and in check-config."""
    found = exposed_secrets(cfg)
    if web is not None and web.key_file and (warning := readable_by_others(web.key_file, "the TLS private key")):
        found.append(warning)
    return found


async def _ping_watchdog() -> None:
    """WATCHDOG=1 from the event loop itself, so a blocked loop stops the pings and systemd restarts us."""
    interval = sdnotify.watchdog_interval()
    if interval is None:
        return
    while True:
        sdnotify.notify("WATCHDOG=1")
        await asyncio.sleep(interval)
