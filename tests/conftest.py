"""Shared fixtures. Each section below is owned by one area; append, don't rewrite others' sections."""

from __future__ import annotations

# ---- BlueZ mock (tests/bluez_mock.py): a fake bluetoothd on a private system bus ----
from collections.abc import Iterator as _BluezIterator

import pytest as _bluez_pytest
from bluez_mock import BUS_ENV, BluezMock, missing_requirements


@_bluez_pytest.fixture
def bluez(monkeypatch: _bluez_pytest.MonkeyPatch) -> _BluezIterator[BluezMock]:
    """A started BluezMock with adapter hci0 (powered), and DBUS_SYSTEM_BUS_ADDRESS pointing at
    its bus for the test's duration, so in-process bleak uses it (subprocesses: ``bluez.env()``).
    Fails, never skips, when dbus-daemon or python3-dbusmock is missing."""
    reason = missing_requirements()
    if reason is not None:
        _bluez_pytest.fail(reason, pytrace=False)
    with BluezMock() as mock:
        monkeypatch.setenv(BUS_ENV, mock.bus_address)
        mock.add_adapter("hci0")
        yield mock

