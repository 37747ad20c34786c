"""Simulated sensors send real firmware bytes that decode, through the engine, to what they measured."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Mapping

from ble_exporter.devices import Device
from ble_exporter.engine import ScanEngine
from ble_exporter.parser import SERVICE_UUIDS, Format, Reading, parse
from ble_exporter.simulator import DEMO_DEVICES, NEIGHBOURS, SimulatedScanner, SimulatedSensor, make_sensors

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
T0 = 1_798_761_600.0  # 2027-01-01 00:00 UTC
WEEK = 7 * 86400
DEVICES = tuple(Device(f"A4:C1:38:00:00:{i:02X}", f"plain{i}") for i in range(5)) + tuple(
    Device(f"A4:C1:38:00:01:{i:02X}", f"secret{i}", KEY) for i in range(5)
)


def test_every_format_is_simulated_and_decodes_to_what_was_sent() -> None:
    sensors = make_sensors(DEVICES, seed=1)
    assert {(s.format, s.device.bindkey is not None) for s in sensors} == {
        (f, enc) for f in Format for enc in (False, True)
    }
    for sensor in sensors:
        for i in range(12):
            key, payload = sensor.next_payload(T0 + 2.5 * i)
            sent = sensor.sent[-1]
            got = parse(SERVICE_UUIDS[key], payload, sensor.device.mac, sensor.device.bindkey)
            assert isinstance(got, Reading), (sensor.format, got)
            assert got.encrypted == (sensor.device.bindkey is not None)
            coarse = sensor.format == "atc1441" and got.encrypted  # 0.5 °C and 0.5 % steps on air
            resolution = {
                "temperature": 0.5 if coarse else 0.1,
                "humidity": 1.0,
                "battery": 0,
                "voltage": 0.001,
            }
            for field, tolerance in resolution.items():
                value = getattr(got, field)
                if value is not None:
                    assert abs(value - getattr(sent, field)) <= tolerance + 1e-9, (sensor.format, field)


def test_bthome_sensors_alternate_climate_and_voltage_packets_under_one_packet_id() -> None:
    (sensor,) = make_sensors([Device("A4:C1:38:00:00:01", "x")], seed=2)
    assert sensor.format == "bthome_v2"
    readings = []
    for i in range(4):
        key, payload = sensor.next_payload(T0 + 2.5 * i)
        readings.append(parse(SERVICE_UUIDS[key], payload, sensor.device.mac))
    first, second = readings[0], readings[1]
    assert isinstance(first, Reading) and isinstance(second, Reading)
    assert first.temperature is not None and first.voltage is None
    assert second.voltage is not None and second.temperature is None
    assert first.packet_id == second.packet_id


def test_the_demo_sensors_include_a_mibeacon_one() -> None:
    assert [s.format for s in make_sensors(DEMO_DEVICES, seed=3)] == ["bthome_v2", "pvvx", "mijia"]


def test_mibeacon_sensors_send_what_pvvx_sends() -> None:
    """Plain: temperature and humidity in three adverts of four, battery in the fourth, a frame of its
    own (pvvx bumps the frame counter for it). Encrypted: one
    value per measurement, temperature, humidity, battery in turn, the frame (and counter) repeated for
    the measurement's four adverts."""
    plain, secret = (s for s in make_sensors(DEVICES, seed=4) if s.format == "mijia")

    def decode(sensor: SimulatedSensor, i: int) -> Reading:
        key, payload = sensor.next_payload(T0 + 2.5 * i)
        result = parse(SERVICE_UUIDS[key], payload, sensor.device.mac, sensor.device.bindkey)
        assert isinstance(result, Reading)
        return result

    got = [decode(plain, i) for i in range(8)]
    first = got[0].packet_id
    assert first is not None
    assert [(r.temperature is not None, r.humidity is not None, r.battery is not None) for r in got] == [
        (True, True, False)
    ] * 3 + [(False, False, True)] + [(True, True, False)] * 3 + [(False, False, True)]
    assert all(r.voltage is None and not r.encrypted for r in got)
    assert [r.packet_id for r in got] == [(first + step) & 0xFF for step in (0, 0, 0, 1, 2, 2, 2, 3)]
    readings = [decode(secret, i) for i in range(12)]
    assert all(r.encrypted for r in readings)
    counters = [r.counter or 0 for r in readings]
    assert counters == [counters[0]] * 4 + [counters[0] + 1] * 4 + [counters[0] + 2] * 4
    assert readings[0] == readings[3] != readings[4]
    fields = [
        tuple(f for f in ("temperature", "humidity", "battery") if getattr(r, f) is not None) for r in readings[::4]
    ]
    assert sorted(fields) == [("battery",), ("humidity",), ("temperature",)]


def test_scanner_feeds_the_sink_while_started_only() -> None:
    heard: list[tuple[str, Mapping[str, bytes]]] = []
    scanner = SimulatedScanner(
        DEMO_DEVICES, lambda mac, rssi, data, now, adapter: heard.append((mac, data)), advert_interval=0.05
    )

    async def go() -> None:
        await scanner.start()
        await asyncio.sleep(0.2)
        await scanner.stop()
        count = len(heard)
        await asyncio.sleep(0.1)
        assert len(heard) == count

    asyncio.run(go())
    macs = {mac for mac, _ in heard}
    assert {d.mac for d in DEMO_DEVICES} <= macs and {d.mac for d in NEIGHBOURS} <= macs


def test_neighbours_are_heard_but_not_exported() -> None:
    engine = ScanEngine(DEMO_DEVICES)
    scanner = SimulatedScanner(DEMO_DEVICES, engine.ingest, advert_interval=0.05)

    async def go() -> None:
        engine.open_window(0)
        await scanner.start()
        await asyncio.sleep(0.3)
        await scanner.stop()
        engine.close_window(1)

    asyncio.run(go())
    assert {d.device.name for d in engine.snapshot.devices} == {d.name for d in DEMO_DEVICES}
    assert engine.counters.adverts_received > engine.counters.adverts_decoded > 0
    assert engine.counters.rejected == {}


def test_a_simulated_week_looks_like_thermometers_in_rooms() -> None:
    """A week of measurements every 10 s and adverts every 2.5 s, on a clock passed in: readings stay
    near each room's set point with a daily cycle, the signal wanders around the sensor's level, the
    battery drains a little and never recovers (the random walk this replaced left 30 % of sensors
    below 5 °C or above 35 °C after a day)."""
    for sensor in make_sensors(DEVICES[:4], seed=7):
        room = sensor.room
        temperatures, humidities, rssis, volts, batteries = [], [], [], [], []
        by_hour: dict[int, list[float]] = {}
        for step in range(WEEK // 10):
            now = T0 + step * 10.0
            sensor.measure(now)
            temperatures.append(sensor.temperature)
            humidities.append(sensor.humidity)
            volts.append(sensor.voltage)
            batteries.append(sensor.battery)
            by_hour.setdefault(time.localtime(now).tm_hour, []).append(sensor.temperature)
        for i in range(0, 20_000):
            sensor.next_payload(T0 + WEEK + 2.5 * i)
            rssis.append(sensor.rssi)
        assert all(abs(t - room.temperature) <= room.swing + 1.5 for t in temperatures), sensor.device.name
        assert abs(statistics.fmean(temperatures) - room.temperature) < 0.3
        assert all(abs(h - room.humidity) <= 2.5 * room.swing + 10 for h in humidities)
        means = {hour: statistics.fmean(values) for hour, values in by_hour.items()}
        warmest, coldest = max(means, key=lambda h: means[h]), min(means, key=lambda h: means[h])
        assert 12 <= warmest <= 18 and (coldest >= 23 or coldest <= 6), (warmest, coldest)
        assert means[warmest] - means[coldest] > room.swing  # a daily cycle, not just noise
        assert all(abs(r - room.rssi) <= 15 for r in rssis) and 1.5 < statistics.pstdev(rssis) < 5
        steps = [abs(a - b) for a, b in itertools.pairwise(rssis)]
        assert statistics.fmean(steps) < 2  # it wanders, not jumps
        assert volts == sorted(volts, reverse=True) and batteries == sorted(batteries, reverse=True)
        assert 0.003 < volts[0] - volts[-1] < 0.01  # about 0.3 V a year


def test_demo_sensors_move_every_reception_series() -> None:
    """An hour of the demo sensors through the engine, scanning all the time: the living room's every
    frame is heard, the bedroom loses about a third of its adverts (hardly a frame: each is in four), the
    balcony's brown-outs are each counted once as a restart."""
    sensors = make_sensors(DEMO_DEVICES, seed=5)
    living, bedroom, balcony = sensors
    engine = ScanEngine(DEMO_DEVICES)
    arrived = dict.fromkeys(DEMO_DEVICES, 0)
    for scan in range(120):  # 30-s windows, back to back
        engine.open_window(T0 + 30 * scan)
        for i in range(12):
            now = T0 + 30 * scan + 2.5 * i
            for sensor in sensors:
                key, payload = sensor.next_payload(now)
                if sensor.arrives():
                    arrived[sensor.device] += 1
                    engine.ingest(sensor.device.mac, sensor.rssi, {key: payload}, now)
        engine.close_window(T0 + 30 * scan + 30)
    r = {s.device.name: engine.reception[s.device.mac] for s in sensors}
    assert r["demo_living_room"].frames == living.measurements and r["demo_living_room"].restarts == 0
    assert r["demo_living_room"].frames_sent == living.measurements - 1
    assert r["demo_living_room"].period is not None and abs(r["demo_living_room"].period - 10.0) < 0.5
    assert 0.25 < 1 - arrived[bedroom.device] / bedroom.adverts < 0.42
    # pvvx custom: every value in every advert, a frame in four adverts: (1/3)^4 = 1/81 of frames lost
    assert bedroom.format == Format.PVVX
    assert 0.95 < r["demo_bedroom"].frames / (r["demo_bedroom"].frames_sent + 1) < 1.0
    assert 9 <= balcony.restarts <= 15 and r["demo_balcony"].restarts == balcony.restarts
