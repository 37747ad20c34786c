"""How readings read to people, shared by the watch view and the page at /."""

from __future__ import annotations

from ble_exporter.engine import Readings
from ble_exporter.formatting import format_age, format_name, format_period, format_share, format_uptime
from ble_exporter.parser import Format
from ble_exporter.reception import Reception


def test_formats_read_as_people_name_them() -> None:
    def state(fmt: str | None, encrypted: bool = False) -> Readings:
        return Readings(format=Format(fmt) if fmt else None, encrypted=encrypted)

    assert [format_name(state(f)) for f in ("bthome_v2", "bthome_v1", "pvvx", "atc1441", "mijia", None)] == [
        "BTHome v2",
        "BTHome v1",
        "pvvx",
        "atc1441",
        "Mijia",
        "–",
    ]
    assert format_name(state("bthome_v2", encrypted=True)) == "BTHome v2*"


def test_ages_in_whole_units() -> None:
    ages = (0.4, 9, 99, 100, 5999, 6000, 7 * 3600, -3)
    assert [format_age(s) for s in ages] == ["0s", "9s", "99s", "1m", "99m", "1h", "7h", "0s"]


def test_uptime_in_hours_minutes_seconds_and_days() -> None:
    assert format_uptime(45) == "0:00:45"
    assert format_uptime(3 * 3600 + 62) == "3:01:02"
    assert format_uptime(2 * 86400 + 5) == "2d 0:00:05"


def test_reception_share_and_period() -> None:
    assert format_share(Reception()) == "–"  # no scan yet
    assert format_share(Reception(scans=3, scans_heard=2)) == "66%"  # rounded down: 100% means every scan
    assert format_period(Reception()) == "–"
    assert [format_period(Reception(period=p)) for p in (2.5, 9.96, 10.2, 600)] == ["2.5s", "10s", "10s", "10m"]
