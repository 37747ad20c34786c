"""The headless core both front ends start: the engine, a scanner (BlueZ or simulated) and the scan
cycle that drives them, with its silent-scan watchdog.

`Core` is the one place that wires them, so `run` (HTTP) and `watch` (terminal) scan identically;
each adds only its own front end. A ScanError leaves the cycle: the front end decides to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from ble_exporter.config import Config
from ble_exporter.devices import Device
from ble_exporter.engine import ScanEngine
from ble_exporter.scanner import ScanError, Scanner

log = logging.getLogger("ble_exporter.scanner")  # the name the log lines have always carried

CHECK_EVERY_SECONDS = 1.0
NAMES_LOGGED = 10  # a scan's log line names this many devices heard, then counts the rest
# The firmware's default advertising interval, which the simulated sensors copy.
ADVERT_INTERVAL_SECONDS = 2.5


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

    def on_error(message: str) -> None:
        engine.health.note_error(message, time.time())

    return BluezScanner(cfg.adapter, cfg.scan_mode, engine.ingest, [d.mac for d in devices], on_error)


class Core:
    """The engine, its scanner and (once started) the scan cycle task.

    `continuous` (the watch view) keeps the radio on and only rotates the windows, so readings
    arrive per advert; `keep_unknown` tracks sensors that are not in the config (watch --all).
    """

    def __init__(self, cfg: Config, *, simulate: bool, continuous: bool = False, keep_unknown: bool = False) -> None:
        self.cfg = cfg
        self.simulated = simulate
        self.continuous = continuous
        self.devices = scanned_devices(cfg, simulate)
        self.demo = self.devices is not cfg.devices  # simulated demo sensors stand in for a config with none
        self.engine = ScanEngine(self.devices, keep_unknown=keep_unknown)
        # Real sensors advertise every 2.5 s; a short scan (tests, soaks) gets faster simulated sensors
        # so that each scan still hears both of a sensor's packets.
        interval = ADVERT_INTERVAL_SECONDS
        if not continuous:
            interval = min(interval, cfg.scan_duration_seconds / 3)
        self.scanner = make_scanner(cfg, self.devices, self.engine, simulate, advert_interval=interval)
        self.started = asyncio.Event()  # set when the first scan has started
        self._cycles: asyncio.Task[None] | None = None

    def start(self, stop: asyncio.Event) -> None:
        """Start scanning in the running loop until `stop` is set."""
        cfg = self.cfg
        self._cycles = asyncio.get_running_loop().create_task(
            run_cycles(
                self.engine,
                self.scanner,
                cfg.scan_interval_seconds,
                cfg.scan_duration_seconds,
                stop,
                continuous=self.continuous,
                silent_scans_before_restart=cfg.watchdog_silent_scans,
                started=self.started,
            )
        )

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


async def _watch_silence(engine: ScanEngine, scanner: Scanner, scanning: bool, limit: int) -> None:
    """Count scans that heard nothing; renew the scanning session at the limit."""
    health = engine.health
    if engine.adverts_in_window:
        if not health.up:
            log.info("scanner: adverts are arriving again")
        health.silent_scans = 0
        health.up = True
        return
    health.silent_scans += 1
    if health.silent_scans < limit:
        return
    health.up = False
    health.restarts += 1
    health.silent_scans = 0
    last = engine.last_advert
    heard = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last)) if last else "never"
    message = (
        f"scanner: no advert at all in {limit} scans on {getattr(scanner, 'adapter', '-')} "
        f"({scanner.mode} mode, last advert {heard}); restarting the scanner"
    )
    log.warning("%s", message)
    health.note_error(message, time.time())
    if scanning:
        await scanner.stop()
    scanner.renew()
    if scanning:
        await scanner.start()


async def run_cycles(
    engine: ScanEngine,
    scanner: Scanner,
    interval: float,
    duration: float,
    stop: asyncio.Event,
    *,
    continuous: bool = False,
    silent_scans_before_restart: int = 0,
    started: asyncio.Event | None = None,
    on_scan: Callable[[], None] | None = None,
) -> None:
    """Every `interval` seconds scan for `duration` and publish the snapshot; runs until `stop` is set.

    With `continuous` the radio stays on and only the windows rotate. A ScanError propagates.
    """
    loop = asyncio.get_running_loop()
    next_start = loop.time()
    scanning = False
    try:
        while not stop.is_set():
            engine.open_window(time.time())
            if not scanning:
                log.debug("scan: start (%s, %s)", scanner.mode, f"{duration:g}s")
                await scanner.start()
                scanning = True
                engine.health.mode = scanner.mode
                if started is not None:
                    started.set()
            await _sleep_until(stop, loop.time() + duration, scanner)
            if not continuous or stop.is_set():
                await scanner.stop()
                scanning = False
            snapshot = engine.close_window(time.time())
            log.info(
                "scan: end, heard %d of %d devices (%s), %d adverts from any device",
                len(snapshot.devices),
                len(engine.devices),
                heard_names([d.device.name for d in snapshot.devices]),
                engine.adverts_in_window,
            )
            if engine.devices and silent_scans_before_restart > 0:
                await _watch_silence(engine, scanner, scanning, silent_scans_before_restart)
            if on_scan is not None:
                on_scan()
            next_start += interval
            if next_start < loop.time():  # a slow stop: skip missed cycles rather than scan back to back
                next_start = loop.time() + (0 if continuous else interval - duration)
            await _sleep_until(stop, next_start, scanner)
    finally:
        if scanning:  # leave BlueZ not discovering; a failure here must not hide the one that got us here
            try:
                await asyncio.shield(scanner.stop())
            except ScanError as e:
                log.warning("%s", e)
