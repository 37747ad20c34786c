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
import logging
import os
import sys
from collections.abc import Callable, Sequence

from ble_exporter import __version__, sdnotify, signals
from ble_exporter.config import DEFAULT_PATH, ConfigError, load_config, radio_problems
from ble_exporter.daemon import Daemon
from ble_exporter.exits import Exit
from ble_exporter.logger import LogFileError, setup_logging
from ble_exporter.startup import SERVICE_USER, check

log = logging.getLogger("ble_exporter")


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
        return Exit.CONFIG
    except KeyboardInterrupt:
        return Exit.OK


def _log_path(text: str) -> str:
    """--log-file: a path typed on the command line is taken relative to the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a file path")
    if text.startswith("~"):
        raise argparse.ArgumentTypeError(f"{text} starts with ~, which is not expanded when quoted; give the path")
    return os.path.abspath(text)


def cmd_check_config(args: argparse.Namespace) -> int:
    """What `run` checks at start-up (the same check), for the service: also the port an unprivileged
    service can bind, and the files it opens as the service's user where possible. Problems and warnings
    go to stderr, the summary to stdout."""
    cfg = load_config(args.config)
    found = check(cfg, log_file=cfg.log_file, for_service=True)
    for warning in found.warnings:
        print(f"ble-exporter: warning: {warning}", file=sys.stderr)
    found.or_raise()
    web = found.web
    keys = sum(d.bindkey is not None for d in cfg.devices)
    scheme = "HTTPS" if web and web.tls else "HTTP"
    users = f" with basic auth ({len(web.users)} users)" if web and web.users else ""
    print(
        f"{cfg.path}: OK: {len(cfg.devices)} devices ({keys} with bindkey), scan {cfg.scan_duration_seconds:g} s "
        f"every {cfg.scan_interval_seconds:g} s on {cfg.adapters_shown} ({cfg.scan_mode}), "
        f"{scheme} on {cfg.http_address}{users}, log {cfg.log_file}"
    )
    checked = "the log file" + (" and the web config's files" if web else "")
    if found.checked_as == SERVICE_USER:
        print(f"{checked} checked as user {SERVICE_USER}, the service's user")
    else:
        print(
            f"{checked} checked as user {found.checked_as}; the service uses them as {SERVICE_USER} (sudo checks as it)"
        )
    for device in cfg.devices:
        if device.calibration is not None:
            print(f"calibrated: {device.name} ({device.calibration.describe()})")
    for note in found.notes:
        print(f"note: {note}")
    return Exit.OK


def cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
        log_file = args.log_file or cfg.log_file
        where = "--log-file" if args.log_file else cfg.where("log_file")
        found = check(cfg, simulate=args.simulate, log_file=log_file, log_where=where).or_raise()
        level = getattr(logging, args.log_level.upper())
        try:
            setup_logging(log_file, level)
        except LogFileError as e:
            raise ConfigError([f"{where}: {e}; choose a writable path or create the directory"]) from None
        if not cfg.devices:
            log.warning(
                "no devices in %s: add your thermometers under `devices:` (find them with `ble-exporter watch --all`)",
                cfg.path,
            )
        daemon = Daemon(
            cfg,
            simulate=args.simulate,
            log_file_option=args.log_file,
            log_level=level,
            web=found.web,
            warnings=found.warnings,
        )
        status = asyncio.run(daemon.run())
    except signals.Stopped:  # SIGTERM or SIGINT before the event loop took them over
        sdnotify.notify("STOPPING=1")
        status = Exit.OK
    finally:
        signals.take_over(hup_reloads=True)  # the loop gave the signals back to their defaults
    if status == Exit.OK:
        log.info("stopped")
    return status


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
