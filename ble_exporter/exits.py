"""The exit statuses, a contract with systemd (`Restart=on-failure`), scripts and the README's table."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0  # a clean stop on SIGTERM/SIGINT, or `check-config` found no problem
    BLUETOOTH = 1  # no adapter, a scan that failed to start or stop, BlueZ or the adapter gone
    CONFIG = 2  # a config or usage error
    LISTEN = 3  # the HTTP address cannot be bound
