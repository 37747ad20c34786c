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
from collections.abc import Awaitable, Callable, Sequence
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
# One adapter of several that failed is retried at scan starts after 1, 2, 4, 8, then every 10 scans.
RETRY_MAX_SCANS = 10


def scanned_devices(cfg: Config, simulate: bool) -> tuple[Device, ...]:
    """The configured devices; with --simulate and none configured, the simulator's demo sensors."""
    if cfg.devices or not simulate:
        return cfg.devices
    from ble_exporter.simulator import DEMO_DEVICES

    return DEMO_DEVICES


def make_scanners(
    cfg: Config,
    adapters: Sequence[str],
    devices: Sequence[Device],
    engine: ScanEngine,
    simulate: bool,
    *,
    advert_interval: float = ADVERT_INTERVAL_SECONDS,
    air: Scanner | None = None,
) -> list[Scanner]:
    """One radio per adapter: BlueZ, or simulated ones hearing the same simulated sensors (those that
    `air`, a simulated radio, hears where given) advertising every `advert_interval`."""
    if simulate:
        from ble_exporter.simulator import SimulatedScanner

        scanners: list[Scanner] = []
        for name in adapters:
            shared = air if air is not None else (scanners[0] if scanners else None)
            scanners.append(
                SimulatedScanner(
                    devices,
                    engine.ingest,
                    advert_interval=advert_interval,
                    adapter=name,
                    air_of=shared,  # type: ignore[arg-type]
                )
            )
        return scanners
    from ble_exporter.bluez import BluezScanner

    return [BluezScanner(name, cfg.scan_mode, engine.ingest, [d.mac for d in devices]) for name in adapters]


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
        self.engine = ScanEngine(self.devices, keep_unknown=keep_unknown, adapters=cfg.adapter)
        # Real sensors advertise every 2.5 s; a short scan (tests, soaks) gets faster simulated sensors
        # so that each scan still hears both of a sensor's packets.
        self._advert_interval = ADVERT_INTERVAL_SECONDS
        if not continuous:
            self._advert_interval = min(self._advert_interval, cfg.scan_duration_seconds / 3)
        self.cycle = ScanCycle(
            self.engine,
            make_scanners(cfg, cfg.adapter, self.devices, self.engine, simulate, advert_interval=self._advert_interval),
            CycleSettings.of(cfg, continuous),
        )
        self.started = asyncio.Event()  # set when the first scan has started
        self._cycles: asyncio.Task[None] | None = None

    @property
    def health(self) -> dict[str, RadioHealth]:
        """Each adapter's, in the config's order."""
        return self.cycle.health

    def start(self, stop: asyncio.Event) -> None:
        """Start scanning in the running loop until `stop` is set."""
        self._cycles = asyncio.get_running_loop().create_task(self.cycle.run(stop, started=self.started))

    def reconfigure(self, cfg: Config) -> None:
        """Follow a reloaded config from the next scan: devices (live state and counters of those that
        stay are kept), timing, watchdog; an added adapter gets a scanner, a removed one stops, and the
        others scan on (a new scan mode gives every adapter a new scanner)."""
        old, self.cfg = self.cfg, cfg
        if not self.demo:
            self.devices = cfg.devices
            self.engine.set_devices(cfg.devices)
            for radio in self.cycle.radios.values():
                radio.scanner.set_devices(cfg.devices)
        self.cycle.settings = CycleSettings.of(cfg, self.cycle.settings.continuous)
        if cfg.adapter == old.adapter and (self.simulated or cfg.scan_mode == old.scan_mode):
            return
        renewed = cfg.adapter if cfg.scan_mode != old.scan_mode and not self.simulated else ()
        added = [name for name in cfg.adapter if name not in old.adapter or name in renewed]
        air = next((radio.scanner for radio in self.cycle.radios.values()), None) if self.simulated else None
        scanners = make_scanners(
            cfg, added, self.devices, self.engine, self.simulated, advert_interval=self._advert_interval, air=air
        )
        changes: dict[str, Scanner | None] = {name: None for name in old.adapter if name not in cfg.adapter}
        changes.update((s.adapter, s) for s in scanners)
        self.cycle.change_radios(changes, cfg.adapter)

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


class ScanCycle:
    """Every `interval` seconds scan for `duration` with every adapter's radio together and publish the
    snapshot, watching each radio for silence: its scanning session is renewed after
    `silent_scans_before_restart` scans without any advert, and if that does not help, its adapter is
    power-cycled after `silent_scans_before_reset` more (rate-limited: RESET_BACKOFF_SECONDS, doubling
    while resets do not help).

    With one adapter a ScanError ends the cycle (the front end exits, systemd restarts). With several,
    an adapter that fails is set aside, logged once, and retried at scan starts after 1, 2, 4, 8 and
    then every RETRY_MAX_SCANS scans; the cycle ends only when no adapter can scan.

    The cycle is the one writer of each radio's `health`; a radio reports what it survived through its
    `on_error`, which the cycle points there."""

    def __init__(self, engine: ScanEngine, scanners: Sequence[Scanner], settings: CycleSettings) -> None:
        self.engine = engine
        self.radios: dict[str, Radio] = {s.adapter: Radio(s) for s in scanners}
        self.settings = settings
        self._changes: dict[str, Scanner | None] | None = None  # adapter -> new scanner, or None: removed

    @property
    def health(self) -> dict[str, RadioHealth]:
        """Each adapter's health, in the config's order."""
        return {name: radio.health for name, radio in self.radios.items()}

    def change_radios(self, changes: dict[str, Scanner | None], order: Sequence[str]) -> None:
        """From the next scan on: new or replaced scanners, and None for adapters removed (a reload);
        `order` is the config's. The other adapters' radios scan on undisturbed."""
        self._changes, self._order = changes, tuple(order)

    async def run(
        self, stop: asyncio.Event, *, started: asyncio.Event | None = None, on_scan: Callable[[], None] | None = None
    ) -> None:
        """Scan until `stop` is set; a ScanError that ends the cycle propagates."""
        engine = self.engine
        loop = asyncio.get_running_loop()
        next_start = loop.time()
        try:
            while not stop.is_set():
                settings = self.settings
                if self._changes is not None:
                    await self._apply_changes()
                engine.open_window(time.time())
                await self._start_radios()
                if started is not None:
                    started.set()
                for radio in self.radios.values():
                    radio.adverts_at_window_start = radio.scanner.adverts
                await self._sleep_until(stop, loop.time() + settings.duration)
                if not settings.continuous or stop.is_set():
                    for radio in self.working():
                        await self._stop(radio)
                snapshot = engine.close_window(time.time())
                log.info(
                    "scan: end, heard %d of %d devices (%s), %d adverts from any device",
                    len(snapshot.devices),
                    len(engine.devices),
                    heard_names([d.device.name for d in snapshot.devices]),
                    engine.adverts_in_window,
                )
                if engine.devices and settings.silent_scans_before_restart > 0:
                    for radio in self.working():
                        await self._guard(radio, self._watch_silence(radio, settings))
                if on_scan is not None:
                    on_scan()
                next_start += settings.interval
                if next_start < loop.time():  # a slow stop: skip missed cycles rather than scan back to back
                    next_start = loop.time() + (0 if settings.continuous else settings.interval - settings.duration)
                await self._sleep_until(stop, next_start)
        finally:
            for radio in self.radios.values():  # leave BlueZ not discovering; what got us here stays the error
                if radio.scanning:
                    radio.scanning = False
                    try:
                        await asyncio.shield(radio.scanner.stop())
                    except ScanError as e:
                        log.warning("%s", e)

    def working(self) -> list[Radio]:
        return [radio for radio in self.radios.values() if not radio.health.failed]

    async def _start_radios(self) -> None:
        """Start every radio not scanning; a failed one when its retry is due."""
        for radio in self.radios.values():
            if radio.health.failed:
                radio.retry_in -= 1
                if radio.retry_in > 0:
                    continue
            if radio.scanning:
                continue
            log.debug("scan: start on %s (%s, %s)", radio.name, radio.scanner.mode, f"{self.settings.duration:g}s")
            retry = radio.health.failed
            if await self._guard(radio, radio.scanner.start()):
                radio.scanning = True
                radio.health.mode = radio.scanner.mode
                radio.health.address = radio.scanner.address
                if retry:
                    log.info("scanner: adapter %s works again; scanning with it", radio.name)
                    radio.health.failed = False
                    radio.health.up = True
                    radio.health.silent_scans = 0
                    # Back from a failure is a radio anew: if it comes back deaf (a power-off during BlueZ's
                    # monitor registration can leave it so, systemtest/README.md), an earlier reset must
                    # not hold back the watchdog's.
                    radio.last_reset, radio.reset_backoff = None, RESET_BACKOFF_SECONDS
            elif retry:
                radio.retry_gap = min(RETRY_MAX_SCANS, radio.retry_gap * 2)
                radio.retry_in = radio.retry_gap
        if not self.working():
            self._none_works()

    async def _guard(self, radio: Radio, step: Awaitable[None]) -> bool:
        """Run a step of one radio (its start, stop, check, renewal or reset): True when it went well.
        Its ScanError, with one adapter, ends the cycle; with several it sets that radio aside until a
        retry brings it back."""
        try:
            await step
        except ScanError as e:
            radio.health.note_error(str(e), time.time())
            radio.health.up = False
            if len(self.radios) == 1:
                raise
            await self._set_aside(radio, e)
            return False
        return True

    async def _set_aside(self, radio: Radio, error: ScanError) -> None:
        if radio.scanning:
            radio.scanning = False
            with contextlib.suppress(ScanError):
                await radio.scanner.stop()
        radio.scanner.renew()
        if not radio.health.failed:
            others = ", ".join(r.name for r in self.working() if r is not radio) or "none"
            log.error("%s; scanning on with %s, retrying %s at scan starts", error, others, radio.name)
            radio.retry_gap = radio.retry_in = 1
        radio.health.failed = True

    def _none_works(self) -> None:
        failures = "; ".join(f"{r.name}: {r.health.last_error}" for r in self.radios.values())
        raise ScanError(f"no adapter can scan ({failures})")

    async def _stop(self, radio: Radio) -> None:
        if radio.scanning:
            radio.scanning = False
            await self._guard(radio, radio.scanner.stop())

    async def _sleep_until(self, stop: asyncio.Event, deadline: float) -> None:
        """Sleep until the loop time `deadline`, waking early when `stop` is set, checking the radios
        every second on the way (a radio whose check fails is set aside, or ends the cycle)."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            delay = deadline - loop.time()
            if delay <= 0:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), min(delay, CHECK_EVERY_SECONDS))
            if stop.is_set():
                return
            checked = self.working()
            for radio in checked:
                await self._guard(radio, radio.scanner.check())
            if checked and not self.working():
                self._none_works()

    async def _apply_changes(self) -> None:
        changes, self._changes = self._changes or {}, None
        for name, scanner in changes.items():
            old = self.radios.pop(name, None)
            if old is not None and old.scanning:
                old.scanning = False
                with contextlib.suppress(ScanError):
                    await old.scanner.stop()
            if scanner is not None:
                self.radios[name] = Radio(scanner)
                log.info("scanner: now scanning with %s", name)
            elif old is not None:
                log.info("scanner: no longer scanning with %s", name)
        self.radios = {name: self.radios[name] for name in self._order if name in self.radios}
        self.engine.set_adapters(self.radios)

    async def _watch_silence(self, radio: Radio, settings: CycleSettings) -> None:
        """Count the radio's scans that heard nothing: renew its session at the first limit, reset its
        adapter at the second (when the rate limit allows)."""
        health = radio.health
        if radio.scanner.adverts != radio.adverts_at_window_start:
            radio.last_heard = time.time()
            if not health.up:
                log.info("scanner: adverts are arriving again on %s", radio.name)
            health.silent_scans = 0
            health.up = True
            radio.reset_backoff = RESET_BACKOFF_SECONDS
            return
        health.silent_scans += 1
        restart_at = settings.silent_scans_before_restart
        reset_at = restart_at + settings.silent_scans_before_reset
        if health.silent_scans == restart_at:
            await self._renew(radio, restart_at)
        elif settings.silent_scans_before_reset > 0 and health.silent_scans == reset_at:
            await self._reset(radio, reset_at)
        elif health.silent_scans > reset_at and (health.silent_scans - reset_at) % restart_at == 0:
            await self._renew(radio, health.silent_scans)  # still silent: keep renewing, and resetting when allowed
            if settings.silent_scans_before_reset > 0:
                await self._reset(radio, health.silent_scans)

    async def _renew(self, radio: Radio, silent: int) -> None:
        health, scanner = radio.health, radio.scanner
        health.up = False
        health.restarts += 1
        message = (
            f"scanner: no advert at all in {silent} scans on {radio.name} "
            f"({scanner.mode} mode, last advert {_when(radio.last_heard)}); restarting the scanner"
        )
        log.warning("%s", message)
        health.note_error(message, time.time())
        if radio.scanning:
            await scanner.stop()
        scanner.renew()
        if radio.scanning:
            await scanner.start()

    async def _reset(self, radio: Radio, silent: int) -> None:
        """Power-cycle the adapter; a radio that comes back powered off is the usual fatal fault."""
        health, scanner = radio.health, radio.scanner
        now = time.time()
        if radio.last_reset is not None and now - radio.last_reset < radio.reset_backoff:
            wait = radio.reset_backoff - (now - radio.last_reset)
            log.info(
                "scanner: %s still silent after %d scans; the next adapter reset is allowed in %.0f min",
                radio.name,
                silent,
                wait / 60,
            )
            return
        message = (
            f"scanner: no advert at all in {silent} scans on {radio.name}, and renewing the scanning session did "
            f"not help (last advert {_when(radio.last_heard)}); resetting the adapter (power off and on "
            "through BlueZ)"
        )
        log.warning("%s", message)
        health.note_error(message, now)
        if radio.scanning:
            await scanner.stop()
            radio.scanning = False
        await scanner.reset()  # raises ScanError when the adapter does not come back on
        health.resets += 1
        if radio.last_reset is not None:
            radio.reset_backoff = min(RESET_BACKOFF_MAX_SECONDS, radio.reset_backoff * 2)
        radio.last_reset = now
        log.info("scanner: adapter %s reset; scanning again", radio.name)
        await scanner.start()
        radio.scanning = True


class Radio:
    """One adapter's scanner and what the cycle keeps of it: its health, whether it scans, its resets'
    rate limit, and, while it is set aside (health.failed; why: health.last_error), when it is retried."""

    def __init__(self, scanner: Scanner) -> None:
        self.name = scanner.adapter
        self.scanner = scanner
        self.health = RadioHealth()
        self.scanning = False
        self.retry_gap = 0  # scans between retries, doubling up to RETRY_MAX_SCANS
        self.retry_in = 0  # scan starts until the next retry
        self.adverts_at_window_start = 0
        # The end of the latest scan in which it heard an advert: the log's "last advert", to a scan's length.
        self.last_heard: float | None = None
        self.reset_backoff = RESET_BACKOFF_SECONDS
        self.last_reset: float | None = None
        health = self.health

        def on_error(message: str) -> None:
            health.note_error(message, time.time())

        scanner.on_error = on_error


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "never"
