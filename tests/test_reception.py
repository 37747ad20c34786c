"""Frame accounting from the sensors' own counters: frames heard and sent, restarts, the period."""

from __future__ import annotations

import pytest

from ble_exporter.devices import Device
from ble_exporter.engine import ScanEngine
from ble_exporter.parser import uuid128
from ble_exporter.reception import FASTEST_PERIOD_SECONDS, Reception

PERIOD = 10.0  # a LYWSD03MMC's default measurement: 4 adverts of 2.5 s


def heard(reception: Reception, frames: list[tuple[int, float]], bits: int = 8) -> Reception:
    """Feed (counter, time) as the engine does: a frame only when the number differs from the last."""
    for number, now in frames:
        if number != reception.last_frame:
            reception.frame(number, bits, now)
    return reception


def every_frame(first: int, count: int, start: float = 1000.0, bits: int = 8) -> list[tuple[int, float]]:
    return [((first + i) % (1 << bits), start + i * PERIOD) for i in range(count)]


def test_the_first_frame_adds_nothing_sent() -> None:
    r = heard(Reception(), [(17, 1000.0)])
    assert (r.frames, r.frames_sent, r.restarts, r.period) == (1, 0, 0, None)


def test_a_repeated_number_is_the_same_frame() -> None:
    # pvvx sends each frame in 4 adverts, BTHome's data1 and data2 under one packet id
    r = heard(Reception(), [(5, 1000.0), (5, 1002.5), (5, 1005.0), (5, 1007.5), (6, 1010.0), (6, 1012.5)])
    assert (r.frames, r.frames_sent, r.restarts) == (2, 1, 0)


def test_every_frame_heard_counts_one_sent_each_and_measures_the_period() -> None:
    r = heard(Reception(), every_frame(0, 10))
    assert (r.frames, r.frames_sent, r.restarts) == (10, 9, 0)
    assert r.period == pytest.approx(PERIOD)


def test_an_8_bit_counter_wraps_without_a_restart() -> None:
    r = heard(Reception(), every_frame(250, 12))  # 250 ... 255, 0 ... 5
    assert (r.frames, r.frames_sent, r.restarts) == (12, 11, 0)


def test_frames_missed_are_sent_but_not_heard() -> None:
    # one frame in three heard (a 5-s scan every 30 s hears about one), across a wrap
    r = heard(Reception(), every_frame(240, 30)[::3])
    assert (r.frames, r.frames_sent, r.restarts) == (10, 27, 0)
    assert r.period == pytest.approx(PERIOD)


def test_a_counter_that_starts_again_is_a_restart_and_adds_nothing() -> None:
    r = heard(Reception(), [*every_frame(100, 6), (0, 1060.0), (1, 1070.0), (2, 1080.0)])
    assert (r.frames, r.frames_sent, r.restarts) == (9, 5 + 2, 1)


def test_a_counter_that_steps_back_by_one_is_a_restart() -> None:
    """255 steps forward would take 42 minutes at the measured period, not 10 s."""
    r = heard(Reception(), [*every_frame(40, 5), (43, 1050.0)])
    assert (r.frames, r.frames_sent, r.restarts) == (6, 4, 1)
    assert r.period is None  # measured again from the restart


def test_a_silence_longer_than_256_periods_is_unwrapped_by_the_period() -> None:
    r = heard(Reception(), every_frame(0, 5))  # 0..4 at 1000..1040 s: period measured
    r = heard(r, [((4 + 300) % 256, 1040.0 + 300 * PERIOD)])  # 300 frames later, 48 on the counter
    assert (r.frames, r.frames_sent, r.restarts) == (6, 4 + 300, 0)
    assert r.period == pytest.approx(PERIOD)


def test_before_the_period_is_known_the_fastest_firmware_period_bounds_a_step() -> None:
    r = heard(Reception(), [(0, 1000.0), (3, 1000.5)])  # 3 steps in 0.5 s: within 4 × 0.125 s
    assert (r.frames_sent, r.restarts) == (3, 0)
    r = heard(Reception(), [(0, 1000.0), (100, 1001.0)])  # 100 steps in 1 s cannot be
    assert (r.frames_sent, r.restarts) == (0, 1)
    assert FASTEST_PERIOD_SECONDS == 0.125


def test_32_bit_counters_never_wrap_and_going_back_is_a_restart() -> None:
    start = 2**31 + 5
    r = heard(Reception(), [*every_frame(start, 4, bits=32), (start + 10, 1100.0)], bits=32)
    assert (r.frames, r.frames_sent, r.restarts) == (5, 3 + 7, 0)
    r = heard(r, [(7, 1110.0), (8, 1120.0)], bits=32)  # a battery change: the counter starts again
    assert (r.frames, r.frames_sent, r.restarts) == (7, 10 + 1, 1)


def test_the_plain_mijia_battery_frame_bumps_the_counter_within_a_measurement() -> None:
    """pvvx's plain Mijia mode sends its battery frame under a counter of its own, in the same
    measurement: a step of one 2.5 s after the last is no restart; the period halves."""
    frames = []
    for i in range(8):
        t = 1000.0 + i * PERIOD
        frames += [(2 * i, t), (2 * i, t + 2.5), (2 * i, t + 5.0), (2 * i + 1, t + 7.5)]
    r = heard(Reception(), frames)
    assert (r.frames, r.frames_sent, r.restarts) == (16, 15, 0)
    assert r.period == pytest.approx(PERIOD / 2, rel=0.3)


# ---- through the engine: which counter each format carries, scans heard, reloads ----

BTHOME = uuid128(0xFCD2)
KITCHEN = Device("A4:C1:38:AA:BB:CC", "kitchen")
# pvvx issue #740: data1 and data2 of one measurement (packet id 176), then 177 by hand
DATA1 = bytes.fromhex("4000b00151028d0a038d11")
DATA2 = bytes.fromhex("4000b00c200b10001101")
NEXT = bytes.fromhex("4000b10151028d0a038d11")


def test_data1_and_data2_under_one_packet_id_are_one_frame() -> None:
    engine = ScanEngine((KITCHEN,))
    engine.open_window(1000.0)
    for i, packet in enumerate((DATA1, DATA2, DATA1, DATA2, NEXT)):
        engine.ingest(KITCHEN.mac, -60, {BTHOME: packet}, 1000.0 + 2.5 * i)
    engine.close_window(1012.0)
    r = engine.reception[KITCHEN.mac]
    assert (r.scans_heard, r.frames, r.frames_sent, r.restarts) == (1, 2, 1, 0)


def test_scans_heard_counts_scans_with_a_reading_and_survives_a_reload() -> None:
    engine = ScanEngine((KITCHEN,))
    for scan, packets in enumerate(((DATA1,), (), (DATA2, NEXT))):
        engine.open_window(1000.0 + 30 * scan)
        for packet in packets:
            engine.ingest(KITCHEN.mac, -60, {BTHOME: packet}, 1001.0 + 30 * scan)
        engine.close_window(1005.0 + 30 * scan)
    r = engine.reception[KITCHEN.mac]
    assert (r.scans_heard, r.frames, engine.counters.scans) == (2, 2, 3)
    engine.set_devices((Device(KITCHEN.mac, "cuisine"),))  # renamed: the same sensor, kept
    assert engine.reception[KITCHEN.mac] is r
    engine.set_devices((Device(KITCHEN.mac, "cuisine", bytes(16)),))  # a bindkey now: starts again
    assert engine.reception[KITCHEN.mac].frames == 0
