"""Command line: `run` (the exporter), `watch` (the terminal view), `check-config`.

Exit statuses (also in the README and the man page):
  0  clean stop on SIGTERM/SIGINT (or `check-config` found no problem)
  1  Bluetooth failure: no adapter, a scan that failed to start or stop, BlueZ or the adapter gone
  2  config or usage error
  3  the HTTP address cannot be bound
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import json
import logging
import os
import pwd
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ble_exporter import __version__, sdnotify
from ble_exporter.config import DEFAULT_PATH, Config, ConfigError, load_config, radio_problems
from ble_exporter.core import Core
from ble_exporter.logger import LogFileError, LogFileProblem, log_file_problem, setup_logging
from ble_exporter.scanner import ScanError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ble-exporter",
        description="Export BLE thermometer readings (pvvx/atc1441 firmware) to Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", default=DEFAULT_PATH, metavar="PATH", help=f"config file (default {DEFAULT_PATH})")
        return sub

    run = command("run", "run the exporter: scan and serve /metrics")
    run.add_argument("--simulate", action="store_true", help="simulated sensors instead of the Bluetooth adapter")
    run.add_argument("--log-file", metavar="PATH", type=_log_path, help="log here instead of the config's log_file")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    watch = command("watch", "show live readings in the terminal")
    watch.add_argument("--simulate", action="store_true", help="simulated sensors instead of the Bluetooth adapter")
    watch.add_argument("--all", action="store_true", help="also list sensors in range that are not in the config")
    command("check-config", "validate the config file and print a summary")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        for problem in e.problems:
            print(f"ble-exporter: error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK


def _log_path(text: str) -> str:
    """--log-file: a path typed on the command line is taken relative to the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a file path")
    if text.startswith("~"):
        raise argparse.ArgumentTypeError(f"{text} starts with ~, which is not expanded when quoted; give the path")
    return os.path.abspath(text)


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


def _privileged_port() -> str:
    return f"ports below {unprivileged_port_start()} need privileges, which the service does not have; use e.g. 8000"


def cmd_check_config(args: argparse.Namespace) -> int:
    """What `run` checks at start-up, for the service: the config, the scan timing a real adapter needs,
    the port an unprivileged service can bind, and the log file, as the service's user where possible."""
    cfg = load_config(args.config)
    problems = radio_problems(cfg)
    if cfg.listen_port < unprivileged_port_start():
        problems.append(f"{cfg.where('listen_port')}: listen_port {cfg.listen_port}: {_privileged_port()}")
    who, log_problem = _log_problem_as_service_user(cfg.log_file)
    note = ""
    if log_problem is not None:
        if log_problem.permission and who != SERVICE_USER:
            note = f"note: as user {who}: {log_problem.message}"
        else:
            problems.append(f"{cfg.where('log_file')}: {log_problem.message}")
    if problems:
        raise ConfigError(problems)
    keys = sum(d.bindkey is not None for d in cfg.devices)
    print(
        f"{cfg.path}: OK: {len(cfg.devices)} devices ({keys} with bindkey), scan {cfg.scan_duration_seconds:g} s "
        f"every {cfg.scan_interval_seconds:g} s on {cfg.adapter} ({cfg.scan_mode}), "
        f"HTTP on {http_address(cfg.listen_address, cfg.listen_port)}, log {cfg.log_file}"
    )
    if who == SERVICE_USER:
        print(f"the log file was checked as user {SERVICE_USER}, the service's user")
    else:
        print(f"the log file was checked as user {who}; the service writes it as {SERVICE_USER} (sudo checks as it)")
    if note:
        print(note)
    return EXIT_OK


def _log_problem_as_service_user(path: str) -> tuple[str, LogFileProblem | None]:
    """(who checked, what opening the log file would run into): as the service's user when we are root
    and that user exists (a child process that drops to it), else as whoever runs this."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    try:
        service = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        service = None
    if os.geteuid() != 0 or service is None:
        return me, log_file_problem(path)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the service's user, check, report, exit
        try:
            os.close(read_end)
            os.setgroups(os.getgrouplist(service.pw_name, service.pw_gid))
            os.setgid(service.pw_gid)
            os.setuid(service.pw_uid)
            problem = log_file_problem(path)
            os.write(write_end, json.dumps(None if problem is None else [problem.message, problem.permission]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as report:
        found = json.loads(report.read() or b"null")
    os.waitpid(pid, 0)
    return SERVICE_USER, None if found is None else LogFileProblem(found[0], found[1])


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if not args.simulate and (problems := radio_problems(cfg)):
        raise ConfigError(problems)
    log_file = args.log_file or cfg.log_file
    where = "--log-file" if args.log_file else cfg.where("log_file")
    problem = log_file_problem(log_file)
    if problem is not None:
        raise ConfigError([f"{where}: {problem.message}"])
    try:
        setup_logging(log_file, getattr(logging, args.log_level.upper()))
    except LogFileError as e:
        raise ConfigError([f"{where}: {e}; choose a writable path or create the directory"]) from None
    if not cfg.devices:
        log.warning(
            "no devices in %s: add your thermometers under `devices:` (find them with `ble-exporter watch --all`)",
            cfg.path,
        )
    return asyncio.run(_run(cfg, args.simulate))


def cmd_watch(args: argparse.Namespace) -> int:
    from ble_exporter.watch import run_watch

    cfg = load_config(args.config)
    if not args.simulate and (problems := radio_problems(cfg)):
        raise ConfigError(problems)
    return run_watch(cfg, simulate=args.simulate, show_all=args.all)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "watch": cmd_watch,
    "check-config": cmd_check_config,
}


def status_document(core: Core, started: float, now: float) -> dict[str, Any]:
    """/status: the spec's four keys first, then what helps a user see why readings are missing."""
    cfg, engine = core.cfg, core.engine
    snapshot = engine.snapshot
    health = engine.health
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
            "last_error": health.last_error,
            "last_error_timestamp": None if health.last_error_time is None else int(health.last_error_time),
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


async def _run(cfg: Config, simulate: bool) -> int:
    from ble_exporter.exporter import make_app, serve
    from ble_exporter.metrics import build_registry

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started_at = time.time()
    core = Core(cfg, simulate=simulate)
    engine = core.engine
    log.info("ble-exporter %s starting: %d devices, config %s", __version__, len(core.devices), cfg.path)
    app = make_app(
        build_registry(engine),
        lambda: status_document(core, started_at, time.time()),
        generation=lambda: engine.snapshot,
    )
    address = http_address(cfg.listen_address, cfg.listen_port)
    # "::" is every address, IPv4 included, as leaving the key out is: asyncio would bind IPv6 only.
    host = None if cfg.listen_address in ("::", "") else cfg.listen_address
    try:
        http = await serve(app, host, cfg.listen_port)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            fix = f"another program uses the port (`ss -ltnp | grep {cfg.listen_port}`); change listen_port"
        elif e.errno == errno.EACCES:
            fix = f"{_privileged_port()}; change listen_port"
        else:
            fix = "listen_address must be an address of this machine (`ip addr`); change listen_address"
        reason = os.strerror(e.errno) if e.errno else str(e)  # not asyncio's "error while attempting to bind ..."
        error(f"cannot listen on {address} ({reason}); {fix} in {cfg.path}")
        return EXIT_LISTEN
    core.start(stop)
    watchdog = loop.create_task(_ping_watchdog())
    try:
        if await core.wait_started():
            gc.freeze()  # start-up's objects live forever: keep them out of the full collections
            sdnotify.notify("READY=1")
            log.info("ready: HTTP on %s, scanning on %s (%s)", address, cfg.adapter, engine.health.mode)
        await core.cycles
    except ScanError as e:
        engine.health.note_error(str(e), time.time())
        error(str(e))
        return EXIT_BLUETOOTH
    finally:
        sdnotify.notify("STOPPING=1")
        watchdog.cancel()
        await core.finish()
        await http.close()
    log.info("stopped")
    return EXIT_OK


async def _ping_watchdog() -> None:
    """WATCHDOG=1 from the event loop itself, so a blocked loop stops the pings and systemd restarts us."""
    interval = sdnotify.watchdog_interval()
    if interval is None:
        return
    while True:
        sdnotify.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
