"""The start-up check: what `run`, a reload (SIGHUP) and `check-config` find wrong with a config before
they use it. One function for all three, so that they cannot disagree: `check-config` says OK exactly
when `run` would start (and a reload would be taken), on the same words.

Problems are one line each, `where: problem; fix` (exit 2 at start-up, a rejected reload). Warnings
(secrets other users can read) never stop anything; every caller shows them on stderr or in the log.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ble_exporter.config import Config, ConfigError, exposed_secrets, radio_problems, readable_by_others
from ble_exporter.logger import log_file_problem

if TYPE_CHECKING:  # loaded only where there is a web config
    from ble_exporter.webconfig import WebConfig

SERVICE_USER = "ble-exporter"  # the packaged service's user (debian/ble-exporter.sysusers)


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # What only this user runs into (a permission), where another user than the service's checked:
    # `check-config` by hand says it without failing, since the service may well have the permission.
    notes: list[str] = field(default_factory=list)
    web: WebConfig | None = None
    checked_as: str = ""  # for the service (check-config): the user that opened the log file and the web config's files

    def or_raise(self) -> Findings:
        """These findings, or ConfigError when there is a problem."""
        if self.problems:
            raise ConfigError(self.problems)
        return self


def check(
    cfg: Config,
    *,
    simulate: bool = False,
    log_file: str | None = None,
    log_where: str | None = None,
    for_service: bool = False,
) -> Findings:
    """Everything that stops `cfg` from running: the scan timing a real adapter needs (not with
    `simulate`), the web config and its files, and the log file `log_file` (None: not checked, as on a
    reload that keeps it; `log_where` names where it was given). `for_service` (check-config) checks for
    the packaged service: its port must be unprivileged, and the files are opened as its user when root
    can become it."""
    found = Findings(problems=[] if simulate else radio_problems(cfg))
    if for_service and cfg.listen_port < unprivileged_port_start():
        found.problems.append(f"{cfg.where('listen_port')}: listen_port {cfg.listen_port}: {privileged_port()}")
    if cfg.web_config_file:
        from ble_exporter.webconfig import load_web_config

        try:
            found.web = load_web_config(cfg.web_config_file)
        except ConfigError as e:
            found.problems += e.problems

    def file_problems() -> list[tuple[str, str, bool]]:
        """(where, problem, only a matter of permission) for the files the process opens."""
        problems = []
        if log_file is not None:
            problem = log_file_problem(log_file)
            if problem is not None:
                problems.append((log_where or cfg.where("log_file"), problem.message, problem.permission))
        if cfg.web_config_file and found.web is not None:
            from ble_exporter.webconfig import load_web_config

            try:
                load_web_config(cfg.web_config_file)
            except ConfigError as e:  # it loaded before: what is left is this user's permission
                problems += [(cfg.where("web_config_file"), p, True) for p in e.problems]
        return problems

    if for_service:
        found.checked_as, problems = _as_service_user(file_problems)
    else:
        problems = file_problems()
    for where, message, permission in problems:
        if permission and for_service and found.checked_as != SERVICE_USER:
            found.notes.append(f"as user {found.checked_as}: {message}")
        else:
            found.problems.append(f"{where}: {message}")
    found.warnings = exposed_secrets(cfg)
    key_file = found.web.key_file if found.web else None
    if key_file and (warning := readable_by_others(key_file, "the TLS private key")):
        found.warnings.append(warning)
    return found


def unprivileged_port_start() -> int:
    """The lowest port a process without CAP_NET_BIND_SERVICE may bind (Linux: a sysctl, 1024 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def privileged_port() -> str:
    return f"ports below {unprivileged_port_start()} need privileges, which the service does not have; use e.g. 8000"


def _me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


Found = list[tuple[str, str, bool]]


def _as_service_user(check: Callable[[], Found]) -> tuple[str, Found]:
    """(who checked, what `check` found): as the service's user when we are root and that user exists
    (a child process that drops to it), else as whoever runs this."""
    try:
        service = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        service = None
    if os.geteuid() != 0 or service is None:
        return _me(), check()
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
