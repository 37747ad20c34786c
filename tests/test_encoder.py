"""ble_exporter.encoder: byte-exact against firmware captures, and encode -> parse round trips."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parser import KEY_BTHOME, KEY_PVVX, MAC_BTHOME, MAC_PVVX, VECTORS, h, split_ad

from ble_exporter.encoder import (
    MIJIA_PRODUCT_ID,
    advertising_data,
    encode,
    mijia_frame,
    seal_bthome_v1,
    seal_bthome_v2,
    seal_mijia,
    seal_pvvx,
)
from ble_exporter.parser import (
    Format,
    NoReading,
    NotDecodable,
    Reading,
    Reason,
    parse,
)

# Captures from other senders than pvvx firmware that use objects the encoder never writes
# (0x45/0x2E/light in B5/B6, pressure in B7, motion in E3), and MiBeacon frames of other models or of
# Xiaomi's older firmware (other product ids, frame controls 0x3050/0x2050, two objects in a frame):
# test_other_mibeacon_senders_are_reproduced_by_the_helpers rebuilds those.
NOT_FIRMWARE_LAYOUT = {"B5", "B6", "B7", "E3", "X1", "X3", "X4enc", "X5enc", "X6", "X7"}
FIRMWARE_VECTORS = [p for p in VECTORS if p.id not in NOT_FIRMWARE_LAYOUT]
VECTOR = {p.id: p.values for p in VECTORS}


@pytest.mark.parametrize(("uuid16", "payload", "mac", "key", "expected"), FIRMWARE_VECTORS)
def test_reproduces_capture_byte_for_byte(
    uuid16: int, payload: bytes, mac: str, key: bytes | None, expected: Reading
) -> None:
    """Same bytes as the device sent, including nonces/MICs of the encrypted ones."""
    assert encode(expected, mac, key, expected.counter or 0) == (uuid16, payload)


@pytest.mark.parametrize(
    ("vid", "objects", "frame_control", "product_id"),
    [
        ("X1", "0d 10 04 10 01 ea 01", 0x3050, 0x055B),
        ("X3", "0d 10 04 10 01 ea 01", 0x3050, 0x0387),  # MHO-C401
        ("X6", "0d 10 04 b4 00 95 02 0a 10 01 3b", 0x2050, 0x01AA),  # LYWSDCGQ
        ("X7", "0d 10 04 fe 00 48 02", 0x2050, 0x01AA),
        ("X4enc", "06 10 02 54 02", 0x5858, 0x0B48),  # CGG1: 59.6 %
        ("X5enc", "04 10 02 e2 00", 0x5858, 0x066F),  # CGDK2: 22.6 °C
    ],
)
def test_other_mibeacon_senders_are_reproduced_by_the_helpers(
    vid: str, objects: str, frame_control: int, product_id: int
) -> None:
    """The layout and the nonce are the same across models and firmware: only the head differs."""
    uuid16, payload, mac, key, expected = VECTOR[vid]
    if key is None:
        built = mijia_frame(h(objects), mac, expected.packet_id, frame_control=frame_control, product_id=product_id)
    else:
        built = seal_mijia(h(objects), mac, key, expected.counter, frame_control=frame_control, product_id=product_id)
    assert (uuid16, built) == (0xFE95, payload)


def test_mibeacon_without_a_mac_in_the_frame_uses_the_advertisers_in_the_nonce() -> None:
    objects = h("04 10 02 9c ff")  # -10.0 °C
    payload = seal_mijia(objects, MAC_PVVX, KEY_PVVX, 0x01020304, payload_mac=False)
    assert payload[:2] == h("48 58") and len(payload) == 5 + 5 + 7
    assert parse(0xFE95, payload, MAC_PVVX, KEY_PVVX) == Reading(
        format=Format.MIJIA, encrypted=True, temperature=-10.0, counter=0x01020304
    )
    assert parse(0xFE95, payload, MAC_BTHOME, KEY_PVVX) == NotDecodable(Reason.DECRYPT_FAILED)


def test_mibeacon_objects_of_newer_models_do_not_hide_the_others() -> None:
    """0x4C01 (temperature as a float) and 0x4C02 (humidity) are skipped; 0x100A after them is kept."""
    objects = h("01 4c 04 00 00 98 41") + h("02 4c 01 3a") + h("0a 10 01 43")
    payload = seal_mijia(objects, MAC_PVVX, KEY_PVVX, 77)
    assert parse(0xFE95, payload, MAC_PVVX, KEY_PVVX) == Reading(
        format=Format.MIJIA, encrypted=True, battery=67, counter=77, mac=MAC_PVVX
    )


def test_mibeacon_capability_frame_is_no_reading() -> None:
    # Magalex2x14/LYWSD03MMC-info: the stock firmware's frame between the encrypted ones
    frame = mijia_frame(b"", "A4:C1:38:2F:87:6B", 0xBF, frame_control=0x5830, capability=b"\x08")
    assert frame == h("30 58 5b 05 bf 6b 87 2f 38 c1 a4 08")
    assert parse(0xFE95, frame, "A4:C1:38:2F:87:6B") == NoReading(Format.MIJIA)


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
        (Reading(format=Format.MIJIA, packet_id=1), "carries temperature, humidity or battery"),
        (Reading(format=Format.MIJIA, humidity=7000.0, packet_id=1), "humidity"),
        (Reading(format=Format.MIJIA, temperature=-3300.0, packet_id=1), "temperature"),
        (Reading(format=Format.MIJIA, battery=20), "packet_id"),
        (Reading(format="mibeacon"), "unknown format"),  # type: ignore[arg-type]
    ],
)
def test_rejects_what_the_wire_cannot_carry(reading: Reading, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode(reading, MAC_PVVX)


@pytest.mark.parametrize("fmt", list(Format))
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
        (0xFE95, seal_mijia(garbage, MAC_BTHOME, KEY_BTHOME, 1), KEY_BTHOME),
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


@st.composite
def mijia_cases(draw: Callable[..., Any]) -> Case:
    """Any non-empty subset of temperature, humidity and battery on the 0.1 °C / 0.1 % grid (signed
    temperatures included); plain frames carry the frame counter, encrypted ones a 32-bit counter."""
    encrypted = draw(st.booleans())
    mac = draw(MACS)
    counter = draw(st.integers(0, 2**32 - 1))
    fields = draw(st.sets(st.sampled_from(["temperature", "humidity", "battery"]), min_size=1))
    reading = Reading(
        format=Format.MIJIA,
        encrypted=encrypted,
        temperature=draw(grid(-32768, 32767, 10)) if "temperature" in fields else None,
        humidity=draw(grid(0, 65535, 10)) if "humidity" in fields else None,
        battery=draw(U8) if "battery" in fields else None,
        packet_id=None if encrypted else draw(U8),
        counter=counter if encrypted else None,
        mac=mac,
    )
    return reading, mac, draw(KEYS) if encrypted else None, counter


ALL_CASES = st.one_of(
    bthome_cases(Format.BTHOME_V2), bthome_cases(Format.BTHOME_V1), pvvx_cases(), atc1441_cases(), mijia_cases()
)


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


@ROUND_TRIP
@given(case=mijia_cases())
def test_round_trip_mijia(case: Case) -> None:
    reading, mac, key, counter = case
    assert parse(*encode(reading, mac, key, counter), mac, key) == reading


def test_mijia_encodes_like_the_firmware() -> None:
    """Plain: temperature and humidity in one 0x100D, then 0x100A; encrypted: separate objects."""
    both = Reading(format=Format.MIJIA, temperature=-0.5, humidity=99.9, battery=5, packet_id=9)
    assert encode(both, MAC_PVVX) == (0xFE95, h("50 58 5b 05 09 cc bb aa 38 c1 a4 0d 10 04 fb ff e7 03 0a 10 01 05"))
    _, payload = encode(dataclasses.replace(both, encrypted=True, packet_id=None), MAC_PVVX, KEY_PVVX, 0x1234)
    assert payload[:11] == h("58 58 5b 05 34 cc bb aa 38 c1 a4") and payload[-7:-4] == h("12 00 00")
    assert len(payload) == 11 + 5 + 5 + 4 + 7 and MIJIA_PRODUCT_ID == 0x055B


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
    (Format.MIJIA, False): (0.05, 0.05, 0.0),
    (Format.MIJIA, True): (0.05, 0.05, 0.0),
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
