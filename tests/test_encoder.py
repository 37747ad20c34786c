"""ble_exporter.encoder: byte-exact against firmware captures, and encode -> parse round trips."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parser import KEY_BTHOME, KEY_PVVX, MAC_BTHOME, MAC_PVVX, VECTORS, h, split_ad

from ble_exporter.encoder import advertising_data, encode, seal_bthome_v1, seal_bthome_v2, seal_pvvx
from ble_exporter.parser import (
    Format,
    NotDecodable,
    Reading,
    Reason,
    parse,
)

# Captures from other senders than pvvx firmware that use objects the encoder never writes
# (0x45/0x2E/light in B5/B6, pressure in B7, motion in E3).
NOT_FIRMWARE_LAYOUT = {"B5", "B6", "B7", "E3"}
FIRMWARE_VECTORS = [p for p in VECTORS if p.id not in NOT_FIRMWARE_LAYOUT]


@pytest.mark.parametrize(("uuid16", "payload", "mac", "key", "expected"), FIRMWARE_VECTORS)
def test_reproduces_capture_byte_for_byte(
    uuid16: int, payload: bytes, mac: str, key: bytes | None, expected: Reading
) -> None:
    """Same bytes as the device sent, including nonces/MICs of the encrypted ones."""
    assert encode(expected, mac, key, expected.counter or 0) == (uuid16, payload)


def test_advertising_data_matches_bthome_io_example() -> None:
    # bthome.io/format: 020106 0B094449592D73656E736F72 0A16D2FC4002C40903BF13
    payload = encode(Reading(format=Format.BTHOME_V2, temperature=25.0, humidity=50.55), MAC_BTHOME)[1]
    assert advertising_data(0xFCD2, payload, name="DIY-sensor") == h(
        "020106 0B094449592D73656E736F72 0A16D2FC4002C40903BF13"
    )
    # JsBergbau/MiTemperature2 #154 (P5): flags + service data, no name
    raw = h("02 01 06 0e 16 d2 fc 40 00 1b 01 64 02 c8 08 03 6c 1a")
    assert advertising_data(0xFCD2, split_ad(raw)[0xFCD2]) == raw


def test_advertising_data_limits() -> None:
    with pytest.raises(ValueError, match="AD element"):
        advertising_data(0xFCD2, bytes(253))
    with pytest.raises(ValueError, match="local name"):
        advertising_data(0xFCD2, b"\x40", name="x" * 30)


@pytest.mark.parametrize(
    ("reading", "message"),
    [
        (Reading(format=Format.PVVX, temperature=20.0), "humidity"),
        (Reading(format=Format.ATC1441, temperature=20.0, humidity=50.0, battery=90), "voltage"),
        (Reading(format=Format.BTHOME_V2, battery=256), "battery"),
        (Reading(format=Format.BTHOME_V2, temperature=400.0), "temperature"),
        (Reading(format=Format.BTHOME_V1, humidity=-1.0), "humidity"),
        (Reading(format=Format.ATC1441, encrypted=True, temperature=90.0, humidity=50.0, battery=90), "temperature"),
        (Reading(format=Format.ATC1441, encrypted=True, temperature=20.0, humidity=50.0, battery=128), "battery"),
        (Reading(format="mibeacon"), "unknown format"),  # type: ignore[arg-type]
    ],
)
def test_rejects_what_the_wire_cannot_carry(reading: Reading, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode(reading, MAC_PVVX)


@pytest.mark.parametrize("fmt", [Format.BTHOME_V2, Format.BTHOME_V1, Format.PVVX, Format.ATC1441])
def test_encrypted_needs_a_16_byte_key_and_never_echoes_it(fmt: Format) -> None:
    reading = Reading(format=fmt, encrypted=True, temperature=20.0, humidity=50.0, battery=90)
    for key in (None, b"\x5a" * 15):
        with pytest.raises(ValueError, match="16-byte bindkey") as info:
            encode(reading, MAC_PVVX, key)
        assert "5a5a" not in str(info.value).lower() and "ZZZ" not in str(info.value)


def test_encrypted_drops_the_packet_id_like_the_firmware() -> None:
    """pvvx sends no packet-id object when encrypted; the counter replaces it."""
    reading = Reading(format=Format.BTHOME_V2, encrypted=True, packet_id=5, battery=80)
    uuid16, payload = encode(reading, MAC_PVVX, KEY_PVVX, counter=7)
    assert parse(uuid16, payload, MAC_PVVX, KEY_PVVX) == Reading(
        format=Format.BTHOME_V2, encrypted=True, battery=80, counter=7
    )


def test_seal_helpers_authenticate_arbitrary_plaintext() -> None:
    """The seal_* helpers let fuzzing reach the object walk behind a valid MIC."""
    garbage = bytes(range(0x60, 0x70))
    for uuid16, payload, key in (
        (0xFCD2, seal_bthome_v2(garbage, MAC_BTHOME, KEY_BTHOME, 1), KEY_BTHOME),
        (0x181E, seal_bthome_v1(garbage, MAC_BTHOME, KEY_BTHOME, 1), KEY_BTHOME),
        (0x181A, seal_pvvx(garbage[:6], MAC_BTHOME, KEY_BTHOME, 1), KEY_BTHOME),
    ):
        result = parse(uuid16, payload, MAC_BTHOME, key)
        assert result != NotDecodable(Reason.DECRYPT_FAILED)


def test_encrypted_unknown_first_object_is_unknown_object() -> None:
    payload = seal_bthome_v2(b"\xfe\x01", MAC_BTHOME, KEY_BTHOME, 1)
    assert parse(0xFCD2, payload, MAC_BTHOME, KEY_BTHOME) == NotDecodable(Reason.UNKNOWN_OBJECT)


def test_pvvx_flags_follow_power_and_opening_when_not_given() -> None:
    reading = Reading(format=Format.PVVX, temperature=20.0, humidity=50.0, battery=90, voltage=2.9, packet_id=3)
    uuid16, payload = encode(dataclasses.replace(reading, power=True, opening=False), MAC_PVVX)
    assert payload[-1] == 0x02
    assert parse(uuid16, payload, MAC_PVVX) == dataclasses.replace(
        reading, mac=MAC_PVVX, power=True, opening=False, flags=0x02
    )


def test_rejects_a_mac_that_is_not_one() -> None:
    reading = Reading(format=Format.ATC1441, temperature=20.0, humidity=50.0, battery=90, voltage=2.9, packet_id=3)
    with pytest.raises(ValueError, match="MAC"):
        encode(reading, "A4:C1:38:AA:BB")


# --- encode -> parse round trips -----------------------------------------------------------------------

ROUND_TRIP = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MACS = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":").upper())
KEYS = st.binary(min_size=16, max_size=16)
U8 = st.integers(0, 255)


def grid(lo: int, hi: int, divisor: int) -> st.SearchStrategy[float]:
    """Values exactly on a format's resolution: integer steps / divisor."""
    return st.integers(lo, hi).map(lambda i: i / divisor)


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


Case = tuple[Reading, str, "bytes | None", int]


@st.composite
def bthome_cases(draw: Callable[..., Any], fmt: Format) -> Case:
    """Any subset of the fields the encoder writes, on the 0.01 °C / 0.01 % / 1 mV grid."""
    encrypted = draw(st.booleans())
    mac = draw(MACS)
    counter = draw(st.integers(0, 2**32 - 1))
    reading = Reading(
        format=fmt,
        encrypted=encrypted,
        temperature=draw(opt(grid(-32768, 32767, 100))),
        humidity=draw(opt(grid(0, 65535, 100))),
        battery=draw(opt(U8)),
        voltage=draw(opt(grid(0, 65535, 1000))),
        packet_id=None if encrypted else draw(opt(U8)),
        power=draw(opt(st.booleans())),
        opening=draw(opt(st.booleans())),
        counter=counter if encrypted else None,
        mac=draw(opt(MACS)) if fmt == Format.BTHOME_V2 else None,
    )
    return reading, mac, draw(KEYS) if encrypted else None, counter


@st.composite
def pvvx_cases(draw: Callable[..., Any]) -> Case:
    encrypted = draw(st.booleans())
    mac = draw(MACS)
    counter = draw(U8)
    flags = draw(U8) if encrypted else draw(opt(U8))
    reading = Reading(
        format=Format.PVVX,
        encrypted=encrypted,
        temperature=draw(grid(-32768, 32767, 100)),
        humidity=draw(grid(0, 65535, 100)),
        battery=draw(U8),
        voltage=None if encrypted else draw(grid(0, 65535, 1000)),
        packet_id=counter if encrypted else draw(U8),
        counter=counter if encrypted else None,
        mac=None if encrypted else mac,
        power=None if flags is None else bool(flags & 2),
        opening=None if flags is None else bool(flags & 1),
        flags=flags,
    )
    return reading, mac, draw(KEYS) if encrypted else None, counter


@st.composite
def atc1441_cases(draw: Callable[..., Any]) -> Case:
    encrypted = draw(st.booleans())
    mac = draw(MACS)
    counter = draw(U8)
    if encrypted:
        reading = Reading(
            format=Format.ATC1441,
            encrypted=True,
            temperature=draw(grid(0, 255, 2)) - 40,  # half degrees from -40 °C
            humidity=draw(grid(0, 255, 2)),
            battery=draw(st.integers(0, 127)),
            packet_id=counter,
            counter=counter,
            flags=draw(st.sampled_from([0, 4])),
        )
    else:
        reading = Reading(
            format=Format.ATC1441,
            temperature=draw(grid(-32768, 32767, 10)),
            humidity=float(draw(U8)),
            battery=draw(U8),
            voltage=draw(grid(0, 65535, 1000)),
            packet_id=draw(U8),
            mac=mac,
        )
    return reading, mac, draw(KEYS) if encrypted else None, counter


ALL_CASES = st.one_of(bthome_cases(Format.BTHOME_V2), bthome_cases(Format.BTHOME_V1), pvvx_cases(), atc1441_cases())


@ROUND_TRIP
@given(case=bthome_cases(Format.BTHOME_V2))
def test_round_trip_bthome_v2(case: Case) -> None:
    reading, mac, key, counter = case
    assert parse(*encode(reading, mac, key, counter), mac, key) == reading


@ROUND_TRIP
@given(case=bthome_cases(Format.BTHOME_V1))
def test_round_trip_bthome_v1(case: Case) -> None:
    reading, mac, key, counter = case
    assert parse(*encode(reading, mac, key, counter), mac, key) == reading


@ROUND_TRIP
@given(case=pvvx_cases())
def test_round_trip_pvvx(case: Case) -> None:
    reading, mac, key, counter = case
    assert parse(*encode(reading, mac, key, counter), mac, key) == reading


@ROUND_TRIP
@given(case=atc1441_cases())
def test_round_trip_atc1441(case: Case) -> None:
    reading, mac, key, counter = case
    assert parse(*encode(reading, mac, key, counter), mac, key) == reading


# Half a resolution step of each format (temperature, humidity, voltage).
TOLERANCE = {
    (Format.BTHOME_V2, False): (0.005, 0.005, 0.0005),
    (Format.BTHOME_V2, True): (0.005, 0.005, 0.0005),
    (Format.BTHOME_V1, False): (0.005, 0.005, 0.0005),
    (Format.BTHOME_V1, True): (0.005, 0.005, 0.0005),
    (Format.PVVX, False): (0.005, 0.005, 0.0005),
    (Format.PVVX, True): (0.005, 0.005, 0.0),
    (Format.ATC1441, False): (0.05, 0.5, 0.0005),
    (Format.ATC1441, True): (0.25, 0.25, 0.0),
}


@ROUND_TRIP
@given(
    fmt=st.sampled_from(sorted({f for f, _ in TOLERANCE})),
    encrypted=st.booleans(),
    temperature=st.floats(-40, 85),
    humidity=st.floats(0, 100),
    voltage=st.floats(2.0, 3.3),
    battery=st.integers(0, 100),
    key=KEYS,
    mac=MACS,
)
def test_off_grid_values_round_to_the_format_resolution(
    *,
    fmt: Format,
    encrypted: bool,
    temperature: float,
    humidity: float,
    voltage: float,
    battery: int,
    key: bytes,
    mac: str,
) -> None:
    """What a sensor measures, as each format can carry it: within half a step of the truth."""
    reading = Reading(
        format=fmt,
        encrypted=encrypted,
        temperature=temperature,
        humidity=humidity,
        battery=battery,
        voltage=voltage,
        packet_id=1 if not encrypted else None,
    )
    result = parse(*encode(reading, mac, key, 1), mac, key)
    assert isinstance(result, Reading)
    dt, dh, dv = TOLERANCE[fmt, encrypted]
    assert result.temperature is not None and abs(result.temperature - temperature) <= dt + 1e-9
    assert result.humidity is not None and abs(result.humidity - humidity) <= dh + 1e-9
    if dv:
        assert result.voltage is not None and abs(result.voltage - voltage) <= dv + 1e-9
    assert result.battery == battery


@ROUND_TRIP
@given(case=ALL_CASES, other_key=KEYS)
def test_other_key_never_decrypts(case: Case, other_key: bytes) -> None:
    reading, mac, key, counter = case
    if key is None or key == other_key:
        return
    assert parse(*encode(reading, mac, key, counter), mac, other_key) == NotDecodable(Reason.DECRYPT_FAILED)


@ROUND_TRIP
@given(case=ALL_CASES)
def test_advertising_data_carries_the_payload(case: Case) -> None:
    reading, mac, key, counter = case
    uuid16, payload = encode(reading, mac, key, counter)
    assert split_ad(advertising_data(uuid16, payload)) == {uuid16: payload}
