"""The headless core both front ends start: the engine, a scanner (BlueZ or simulated) and the scan
cycle that drives them, with its silent-scan watchdog and adapter recovery.

`Core` is the one place that wires them, so `run` (HTTP) and `watch` (terminal) scan identically;
each adds only its own front end. A ScanError leaves the cycle: the front end decides to exit. A
reload (`Core.reconfigure`) takes effect from the next scan: the cycle reads its settings, and picks
up a new scanner, at each scan's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ble_exporter.config import Config
from ble_exporter.devices import Device
from ble_exporter.engine import ScanEngine
from ble_exporter.health import RadioHealth
from ble_exporter.scanner import ScanError, Scanner

log = logging.getLogger("ble_exporter.scanner")  # the name the log lines have always carried

CHECK_EVERY_SECONDS = 1.0
NAMES_LOGGED = 10  # a scan's log line names this many devices heard, then counts the rest
# The firmware's default advertising interval, which the simulated sensors copy.
ADVERT_INTERVAL_SECONDS = 2.5
# Adapter resets: at most one per RESET_BACKOFF_SECONDS, doubling after each reset that brought no advert
# back, up to RESET_BACKOFF_MAX_SECONDS: a radio that stays deaf is power-cycled a few times an hour at
# first, then four times a day, rather than every few scans for ever.
RESET_BACKOFF_SECONDS = 600.0
RESET_BACKOFF_MAX_SECONDS = 6 * 3600.0


def scanned_devices(cfg: Config, simulate: bool) -> tuple[Device, ...]:
    """The configured devices; with --simulate and none configured, the simulator's demo sensors."""
    if cfg.devices or not simulate:
        return cfg.devices
    from ble_exporter.simulator import DEMO_DEVICES

    return DEMO_DEVICES


def make_scanner(
    cfg: Config,
    devices: Sequence[Device],
    engine: ScanEngine,
    simulate: bool,
    advert_interval: float = ADVERT_INTERVAL_SECONDS,
) -> Scanner:
    """The radio: BlueZ, or simulated sensors advertising every `advert_interval`."""
    if simulate:
        from ble_exporter.simulator import SimulatedScanner

        return SimulatedScanner(devices, engine.ingest, advert_interval=advert_interval)
    from ble_exporter.bluez import BluezScanner

    return BluezScanner(cfg.adapter, cfg.scan_mode, engine.ingest, [d.mac for d in devices])


@dataclass(frozen=True)
class CycleSettings:
    """What the scan cycle reads at the start of each scan (so a reload takes effect from the next)."""

    interval: float
    duration: float
    silent_scans_before_restart: int = 0  # renew the scanning session after this many silent scans; 0: never
    silent_scans_before_reset: int = 0  # then power-cycle the adapter after this many more; 0: never
    continuous: bool = False  # the radio stays on and only the windows rotate (the watch view)

    @classmethod
    def of(cls, cfg: Config, continuous: bool = False) -> CycleSettings:
        return cls(
            cfg.scan_interval_seconds,
            cfg.scan_duration_seconds,
            cfg.watchdog_silent_scans,
            cfg.adapter_reset_after_silent_scans,
            continuous,
        )


@dataclass
class ConfigStatus:
    """The config the process runs on, as /metrics and /status tell it (the names Prometheus uses)."""

    last_reload_successful: bool = True
    last_reload_success_time: float = 0.0  # the start counts as a load
    problems: tuple[str, ...] = ()  # of the latest reload that was rejected

    def loaded(self, now: float) -> None:
        self.last_reload_successful, self.last_reload_success_time, self.problems = True, now, ()

    def rejected(self, problems: Sequence[str]) -> None:
        self.last_reload_successful, self.problems = False, tuple(problems)


class Core:
    """The engine, its scanner and (once started) the scan cycle task.

    `continuous` (the watch view) keeps the radio on and only rotates the windows, so readings
    arrive per advert; `keep_unknown` tracks sensors that are not in the config (watch --all).
    """

    def __init__(self, cfg: Config, *, simulate: bool, continuous: bool = False, keep_unknown: bool = False) -> None:
        self.cfg = cfg
        self.config_status = ConfigStatus(last_reload_success_time=time.time())
        self.simulated = simulate
        self.devices = scanned_devices(cfg, simulate)
        self.demo = self.devices is not cfg.devices  # simulated demo sensors stand in for a config with none
        self.engine = ScanEngine(self.devices, keep_unknown=keep_unknown)
        # Real sensors advertise every 2.5 s; a short scan (tests, soaks) gets faster simulated sensors
        # so that each scan still hears both of a sensor's packets.
        interval = ADVERT_INTERVAL_SECONDS
        if not continuous:
            interval = min(interval, cfg.scan_duration_seconds / 3)
        self.cycle = ScanCycle(
            self.engine,
            make_scanner(cfg, self.devices, self.engine, simulate, interval),
            CycleSettings.of(cfg, continuous),
        )
        self.started = asyncio.Event()  # set when the first scan has started
        self._cycles: asyncio.Task[None] | None = None

    @property
    def scanner(self) -> Scanner:
        return self.cycle.scanner

    @property
    def health(self) -> RadioHealth:
        return self.cycle.health

    def start(self, stop: asyncio.Event) -> None:
        """Start scanning in the running loop until `stop` is set."""
        self._cycles = asyncio.get_running_loop().create_task(self.cycle.run(stop, started=self.started))

    def reconfigure(self, cfg: Config) -> None:
        """Follow a reloaded config from the next scan: devices (live state and counters of those that
        stay are kept), timing, watchdog; a new adapter or scan mode gets a new scanner."""
        old, self.cfg = self.cfg, cfg
        if not self.demo:
            self.devices = cfg.devices
            self.engine.set_devices(cfg.devices)
            self.cycle.scanner.set_devices(cfg.devices)
        self.cycle.settings = CycleSettings.of(cfg, self.cycle.settings.continuous)
        if not self.simulated and (cfg.adapter, cfg.scan_mode) != (old.adapter, old.scan_mode):
            self.cycle.replace_scanner(make_scanner(cfg, self.devices, self.engine, simulate=False))

    @property
    def cycles(self) -> asyncio.Task[None]:
        if self._cycles is None:
            raise RuntimeError("Core.start() was not called")
        return self._cycles

    async def wait_started(self, timeout: float | None = None) -> bool:
        """Wait until the first scan has started (True) or `timeout` passed (False); the ScanError of a
        scanner that could not start propagates, and so does a cycle that ended (stop set) first."""
        waiting = asyncio.get_running_loop().create_task(self.started.wait())
        try:
            await asyncio.wait([self.cycles, waiting], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        if self.cycles.done() and not self.started.is_set():
            await self.cycles
        return self.started.is_set()

    async def finish(self) -> None:
        """Wait for the cycle to end (after `stop`), cancelling it if it must; the scanner is stopped."""
        cycles = self._cycles
        if cycles is None:
            return
        if not cycles.done():
            cycles.cancel()
        with contextlib.suppress(asyncio.CancelledError, ScanError):
            await cycles


def heard_names(names: Sequence[str], limit: int = NAMES_LOGGED) -> str:
    """`a, b, c`; beyond `limit` names, `a, b, +1616 more`: a scan's log line stays short with 2,000 sensors."""
    if not names:
        return "none"
    more = f", +{len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


async def _sleep_until(stop: asyncio.Event, deadline: float, scanner: Scanner | None = None) -> None:
    """Sleep until the loop time `deadline`, waking early when `stop` is set, checking the scanner
    every second on the way (its ScanError propagates)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        delay = deadline - loop.time()
        if delay <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), min(delay, CHECK_EVERY_SECONDS))
        if scanner is not None and not stop.is_set():
            await scanner.check()


class ScanCycle:
    """Every `interval` seconds scan for `duration` and publish the snapshot, watching for a radio that
    has gone silent: the scanning session is renewed after `silent_scans_before_restart` scans without
    any advert, and if that does not help, the adapter is power-cycled after `silent_scans_before_reset`
    more (rate-limited: RESET_BACKOFF_SECONDS, doubling while resets do not help).

    The cycle is the one writer of the radio's `health`; the radio reports what it survived through its
    `on_error`, which the cycle points there."""

    def __init__(self, engine: ScanEngine, scanner: Scanner, settings: CycleSettings) -> None:
        self.engine = engine
        self.health = RadioHealth()
        self.scanner = self._adopt(scanner)
        self.settings = settings
        self._replacement: Scanner | None = None
        self._scanning = False
        self._reset_backoff = RESET_BACKOFF_SECONDS
        self._last_reset: float | None = None

    def _adopt(self, scanner: Scanner) -> Scanner:
        health = self.health

        def on_error(message: str) -> None:
            health.note_error(message, time.time())

        scanner.on_error = on_error
        return scanner

    def replace_scanner(self, scanner: Scanner) -> None:
        """Use `scanner` from the next scan on (a reload changed the adapter or the scan mode)."""
        self._replacement = scanner

    async def run(
        self, stop: asyncio.Event, *, started: asyncio.Event | None = None, on_scan: Callable[[], None] | None = None
    ) -> None:
        """Scan until `stop` is set; a ScanError propagates, recorded as the radio's last error."""
        try:
            await self._run(stop, started, on_scan)
        except ScanError as e:
            self.health.note_error(str(e), time.time())
            raise

    async def _run(
        self, stop: asyncio.Event, started: asyncio.Event | None, on_scan: Callable[[], None] | None
    ) -> None:
        engine = self.engine
        loop = asyncio.get_running_loop()
        next_start = loop.time()
        try:
            while not stop.is_set():
                settings = self.settings
                if self._replacement is not None:
                    await self._swap_scanner()
                engine.open_window(time.time())
                if not self._scanning:
                    log.debug("scan: start (%s, %s)", self.scanner.mode, f"{settings.duration:g}s")
                    await self.scanner.start()
                    self._scanning = True
                    self.health.mode = self.scanner.mode
                    if started is not None:
                        started.set()
                await _sleep_until(stop, loop.time() + settings.duration, self.scanner)
                if not settings.continuous or stop.is_set():
                    await self.scanner.stop()
                    self._scanning = False
                snapshot = engine.close_window(time.time())
                log.info(
                    "scan: end, heard %d of %d devices (%s), %d adverts from any device",
                    len(snapshot.devices),
                    len(engine.devices),
                    heard_names([d.device.name for d in snapshot.devices]),
                    engine.adverts_in_window,
                )
                if engine.devices and settings.silent_scans_before_restart > 0:
                    await self._watch_silence(settings)
                if on_scan is not None:
                    on_scan()
                next_start += settings.interval
                if next_start < loop.time():  # a slow stop: skip missed cycles rather than scan back to back
                    next_start = loop.time() + (0 if settings.continuous else settings.interval - settings.duration)
                await _sleep_until(stop, next_start, self.scanner)
        finally:
            if self._scanning:  # leave BlueZ not discovering; a failure here must not hide the one that got us here
                self._scanning = False
                try:
                    await asyncio.shield(self.scanner.stop())
                except ScanError as e:
                    log.warning("%s", e)

    async def _swap_scanner(self) -> None:
        if self._scanning:
            await self.scanner.stop()
            self._scanning = False
        assert self._replacement is not None
        self.scanner, self._replacement = self._adopt(self._replacement), None
        log.info("scanner: now scanning with %s", getattr(self.scanner, "adapter", "the new scanner"))

    async def _watch_silence(self, settings: CycleSettings) -> None:
        """Count scans that heard nothing: renew the session at the first limit, reset the adapter at
        the second (when the rate limit allows)."""
        engine = self.engine
        health = self.health
        if engine.adverts_in_window:
            if not health.up:
                log.info("scanner: adverts are arriving again")
            health.silent_scans = 0
            health.up = True
            self._reset_backoff = RESET_BACKOFF_SECONDS
            return
        health.silent_scans += 1
        restart_at = settings.silent_scans_before_restart
        reset_at = restart_at + settings.silent_scans_before_reset
        if health.silent_scans == restart_at:
            await self._renew(restart_at)
        elif settings.silent_scans_before_reset > 0 and health.silent_scans == reset_at:
            await self._reset(reset_at)
        elif health.silent_scans > reset_at and (health.silent_scans - reset_at) % restart_at == 0:
            await self._renew(health.silent_scans)  # still silent: keep renewing, and resetting when allowed
            if settings.silent_scans_before_reset > 0:
                await self._reset(health.silent_scans)

    def _last_heard(self) -> str:
        last = self.engine.last_advert
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last)) if last else "never"

    async def _renew(self, silent: int) -> None:
        health = self.health
        health.up = False
        health.restarts += 1
        message = (
            f"scanner: no advert at all in {silent} scans on {getattr(self.scanner, 'adapter', '-')} "
            f"({self.scanner.mode} mode, last advert {self._last_heard()}); restarting the scanner"
        )
        log.warning("%s", message)
        health.note_error(message, time.time())
        if self._scanning:
            await self.scanner.stop()
        self.scanner.renew()
        if self._scanning:
            await self.scanner.start()

    async def _reset(self, silent: int) -> None:
        """Power-cycle the adapter; a radio that comes back powered off is the usual fatal fault."""
        health = self.health
        now = time.time()
        adapter = getattr(self.scanner, "adapter", "-")
        if self._last_reset is not None and now - self._last_reset < self._reset_backoff:
            wait = self._reset_backoff - (now - self._last_reset)
            log.info(
                "scanner: still silent after %d scans; the next adapter reset is allowed in %.0f min", silent, wait / 60
            )
            return
        message = (
            f"scanner: no advert at all in {silent} scans on {adapter}, and renewing the scanning session did not "
            f"help (last advert {self._last_heard()}); resetting the adapter (power off and on through BlueZ)"
        )
        log.warning("%s", message)
        health.note_error(message, now)
        if self._scanning:
            await self.scanner.stop()
            self._scanning = False
        await self.scanner.reset()  # raises ScanError when the adapter does not come back on
        health.resets += 1
        if self._last_reset is not None:
            self._reset_backoff = min(RESET_BACKOFF_MAX_SECONDS, self._reset_backoff * 2)
        self._last_reset = now
        log.info("scanner: adapter %s reset; scanning again", adapter)
        await self.scanner.start()
        self._scanning = True
