"""Scan health: how a radio is doing, as the scan cycle sees it.

The scan cycle is its only writer: it counts silent scans, renewals and resets, records the mode a
scanner actually runs in, and the errors it survives or dies of. A radio never writes here; it
reports what it survived (the fallback to active scanning, a refused reset) through its `on_error`,
which the cycle points at `RadioHealth.note_error` when it takes the radio on. The front ends only
read (/metrics, /status, the watch header).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RadioHealth:
    """One adapter's health (the scan cycle keeps one per adapter)."""

    mode: str = "starting"  # a ScanMode once the first scan started
    address: str | None = None  # the controller's, once a scan started on it
    up: bool = True  # False after the watchdog's count of scans in a row heard no advert at all, or a failure
    failed: bool = False  # set aside after a failure (one adapter of several); retried at scan starts
    silent_scans: int = 0
    restarts: int = 0  # scanning sessions renewed by the silent-scan watchdog
    resets: int = 0  # adapter power cycles
    last_error: str | None = None  # the latest scanner error the process survived (or the one it died of)
    last_error_time: float | None = None

    def note_error(self, message: str, now: float) -> None:
        self.last_error = message
        self.last_error_time = now
