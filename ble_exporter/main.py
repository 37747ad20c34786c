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
import json
import logging
import os
import pwd
import sys
from collections.abc import Callable, Sequence

from ble_exporter import __version__, sdnotify, signals
from ble_exporter.config import DEFAULT_PATH, Config, ConfigError, load_config, radio_problems
from ble_exporter.daemon import (
    EXIT_CONFIG,
    EXIT_OK,
    SERVICE_USER,
    Daemon,
    http_address,
    privileged_port,
    unprivileged_port_start,
    warnings,
)
from ble_exporter.logger import LogFileError, log_file_problem, setup_logging
from ble_exporter.webconfig import load_web_config

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


def cmd_check_config(args: argparse.Namespace) -> int:
    """What `run` checks at start-up, for the service: the config, the scan timing a real adapter needs,
    the port an unprivileged service can bind, the web config, and the files the service must read or
    write, as the service's user where possible."""
    cfg = load_config(args.config)
    problems = radio_problems(cfg)
    if cfg.listen_port < unprivileged_port_start():
        problems.append(f"{cfg.where('listen_port')}: listen_port {cfg.listen_port}: {privileged_port()}")
    web = None
    notes = []
    if cfg.web_config_file:
        try:
            web = load_web_config(cfg.web_config_file)
        except ConfigError as e:
            problems += e.problems
    who, found = _as_service_user(lambda: _service_file_problems(cfg))
    for where, message, permission in found:
        if permission and who != SERVICE_USER:
            notes.append(f"note: as user {who}: {message}")
        else:
            problems.append(f"{where}: {message}")
    if problems:
        raise ConfigError(problems)
    keys = sum(d.bindkey is not None for d in cfg.devices)
    scheme = "HTTPS" if web and web.tls else "HTTP"
    users = f" with basic auth ({len(web.users)} users)" if web and web.users else ""
    print(
        f"{cfg.path}: OK: {len(cfg.devices)} devices ({keys} with bindkey), scan {cfg.scan_duration_seconds:g} s "
        f"every {cfg.scan_interval_seconds:g} s on {cfg.adapter} ({cfg.scan_mode}), "
        f"{scheme} on {http_address(cfg.listen_address, cfg.listen_port)}{users}, log {cfg.log_file}"
    )
    checked = "the log file" + (" and the web config's files" if web else "")
    if who == SERVICE_USER:
        print(f"{checked} checked as user {SERVICE_USER}, the service's user")
    else:
        print(f"{checked} checked as user {who}; the service uses them as {SERVICE_USER} (sudo checks as it)")
    for line in [*notes, *(f"warning: {w}" for w in warnings(cfg, web))]:
        print(line)
    return EXIT_OK


def _service_file_problems(cfg: Config) -> list[tuple[str, str, bool]]:
    """(where, problem, a matter of permission) for the files the service opens: its log, and the web
    config with the certificate and key it names."""
    found = []
    problem = log_file_problem(cfg.log_file)
    if problem is not None:
        found.append((cfg.where("log_file"), problem.message, problem.permission))
    if cfg.web_config_file:
        try:
            load_web_config(cfg.web_config_file)
        except ConfigError as e:  # as root it loaded: what is left is this user's permission
            found += [(cfg.where("web_config_file"), p, True) for p in e.problems]
    return found


def _as_service_user(check: Callable[[], list[tuple[str, str, bool]]]) -> tuple[str, list[tuple[str, str, bool]]]:
    """(who checked, what `check` found): as the service's user when we are root and that user exists
    (a child process that drops to it), else as whoever runs this."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    try:
        service = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        service = None
    if os.geteuid() != 0 or service is None:
        return me, check()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the service's user, check, report, exit
        try:
            os.close(read_end)
            os.setgroups(os.getgrouplist(service.pw_name, service.pw_gid))
            os.setgid(service.pw_gid)
            os.setuid(service.pw_uid)
            os.write(write_end, json.dumps(check()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as report:
        found = json.loads(report.read() or b"[]")
    os.waitpid(pid, 0)
    return SERVICE_USER, [tuple(item) for item in found]  # type: ignore[misc]


def cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
        if not args.simulate and (problems := radio_problems(cfg)):
            raise ConfigError(problems)
        log_file = args.log_file or cfg.log_file
        where = "--log-file" if args.log_file else cfg.where("log_file")
        problem = log_file_problem(log_file)
        if problem is not None:
            raise ConfigError([f"{where}: {problem.message}"])
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
        web = load_web_config(cfg.web_config_file) if cfg.web_config_file else None
        daemon = Daemon(cfg, simulate=args.simulate, log_file_option=args.log_file, log_level=level, web=web)
        status = asyncio.run(daemon.run())
    except signals.Stopped:  # SIGTERM or SIGINT before the event loop took them over
        sdnotify.notify("STOPPING=1")
        status = EXIT_OK
    finally:
        signals.take_over(hup_reloads=True)  # the loop gave the signals back to their defaults
    if status == EXIT_OK:
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
