"""How readings read to people: format names, ages, uptimes, reception. Pure text, no I/O library, so
both front ends use it (the watch view with rich, the page at / without)."""

from __future__ import annotations

from ble_exporter.engine import Readings
from ble_exporter.parser import Format
from ble_exporter.reception import Reception

FORMAT_NAMES = {
    Format.BTHOME_V2: "BTHome v2",
    Format.BTHOME_V1: "BTHome v1",
    Format.PVVX: "pvvx",
    Format.ATC1441: "atc1441",
    Format.MIJIA: "Mijia",
}


def format_name(readings: Readings) -> str:
    """`BTHome v2`, with a `*` when encrypted (one character: 80 columns are tight); `–` before any."""
    if readings.format is None:
        return "–"
    name = FORMAT_NAMES.get(readings.format, readings.format)
    return f"{name}*" if readings.encrypted else name


def format_age(seconds: float) -> str:
    """`4s`, `12m`, `3h`: whole units that keep the column narrow."""
    seconds = max(0.0, seconds)
    if seconds < 100:
        return f"{seconds:.0f}s"
    if seconds < 100 * 60:
        return f"{seconds // 60:.0f}m"
    return f"{seconds // 3600:.0f}h"


def format_uptime(seconds: float) -> str:
    s = int(max(0.0, seconds))
    days, s = divmod(s, 86400)
    text = f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}d {text}" if days else text


def format_share(reception: Reception) -> str:
    """The share of scans since start in which the sensor was heard, in whole percent."""
    return "–" if reception.scans == 0 else f"{100 * reception.scans_heard // reception.scans}%"


def format_period(reception: Reception) -> str:
    """The sensor's measured period: `10s`, `2.5s`; `–` until measured."""
    period = reception.period
    if period is None:
        return "–"
    return f"{period:.1f}s" if period < 9.95 else format_age(period)
