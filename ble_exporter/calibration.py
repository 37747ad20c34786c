"""Calibration of one sensor's temperature and humidity: an offset, or the line through two points.

Applied by the engine as readings arrive, before anything stores them, so /metrics, /status, the watch
view and the recording rules all see the same calibrated values. Values keep their resolution (no
rounding); humidity is clamped to 0-100 %RH after calibration, never a negative %RH.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ble_exporter.parser import Reading

# How far a calibration may reach before it is more likely a typo than a sensor's error: a slope outside
# 0.5-2 or a correction beyond these (°C, %RH) at the measured points.
SLOPES = (0.5, 2.0)
LIMITS = {"temperature": 10.0, "humidity": 30.0}
UNITS = {"temperature": "°C", "humidity": "%RH"}
QUANTITIES = ("temperature", "humidity")


@dataclass(frozen=True, slots=True)
class Line:
    """true = slope * measured + offset."""

    slope: float = 1.0
    offset: float = 0.0
    points: bool = False  # given as two points rather than as an offset

    @classmethod
    def through(cls, measured: tuple[float, float], true: tuple[float, float]) -> Line:
        slope = (true[1] - true[0]) / (measured[1] - measured[0])
        return cls(slope, true[0] - slope * measured[0], points=True)

    def __call__(self, value: float) -> float:
        return self.slope * value + self.offset

    def describe(self, unit: str) -> str:
        if not self.points:
            return f"{self.offset:+g} {unit}"
        return f"× {self.slope:.4g} {self.offset:+.4g} {unit} (two points)"


@dataclass(frozen=True, slots=True)
class Calibration:
    temperature: Line | None = None
    humidity: Line | None = None

    def quantities(self) -> tuple[str, ...]:
        return tuple(q for q in QUANTITIES if getattr(self, q) is not None)

    def apply(self, r: Reading) -> Reading:
        """The reading with its temperature and humidity calibrated (those it carries)."""
        t, h = self.temperature, self.humidity
        temperature = r.temperature if t is None or r.temperature is None else t(r.temperature)
        humidity = r.humidity if h is None or r.humidity is None else min(100.0, max(0.0, h(r.humidity)))
        if temperature is r.temperature and humidity is r.humidity:
            return r
        return replace(r, temperature=temperature, humidity=humidity)

    def describe(self) -> str:
        return ", ".join(f"{q} {getattr(self, q).describe(UNITS[q])}" for q in self.quantities())


def problem_with_offset(quantity: str, offset: float) -> str | None:
    """Why an offset cannot be right, or None."""
    if not math.isfinite(offset):
        return "must be a finite number"
    limit = LIMITS[quantity]
    if abs(offset) > limit:
        return f"is beyond ±{limit:g} {UNITS[quantity]}: more likely a typo than a sensor's error"
    return None


def problem_with_points(quantity: str, points: tuple[tuple[float, float], tuple[float, float]]) -> str | None:
    """Why two (measured, true) points cannot make a calibration line, or None."""
    (m1, t1), (m2, t2) = points
    if not all(math.isfinite(v) for v in (m1, t1, m2, t2)):
        return "must be finite numbers"
    if m1 == m2:
        return "has two equal measured values: no line goes through them; measure at two different points"
    slope = (t2 - t1) / (m2 - m1)
    if not SLOPES[0] <= slope <= SLOPES[1]:
        return f"gives a slope of {slope:.3g}, outside {SLOPES[0]:g}-{SLOPES[1]:g} (is each pair [measured, true]?)"
    limit = LIMITS[quantity]
    if max(abs(t1 - m1), abs(t2 - m2)) > limit:
        return f"corrects by more than ±{limit:g} {UNITS[quantity]}: more likely a typo than a sensor's error"
    return None
