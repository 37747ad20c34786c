"""The start-up check itself; what `run` and `check-config` say with it is in test_main.py."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from support import write_config

from ble_exporter import startup
from ble_exporter.config import load_config


def no_user_database(*args: object) -> pwd.struct_passwd:
    raise AssertionError("looked up a user")


def test_the_check_for_run_looks_up_no_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookup pulls glibc's user-database code into the daemon for good (about 140 KB of its peak RSS)
    and `run` has no use for the name."""
    config, log_file = write_config(tmp_path, "devices: {}\n")
    monkeypatch.setattr(pwd, "getpwuid", no_user_database)
    monkeypatch.setattr(pwd, "getpwnam", no_user_database)
    found = startup.check(load_config(str(config)), simulate=True, log_file=str(log_file))
    assert found.problems == [] and found.checked_as == ""
    assert not log_file.exists()  # checked, nothing left behind


def test_the_check_for_the_service_names_who_checked(tmp_path: Path) -> None:
    config, log_file = write_config(tmp_path, "devices: {}\n")
    found = startup.check(load_config(str(config)), simulate=True, log_file=str(log_file), for_service=True)
    assert found.problems == []
    assert found.checked_as in (startup.SERVICE_USER, pwd.getpwuid(os.geteuid()).pw_name)
