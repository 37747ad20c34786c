"""The soak (tests/soak.py) in short: 200 scan cycles, 50 simulated sensors, /metrics scraped back to back."""

from __future__ import annotations

import sys

from soak import run_soak


def test_short_soak_is_clean_and_flat() -> None:
    report = run_soak(cycles=200, devices=50, python=sys.executable)
    assert report.problems(max_growth_mib=8.0) == [], report.summary()
    assert report.cycles >= 200 and report.scrapes >= 200, report.summary()
    assert max(report.heard) >= 25, report.summary()  # the sensors are really heard
