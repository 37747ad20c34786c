"""Calibration: the arithmetic and the clamping, every bad config, and the engine applying it to readings
before they are stored (so every document sees calibrated values), a reload changing it without resetting
a counter."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from ble_exporter.calibration import Calibration, Line
from ble_exporter.config import ConfigError, parse_config
from ble_exporter.devices import Device
from ble_exporter.engine import ScanEngine
from ble_exporter.parser import Format, Reading, uuid128

BTHOME = uuid128(0xFCD2)
MAC = "A4:C1:38:AA:BB:CC"
# pvvx issue #740, data1: battery 81 %, 27.01 °C, 44.93 %RH (packet id 176).
DATA1 = bytes.fromhex("4000b00151028d0a038d11")


def reading(temperature: float | None = 21.37, humidity: float | None = 45.5) -> Reading:
    return Reading(format=Format.BTHOME_V2, temperature=temperature, humidity=humidity, battery=80, packet_id=3)


# --- the arithmetic ----------------------------------------------------------------------------------


def test_an_offset_adds_and_keeps_the_resolution() -> None:
    got = Calibration(temperature=Line(offset=-0.4)).apply(reading(21.37))
    assert got.temperature == 21.37 - 0.4  # no rounding to the sensor's 0.01
    assert (got.humidity, got.battery, got.packet_id) == (45.5, 80, 3)  # the rest untouched


def test_two_points_make_the_line_through_them() -> None:
    line = Line.through((33.0, 72.0), (33.1, 75.3))  # salt tests: MgCl2 33.1 %RH, NaCl 75.3 %RH
    assert math.isclose(line(33.0), 33.1, abs_tol=1e-12) and math.isclose(line(72.0), 75.3, abs_tol=1e-12)
    exact = Fraction("75.3") - Fraction("33.1")
    slope = exact / (Fraction(72) - Fraction(33))
    assert math.isclose(line(50.0), float(Fraction("33.1") + slope * (Fraction(50) - Fraction(33))), rel_tol=1e-15)


def test_humidity_is_clamped_to_0_100_after_calibration() -> None:
    up, down = Calibration(humidity=Line(offset=5.0)), Calibration(humidity=Line(offset=-5.0))
    assert up.apply(reading(humidity=97.5)).humidity == 100.0
    assert down.apply(reading(humidity=3.0)).humidity == 0.0  # never a negative %RH
    assert up.apply(reading(humidity=50.0)).humidity == 55.0


def test_a_reading_without_the_quantity_is_returned_as_it_is() -> None:
    voltage_only = Reading(format=Format.BTHOME_V2, voltage=2.9, packet_id=3)
    calibration = Calibration(temperature=Line(offset=1.0), humidity=Line(offset=1.0))
    assert calibration.apply(voltage_only) is voltage_only
    assert Calibration(humidity=Line(offset=1.0)).apply(reading()).temperature == 21.37


# --- the config --------------------------------------------------------------------------------------


def device(lines: str) -> str:
    return f'devices:\n  "{MAC}":\n    name: kitchen\n' + "".join(f"    {line}\n" for line in lines.splitlines())


def test_the_long_form_takes_offsets_and_points() -> None:
    cfg = parse_config(device("temperature_offset: -0.4\nhumidity_points: [[33.0, 33.1], [72, 75.3]]"))
    calibration = cfg.devices[0].calibration
    assert calibration is not None and calibration.temperature == Line(offset=-0.4)
    assert calibration.humidity == Line.through((33.0, 72.0), (33.1, 75.3))
    assert parse_config(device("bindkey: 231d39c1d7cc1ab1aee224cd096db932")).devices[0].calibration is None


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        ("temperature_offset: .nan", "`temperature_offset` must be a finite number"),
        ("temperature_offset: .inf", "`temperature_offset` must be a finite number"),
        ("temperature_offset: 10.5", "`temperature_offset` is beyond ±10 °C"),
        ("humidity_offset: -30.5", "`humidity_offset` is beyond ±30 %RH"),
        ('temperature_offset: "0.5"', "`temperature_offset` must be a number"),
        ("temperature_offset: true", "`temperature_offset` must be a number"),
        ("temperature_points: [[20, .nan], [30, 30]]", "`temperature_points` must be finite numbers"),
        ("temperature_points: [[20, 20.5], [20, 21]]", "`temperature_points` has two equal measured values"),
        ("temperature_points: [[20, 20], [30, 24]]", "gives a slope of 0.4, outside 0.5-2"),
        ("humidity_points: [[30, 30], [40, 61]]", "gives a slope of 3.1, outside 0.5-2"),
        ("temperature_points: [[20, 31], [30, 41]]", "`temperature_points` corrects by more than ±10 °C"),
        ("temperature_points: [[20, 20]]", "`temperature_points` must be two [measured, true] pairs"),
        ("humidity_points: [[20, 20], [30, x]]", "`humidity_points` must be two [measured, true] pairs"),
        ("humidity_points: 5", "`humidity_points` must be two [measured, true] pairs"),
        (
            "temperature_offset: 0.5\ntemperature_points: [[20, 20], [30, 30]]",
            "`temperature_offset` and `temperature_points` both calibrate the temperature; keep one",
        ),
        ("temperature_ofset: 0.5", "unknown key `temperature_ofset`"),
    ],
)
def test_a_bad_calibration_is_one_line_naming_the_device_and_the_key(lines: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(device(lines), "c.yaml")
    (problem,) = info.value.problems
    assert problem.startswith("c.yaml:") and f"device {MAC}: " in problem and says in problem, problem
    assert "\n" not in problem


# --- in the engine -----------------------------------------------------------------------------------


def one_scan(engine: ScanEngine, start: float, packet_id: int = 176) -> None:
    engine.open_window(start)
    engine.ingest(MAC, -60, {BTHOME: DATA1[:2] + bytes((packet_id,)) + DATA1[3:]}, start + 1)
    engine.close_window(start + 5)


def test_the_engine_stores_calibrated_values_and_keeps_the_raw_ones_beside_them() -> None:
    line = Line.through((40.0, 50.0), (42.0, 53.0))
    engine = ScanEngine([Device(MAC, "kitchen", calibration=Calibration(Line(offset=-0.51), line))])
    one_scan(engine, 1000.0)
    (heard,) = engine.snapshot.devices
    assert heard.readings.temperature == 27.01 - 0.51 and heard.readings.humidity == line(44.93)
    assert heard.raw is not None and (heard.raw.temperature, heard.raw.humidity) == (27.01, 44.93)
    assert engine.live[MAC].readings.temperature == 27.01 - 0.51  # the watch view's values too


def test_a_reload_changes_the_calibration_from_the_next_scan_and_resets_no_counter() -> None:
    kitchen = Device(MAC, "kitchen", calibration=Calibration(temperature=Line(offset=-0.51)))
    engine = ScanEngine([kitchen])
    one_scan(engine, 1000.0, 176)
    one_scan(engine, 1010.0, 177)
    engine.set_devices([Device(MAC, "kitchen", calibration=Calibration(temperature=Line(offset=0.49)))])
    assert engine.snapshot.devices[0].readings.temperature == 27.01 - 0.51  # the published scan stays
    one_scan(engine, 1020.0, 178)
    assert engine.snapshot.devices[0].readings.temperature == 27.01 + 0.49
    reception = engine.reception[MAC]
    assert (engine.counters.scans, reception.scans_heard, reception.frames, reception.frames_sent) == (3, 3, 3, 2)
    engine.set_devices([Device(MAC, "kitchen")])  # calibration removed: the values as sent
    one_scan(engine, 1030.0, 179)
    assert engine.snapshot.devices[0].readings.temperature == 27.01 and engine.snapshot.devices[0].raw is None
