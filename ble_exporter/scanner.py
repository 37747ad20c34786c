"""What the scan cycle needs of a radio: the Scanner protocol that BlueZ and the simulator implement.

Like bleak's own split of `backends/scanner.py` from its platform backends, this module holds only the
interface, so the scan cycle (`core`), the backends (`bluez`, `simulator`) and the config all import it
and nothing imports them back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ble_exporter.devices import Device

# engine.ingest: (address, rssi, service data by 128-bit UUID, time of arrival, adapter that heard it)
AdvertSink = Callable[[str, "int | None", Mapping[str, bytes], float, str], None]


class ScanMode(str, Enum):
    """How to scan (the config's `scan_mode`: auto, passive, active) and how a scanner does (passive,
    active or simulated), as /status, the log and the watch header show it."""

    __str__ = str.__str__

    AUTO = "auto"  # passive where BlueZ offers it, else active
    PASSIVE = "passive"
    ACTIVE = "active"
    SIMULATED = "simulated"


class ScanError(Exception):
    """The Bluetooth stack failed; the message is one line with the fix."""


class Scanner(Protocol):
    """One adapter's radio. It counts what it hears (`adverts`), so the scan cycle can watch each
    adapter for silence on its own."""

    adapter: str  # as the config names it: hci1, or a controller address
    address: str | None  # the controller's address, once started (None: not known)
    mode: ScanMode  # the mode actually in use, once started
    adverts: int  # adverts reported since the scanner was made
    # What the radio survived (a fallback, a refused reset), in one line: the scan cycle points this at
    # the radio's health when it takes the scanner on.
    on_error: Callable[[str], None]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check(self) -> None:
        """Raise ScanError when the Bluetooth stack is gone; called every second of the cycle."""

    def renew(self) -> None:
        """Forget the scanning session (stopped first) so the next start opens a fresh one: the
        silent-scan watchdog's remedy."""

    async def reset(self) -> None:
        """Power-cycle the radio (stopped first) when renewing did not help; ScanError when it does not
        come back on."""

    def set_devices(self, devices: Sequence[Device]) -> None:
        """The configured sensors after a reload."""
