"""Vector suite for ble_exporter.parser: every published capture we found, each compared whole with ==.

Sources are named per row (see ../shared/spec/advertisement-formats.md for the byte-level notes).
Captures given as a full AD element ("0e 16 d2 fc ...") or as an HCI LE Advertising Report go through
`ad()` / `hci()`, which strip the framing the same way BlueZ/bleak do before we see the service data.
"""

from __future__ import annotations

import dataclasses
import random
import re
import struct
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import mutate

from ble_exporter.parser import (
    MAX_PAYLOAD,
    OBJECT_TYPES,
    SERVICE_UUIDS,
    VARIABLE,
    Format,
    NoReading,
    NotDecodable,
    Reading,
    Reason,
    parse,
)

V2, V1, V1_ENC, ENV, MI = 0xFCD2, 0x181C, 0x181E, 0x181A, 0xFE95
PARSER_REASONS = set(Reason) - {Reason.REPLAY, Reason.DOWNGRADE}  # those two are the engine's to decide

MAC_PVVX = "A4:C1:38:AA:BB:CC"  # pvvx atc_mi_format_test.py samples
MAC_BTHOME = "54:48:E6:8F:80:A5"  # bthome.io encryption page / bthome-ble tests
KEY_PVVX = bytes.fromhex("aa" * 16)  # pvvx atc_mi_format_test.py ref_key_descriptor
KEY_BTHOME = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")  # bthome.io/encryption
KEY_WRONG = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db933")

MAC_A3 = "A4:C1:38:07:FC:EE"
ND = NotDecodable
COUNTER_00112233 = 0x33221100  # counter bytes "00 11 22 33" read little-endian


def h(text: str) -> bytes:
    """Hex with spaces allowed."""
    return bytes.fromhex(text)


def split_ad(raw: bytes) -> dict[int, bytes]:
    """Service data (AD type 0x16) of raw advertising data: {uuid16: payload after the UUID}."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(raw):
        length = raw[pos]
        element = raw[pos + 1 : pos + 1 + length]
        if length >= 3 and element[0] == 0x16:
            out[int.from_bytes(element[1:3], "little")] = element[3:]
        pos += 1 + length
    return out


def ad(text: str) -> tuple[int, bytes]:
    """(uuid16, payload) of advertising data holding exactly one service-data element."""
    ((uuid16, payload),) = split_ad(h(text)).items()
    return uuid16, payload


def hci(text: str) -> tuple[str, int, bytes]:
    """(advertiser MAC, uuid16, payload) of an HCI LE Advertising Report `04 3e .. 02 01 ..` + RSSI."""
    raw = h(text)
    mac = raw[7:13][::-1].hex(":").upper()
    uuid16, payload = ad(raw[14 : 14 + raw[13]].hex())
    return mac, uuid16, payload


def atc(**kw: Any) -> Reading:
    return Reading(format=Format.ATC1441, **kw)


def pvvx(**kw: Any) -> Reading:
    return Reading(format=Format.PVVX, **kw)


def v1(**kw: Any) -> Reading:
    return Reading(format=Format.BTHOME_V1, **kw)


def v2(**kw: Any) -> Reading:
    return Reading(format=Format.BTHOME_V2, **kw)


def mi(**kw: Any) -> Reading:
    return Reading(format=Format.MIJIA, **kw)


def row(vid: str, frame: tuple[int, bytes], mac: str, key: bytes | None, expected: Reading) -> Any:
    return pytest.param(frame[0], frame[1], mac, key, expected, id=vid)


_A2 = hci("043e1d02010000f4830238c1a411 10161a18a4c1380283f400a22f5f0bf819 df")
_C2 = hci("043e1f02010000f4830238c1a413 12161a18f4830238c1a4a9066911b60b58f70d de")
_B8 = hci("043E1A02010000A5808FE648540E 0201060A16D2FC4002CA0903BF13 CC")
# custom-components/ble_monitor custom_components/ble_monitor/test/test_xiaomi_parser.py (HCI captures)
_X1 = hci("043e22020100004c94b438c1a416 151695fe50305b05034c94b438c1a40d10041001ea01 cf")
_X2 = hci("043e2a02010000f4830238c1a41e 0201061a1695fe58585b0550f4830238c1a495ef58763c26000097e2abb5 e2")
_X4 = hci("043e2a020100005f12342d585a1e 0201061a1695fe5858480b685f12342d585a0b1841e2aa000e00a4964fb5 b6")
_X5 = hci("043e2a02010000892012342d581e 0201061a1695fe58586f0607892012342d585f176dd54f0200002fa453fa af")
_X7 = hci("043e2502010000219335342d5819 020106151695fe5020aa01da219335342d580d1004fe004802 c4")
KEY_X2 = bytes.fromhex("e9ea895fac7cca6d30532432a516f3a8")  # ble_monitor / xiaomi-ble LYWSD03MMC_encrypted
KEY_X4 = bytes.fromhex("814aac74c4f17b6c1581e1ab87816b99")  # CGG1
KEY_X5 = bytes.fromhex("a3bfe9853dd85a620debe3620caaa351")  # CGDK2
MAC_X6 = "58:2D:34:3B:2E:BF"

VECTORS = [
    # --- atc1441 (0x181A, 13 bytes, big-endian) ---
    # pvvx python-interface/atc_mi_interface/atc_mi_format_test.py "atc1441"
    row("A1", ad("10 16 1a 18 a4 c1 38 aa bb cc 00 ce 33 43 0a 6e c3"), MAC_PVVX, None,
        atc(temperature=20.6, humidity=51.0, battery=67, voltage=2.67, packet_id=195, mac=MAC_PVVX)),
    # ble_monitor custom_components/ble_monitor/test/test_atc_parser.py test_atc_atc1441 (HCI capture)
    row("A2", _A2[1:], _A2[0], None,
        atc(temperature=16.2, humidity=47.0, battery=95, voltage=3.064, packet_id=25, mac=_A2[0])),
    # comment in a public Aruba-WSS plugin (advertisement-formats.md §3.1)
    row("A3", ad("10 16 1a 18 a4 c1 38 07 fc ee 00 ed 24 29 0a 3f 08"), MAC_A3, None,
        atc(temperature=23.7, humidity=36.0, battery=41, voltage=2.623, packet_id=8, mac=MAC_A3)),
    # pvvx atc_mi_format_test.py "atc1441_enc" (key aa×16): plaintext 76 32 d6
    row("A4enc", ad("0b 16 1a 18 bd e9 b7 5d b8 56 f3 03"), MAC_PVVX, KEY_PVVX,
        atc(encrypted=True, temperature=19.0, humidity=25.0, battery=86, packet_id=0xBD, counter=0xBD,
            flags=0x04)),
    # --- pvvx custom (0x181A, 15 bytes, little-endian, MAC reversed) ---
    # pvvx atc_mi_format_test.py "custom"
    row("C1", ad("12 16 1a 18 cc bb aa 38 c1 a4 6c 07 fa 13 d6 0a 52 09 0f"), MAC_PVVX, None,
        pvvx(temperature=19.0, humidity=51.14, battery=82, voltage=2.774, packet_id=9, mac=MAC_PVVX,
             power=True, opening=True, flags=0x0F)),
    # ble_monitor test_atc_parser.py test_atc_custom (HCI capture)
    row("C2", _C2[1:], _C2[0], None,
        pvvx(temperature=17.05, humidity=44.57, battery=88, voltage=2.998, packet_id=247, mac=_C2[0],
             power=False, opening=True, flags=0x0D)),
    # pvvx atc_mi_format_test.py "custom_enc" (key aa×16): plaintext 6c 07 f9 13 51 0f
    row("C3enc", ad("0e 16 1a 18 bd 86 c5 3f fa b9 00 c1 51 58 59"), MAC_PVVX, KEY_PVVX,
        pvvx(encrypted=True, temperature=19.0, humidity=51.13, battery=81, packet_id=0xBD, counter=0xBD,
             power=True, opening=True, flags=0x0F)),
    # --- BTHome v1 (0x181C plain, 0x181E encrypted) ---
    # bthome.io/v1 (home-assistant/bthome.io src/v1.html) example
    row("V1a", ad("0B 16 1C 18 23 02 C4 09 03 03 BF 13"), MAC_PVVX, None,
        v1(temperature=25.0, humidity=50.55)),
    # pvvx atc_mi_format_test.py "bt_home (temp, humidity, batt%)"
    row("V1b", ad("11 16 1c 18 02 00 56 23 02 6c 07 03 03 ff 13 02 01 4e"), MAC_PVVX, None,
        v1(packet_id=86, temperature=19.0, humidity=51.19, battery=78)),
    # pvvx atc_mi_format_test.py "bt_home (batt v)"
    row("V1c", ad("0d 16 1c 18 02 00 63 02 10 01 03 0c d9 0a"), MAC_PVVX, None,
        v1(packet_id=99, power=True, voltage=2.777)),
    # bthome-ble tests/test_parser_v1.py test_bindkey_correct
    row("V1d", (V1_ENC, h("fb a4 35 e4 d3 c3 12 fb 00 11 22 33 57 d9 0a 99")), MAC_BTHOME, KEY_BTHOME,
        v1(encrypted=True, temperature=25.06, humidity=50.55, counter=COUNTER_00112233)),
    # pvvx atc_mi_format_test.py "bt_home_enc (temp, humidity, batt%)", counter 46031
    row("V1e", ad("16 16 1e 18 83 93 db a2 55 4c d8 04 be ab 78 cf b3 00 00 7d 6a 1c d2"), MAC_PVVX, KEY_PVVX,
        v1(encrypted=True, temperature=9.0, humidity=50.0, battery=87, counter=46031)),
    # pvvx atc_mi_format_test.py "bt_home_enc (batt v)": plaintext 02 10 01 03 0c ef 0a
    row("V1f", ad("12 16 1e 18 12 79 94 44 eb 3a 3f e4 b3 00 00 59 62 3a 29"), MAC_PVVX, KEY_PVVX,
        v1(encrypted=True, power=True, voltage=2.799, counter=46052)),
    # --- BTHome v2 (0xFCD2) ---
    # bthome.io/format worked example (full advertisement with flags and local name "DIY-sensor")
    row("B1", ad("020106 0B094449592D73656E736F72 0A16D2FC4002C40903BF13"), MAC_BTHOME, None,
        v2(temperature=25.0, humidity=50.55)),
    # bthome-ble tests/test_parser_v2.py test_bthome_temperature_humidity (ATC_8D18B2)
    row("B2", (V2, h("40 02 ca 09 03 bf 13")), "A4:C1:38:8D:18:B2", None,
        v2(temperature=25.06, humidity=50.55)),
    # bthome-ble test_parser_v2.py test_bthome_packet_id_temperature_humidity_battery
    row("B3", (V2, h("40 00 09 01 5d 02 5d 09 03 b7 18")), MAC_BTHOME, None,
        v2(packet_id=9, battery=93, temperature=23.97, humidity=63.27)),
    # bthome-ble test_parser_v2.py test_bthome_voltage
    row("B4", (V2, h("40 0c 02 0c")), MAC_BTHOME, None, v2(voltage=3.074)),
    # bthome-ble test_parser_v2.py test_bthome_temperature_2 (object 0x45, ×0.1)
    row("B5", (V2, h("40 45 11 01")), MAC_BTHOME, None, v2(temperature=27.3)),
    # bthome-ble test_parser_v2.py test_shelly_blu_ht_display_zb: light (0x1E) skipped by length
    row("B6", (V2, h("40 00 2e 01 64 1e 01 2e 34 45 16 01")), MAC_BTHOME, None,
        v2(packet_id=46, battery=100, humidity=52.0, temperature=27.8)),
    # bthome-ble test_parser_v2.py test_bthome_with_mac: MAC in payload, pressure (not exported)
    row("B7", (V2, h("42 b2 18 8d 38 c1 a4 04 13 8a 01")), "A4:C1:38:8D:18:B2", None,
        v2(mac="A4:C1:38:8D:18:B2")),
    # ble_monitor custom_components/ble_monitor/test/test_bthome_v2.py (HCI capture)
    row("B8", _B8[1:], _B8[0], None, v2(temperature=25.06, humidity=50.55)),
    # pvvx atc_mi_format_test.py (bt_home_v2 data1)
    row("P1", ad("0e 16 d2 fc 40 00 d6 01 50 02 80 07 03 8a 13"), MAC_PVVX, None,
        v2(packet_id=214, battery=80, temperature=19.2, humidity=50.02)),
    # pvvx atc_mi_format_test.py (bt_home_v2 data2, older firmware without opening)
    row("P2", ad("0b 16 d2 fc 40 00 d9 0c d1 0a 10 00"), MAC_PVVX, None,
        v2(packet_id=217, voltage=2.769, power=False)),
    # pvvx/ATC_MiThermometer issue #740: data1 and data2 share packet id 176 (fw 5.5)
    row("P3a", (V2, h("40 00 b0 01 51 02 8d 0a 03 8d 11")), MAC_PVVX, None,
        v2(packet_id=176, battery=81, temperature=27.01, humidity=44.93)),
    row("P3b", (V2, h("40 00 b0 0c 20 0b 10 00 11 01")), MAC_PVVX, None,
        v2(packet_id=176, voltage=2.848, power=False, opening=True)),
    # theengs/decoder PR #653
    row("P4a", (V2, h("40 00 84 01 64 02 1f 08 03 14 1c")), MAC_PVVX, None,
        v2(packet_id=132, battery=100, temperature=20.79, humidity=71.88)),
    row("P4b", (V2, h("40 00 81 0c da 0b 10 01 11 01")), MAC_PVVX, None,
        v2(packet_id=129, voltage=3.034, power=True, opening=True)),
    # JsBergbau/MiTemperature2 #154: battery is 100 % (0x64), not 1 %
    row("P5", ad("02 01 06 0e 16 d2 fc 40 00 1b 01 64 02 c8 08 03 6c 1a"), "A4:C1:38:3E:B3:93", None,
        v2(packet_id=27, battery=100, temperature=22.48, humidity=67.64)),
    # bthome.io/encryption; bthome-ble test_parser_v2.py test_same_service_data
    row("E1", (V2, h("41 e4 45 f3 c9 96 2b 33 22 11 00 6c 7c 45 19")), MAC_BTHOME, KEY_BTHOME,
        v2(encrypted=True, temperature=25.06, humidity=50.55, counter=1122867)),
    # bthome-ble tests/test_v2_encryption.py example 1; test_parser_v2.py test_bindkey_correct
    row("E2", (V2, h("41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14")), MAC_BTHOME, KEY_BTHOME,
        v2(encrypted=True, temperature=25.06, humidity=50.55, counter=COUNTER_00112233)),
    # bthome-ble test_v2_encryption.py example 2: motion (0x21) only, not exported
    row("E3", (V2, h("41 87 b9 00 11 22 33 72 b0 23 1f")), MAC_BTHOME, KEY_BTHOME,
        v2(encrypted=True, counter=COUNTER_00112233)),
    # bthome-ble test_parser_v2.py test_bthome_with_mac_encrypted: nonce uses the payload MAC
    row("E4", (V2, h("43 a5 80 8f e6 48 54 f1 96 c0 6f fb 49 00 11 22 33 f0 8e cb de")),
        MAC_BTHOME, KEY_BTHOME,
        v2(encrypted=True, temperature=25.06, humidity=50.55, counter=COUNTER_00112233, mac=MAC_BTHOME)),
    # pvvx atc_mi_format_test.py (bt_home_v2 encrypted data1), counter 9904
    row("E5", ad("14 16 d2 fc 41 95 b0 ef da 78 9d d9 53 b0 26 00 00 93 41 62 6f"), MAC_PVVX, KEY_PVVX,
        v2(encrypted=True, battery=80, temperature=19.2, humidity=62.22, counter=9904)),
    # pvvx atc_mi_format_test.py (bt_home_v2 encrypted data2), counter 9913
    row("E6", ad("11 16 d2 fc 41 d4 6c c8 e7 74 b9 26 00 00 cb d8 4a 40"), MAC_PVVX, KEY_PVVX,
        v2(encrypted=True, voltage=2.764, power=False, counter=9913)),
    # --- MiBeacon, pvvx "Mijia (MiHome)" format and Xiaomi's own firmware (0xFE95) ---
    # pvvx atc_mi_format_test.py "mi_like (temp, humidity)": frame control 0x5850, 0x100D: 0x00be, 0x0200
    row("M1", ad("15 16 95 fe 50 58 5b 05 1b cc bb aa 38 c1 a4 0d 10 04 be 00 00 02"), MAC_PVVX, None,
        mi(temperature=19.0, humidity=51.2, packet_id=0x1B, mac=MAC_PVVX)),
    # pvvx atc_mi_format_test.py "mi_like (batt)": 0x100A
    row("M2", ad("12 16 95 fe 50 58 5b 05 22 cc bb aa 38 c1 a4 0a 10 01 4f"), MAC_PVVX, None,
        mi(battery=79, packet_id=0x22, mac=MAC_PVVX)),
    # pvvx atc_mi_format_test.py "mi_like_enc (temperature)" (key aa×16): plaintext 04 10 02 be 00,
    # counter f4 + extended b3 00 00
    row("M3enc", ad("1a 16 95 fe 58 58 5b 05 f4 cc bb aa 38 c1 a4 13 df 92 a8 1c b3 00 00 ac c4 6f da"),
        MAC_PVVX, KEY_PVVX, mi(encrypted=True, temperature=19.0, counter=0xB3F4, mac=MAC_PVVX)),
    # pvvx atc_mi_format_test.py "mi_like_enc (humidity %)": plaintext 06 10 02 c2 01
    row("M4enc", ad("1a 16 95 fe 58 58 5b 05 95 cc bb aa 38 c1 a4 d5 25 d9 74 ec 14 00 00 9b e1 de 3c"),
        MAC_PVVX, KEY_PVVX, mi(encrypted=True, humidity=45.0, counter=0x1495, mac=MAC_PVVX)),
    # pvvx atc_mi_format_test.py "mi_like_enc (battery %)": plaintext 0a 10 01 43
    row("M5enc", ad("19 16 95 fe 58 58 5b 05 ed cc bb aa 38 c1 a4 de 6d f0 74 b3 00 00 f2 ef 0e 53"),
        MAC_PVVX, KEY_PVVX, mi(encrypted=True, battery=67, counter=0xB3ED, mac=MAC_PVVX)),
    # ble_monitor test_xiaomi_parser.py test_Xiaomi_LYWSD03MMC (= xiaomi-ble tests/test_parser.py
    # test_Xiaomi_LYWSD03MMC): stock firmware, MiBeacon V3 (0x3050) plain
    row("X1", _X1[1:], _X1[0], None, mi(temperature=27.2, humidity=49.0, packet_id=3, mac=_X1[0])),
    # ble_monitor test_Xiaomi_LYWSD03MMC_encrypted (= xiaomi-ble ..._encrypted): stock firmware, 0x1006
    # 0x01d3 = 46.7 % (ble_monitor asserts 46.7; xiaomi-ble truncates to 46)
    row("X2enc", _X2[1:], _X2[0], KEY_X2, mi(encrypted=True, humidity=46.7, counter=0x2650, mac=_X2[0])),
    # xiaomi-ble test_Xiaomi_MHO_C401: product id 0x0387, V3 plain, the same objects as X1
    row("X3", (MI, h("50 30 87 03 03 4c 94 b4 38 c1 a4 0d 10 04 10 01 ea 01")), "A4:C1:38:B4:94:4C", None,
        mi(temperature=27.2, humidity=49.0, packet_id=3, mac="A4:C1:38:B4:94:4C")),
    # ble_monitor test_Xiaomi_CGG1 (= xiaomi-ble test_Xiaomi_CGG1): product id 0x0B48, 0x1006 59.6 %
    row("X4enc", _X4[1:], _X4[0], KEY_X4, mi(encrypted=True, humidity=59.6, counter=0x0E0068, mac=_X4[0])),
    # ble_monitor test_Xiaomi_CGDK2 (= xiaomi-ble test_Xiaomi_CGDK2): product id 0x066F, 0x1004 22.6 °C
    row("X5enc", _X5[1:], _X5[0], KEY_X5, mi(encrypted=True, temperature=22.6, counter=0x0207, mac=_X5[0])),
    # xiaomi-ble test_Xiaomi_LYWSDCGQ: V2 (0x2050), two objects, 0x100D then 0x100A (xiaomi-ble also
    # reports a voltage of 1.272 V derived from the percentage: the frame carries none)
    row("X6", (MI, h("50 20 aa 01 a3 bf 2e 3b 34 2d 58 0d 10 04 b4 00 95 02 0a 10 01 3b")), MAC_X6, None,
        mi(temperature=18.0, humidity=66.1, battery=59, packet_id=0xA3, mac=MAC_X6)),
    # ble_monitor test_Xiaomi_LYWSDCGQ
    row("X7", _X7[1:], _X7[0], None, mi(temperature=25.4, humidity=58.4, packet_id=0xDA, mac=_X7[0])),
]  # fmt: skip


@pytest.mark.parametrize(("uuid16", "payload", "mac", "key", "expected"), VECTORS)
def test_published_vector(uuid16: int, payload: bytes, mac: str, key: bytes | None, expected: Reading) -> None:
    assert parse(uuid16, payload, mac, key) == expected


def _is_subset(part: Reading, whole: Reading) -> bool:
    """Every field of `part` is unset or equal to the same field of `whole`."""
    if (part.format, part.encrypted) != (whole.format, whole.encrypted):
        return False
    return all(
        getattr(part, f.name) is None or getattr(part, f.name) == getattr(whole, f.name)
        for f in dataclasses.fields(Reading)
    )


@pytest.mark.parametrize(("uuid16", "payload", "mac", "key", "expected"), VECTORS)
def test_truncated_at_every_byte(uuid16: int, payload: bytes, mac: str, key: bytes | None, expected: Reading) -> None:
    """Each prefix is NotDecodable or a Reading with fewer fields: never an exception, never new values."""
    for cut in range(len(payload)):
        result = parse(uuid16, payload[:cut], mac, key)
        if isinstance(result, NotDecodable):
            assert result.reason in PARSER_REASONS
        else:
            assert isinstance(result, Reading) and _is_subset(result, expected), (cut, result)


@pytest.mark.parametrize(("uuid16", "payload", "mac", "key", "expected"), VECTORS)
def test_every_single_bit_flip(uuid16: int, payload: bytes, mac: str, key: bytes | None, expected: Reading) -> None:
    """Flipping any one bit never raises; in encrypted packets it always fails authentication."""
    for i in range(len(payload) * 8):
        mutated = bytearray(payload)
        mutated[i // 8] ^= 1 << (i % 8)
        result = parse(uuid16, bytes(mutated), mac, key)
        assert isinstance(result, (Reading, NoReading, NotDecodable))
        if uuid16 == MI and expected.encrypted and i < 16:
            # MiBeacon's frame control is not authenticated (nonce: MAC, product id, counter; AAD: 0x11).
            # A flip there is caught, reads as plaintext (the engine's downgrade check), has no objects,
            # or changes a bit that changes nothing (reserved, registered, auth mode, version 5 -> 4).
            assert (
                isinstance(result, (NotDecodable, NoReading))
                or (isinstance(result, Reading) and not result.encrypted)
                or result == expected
            ), (i, result)
        elif expected.encrypted and not (uuid16 == V2 and i == 0):
            # Everything is authenticated (the device-info byte is in the nonce) except BTHome v2's
            # encryption bit itself: cleared, the packet reads as plaintext - the engine's downgrade check.
            assert isinstance(result, NotDecodable), (i, result)


NEGATIVE = [
    # bthome-ble test_parser_v2.py test_bthome_wrong_object_id: first id not in the spec
    pytest.param(V2, "40 fe ca 09", MAC_BTHOME, None, ND(Reason.UNKNOWN_OBJECT), id="wrong-object-id"),
    # bthome-ble test_parser_v2.py (wrong order): the walk stops at 0xfe, battery before it is kept
    pytest.param(V2, "40 01 5d fe 5d 09 03 b7 18", MAC_BTHOME, None, v2(battery=93),
                 id="stops-at-unknown-id"),
    # bthome-ble test_parser_v2.py test_bthome_encryption_too_short
    pytest.param(V2, "41 ba 0d b0 7a ee f6 00", MAC_BTHOME, KEY_BTHOME, NotDecodable(Reason.TRUNCATED),
                 id="encrypted-too-short"),
    # E2 with a wrong bindkey (bthome-ble test_bindkey_wrong) / without one / from another MAC
    pytest.param(V2, "41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14", MAC_BTHOME, KEY_WRONG,
                 NotDecodable(Reason.DECRYPT_FAILED), id="wrong-key"),
    pytest.param(V2, "41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14", MAC_BTHOME, None,
                 NotDecodable(Reason.ENCRYPTED_NO_KEY), id="no-key"),
    pytest.param(V2, "41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14", MAC_PVVX, KEY_BTHOME,
                 NotDecodable(Reason.DECRYPT_FAILED), id="nonce-from-other-mac"),
    pytest.param(V2, "41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14", MAC_BTHOME, KEY_BTHOME[:15],
                 NotDecodable(Reason.DECRYPT_FAILED), id="key-not-16-bytes"),
    pytest.param(V2, "41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14", "not a mac", KEY_BTHOME,
                 NotDecodable(Reason.MAC_MISMATCH), id="advertiser-not-a-mac"),
    pytest.param(V2, "41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14", "ZZ:48:E6:8F:80:A5", KEY_BTHOME,
                 ND(Reason.MAC_MISMATCH), id="advertiser-not-hex"),
    pytest.param(ENV, "bd e9 b7 5d b8 56 f3 03", "A4-C1-38-AA-BB-CC", KEY_PVVX, ND(Reason.MAC_MISMATCH),
                 id="atc1441-enc-advertiser-not-a-mac"),
    # bthome-ble test_parser_v2.py test_bthome_has_incorrect_version: version bits 1 and 3
    pytest.param(V2, "20 02 ca 09 03 bf 13", MAC_BTHOME, None, ND(Reason.UNSUPPORTED_VERSION), id="v2-is-v1"),
    pytest.param(V2, "60 02 ca 09 03 bf 13", MAC_BTHOME, None, ND(Reason.UNSUPPORTED_VERSION), id="v2-is-v3"),
    # empty service data on every UUID, and an unknown UUID (0x1809 Health Thermometer)
    pytest.param(V2, "", MAC_BTHOME, None, NotDecodable(Reason.TRUNCATED), id="empty-v2"),
    pytest.param(V1, "", MAC_BTHOME, None, v1(), id="empty-v1"),
    pytest.param(V1_ENC, "", MAC_BTHOME, KEY_BTHOME, NotDecodable(Reason.TRUNCATED), id="empty-v1-enc"),
    pytest.param(ENV, "", MAC_PVVX, None, NotDecodable(Reason.BAD_LENGTH), id="empty-181a"),
    pytest.param(MI, "", MAC_PVVX, None, NotDecodable(Reason.TRUNCATED), id="empty-fe95"),
    pytest.param(0x1809, "50 58 5b 05 1b cc bb aa 38 c1 a4 0d 10 04 be 00 00 02", MAC_PVVX, None,
                 NotDecodable(Reason.UNKNOWN_UUID), id="unknown-uuid"),
    # a device-info byte and nothing else is a valid, empty packet (as is an empty v1 packet above)
    pytest.param(V2, "40", MAC_BTHOME, None, v2(), id="v2-no-objects"),
    # MAC-included bit but the MAC is cut short
    pytest.param(V2, "42 b2 18 8d", MAC_BTHOME, None, NotDecodable(Reason.TRUNCATED), id="v2-mac-cut"),
    # A1/C1 sent from another address: the payload MAC must be the advertiser's
    pytest.param(ENV, "a4 c1 38 aa bb cc 00 ce 33 43 0a 6e c3", "A4:C1:38:AA:BB:CD", None,
                 NotDecodable(Reason.MAC_MISMATCH), id="atc1441-mac-mismatch"),
    pytest.param(ENV, "cc bb aa 38 c1 a4 6c 07 fa 13 d6 0a 52 09 0f", "A4:C1:38:AA:BB:CD", None,
                 NotDecodable(Reason.MAC_MISMATCH), id="custom-mac-mismatch"),
    # ... but the comparison does not care about the case of `mac`
    pytest.param(ENV, "a4 c1 38 aa bb cc 00 ce 33 43 0a 6e c3", MAC_PVVX.lower(), None,
                 atc(temperature=20.6, humidity=51.0, battery=67, voltage=2.67, packet_id=195, mac=MAC_PVVX),
                 id="atc1441-lower-case-mac"),
    # pvvx custom from firmware without trigger support: 14 bytes, no flags
    pytest.param(ENV, "cc bb aa 38 c1 a4 6c 07 fa 13 d6 0a 52 09", MAC_PVVX, None,
                 pvvx(temperature=19.0, humidity=51.14, battery=82, voltage=2.774, packet_id=9, mac=MAC_PVVX),
                 id="custom-14-bytes"),
    pytest.param(ENV, "cc bb aa 38 c1 a4 6c 07 fa 13 d6 0a", MAC_PVVX, None, NotDecodable(Reason.BAD_LENGTH),
                 id="181a-12-bytes"),
    pytest.param(ENV, "bd e9 b7 5d b8 56 f3 03", MAC_PVVX, None, NotDecodable(Reason.ENCRYPTED_NO_KEY),
                 id="atc1441-enc-no-key"),
    pytest.param(ENV, "bd 86 c5 3f fa b9 00 c1 51 58 59", MAC_PVVX, KEY_BTHOME, ND(Reason.DECRYPT_FAILED),
                 id="custom-enc-wrong-key"),
    pytest.param(V1_ENC, "83 93 db a2 55 4c d8 04 be ab 78 cf b3 00 00 7d 6a 1c d2", MAC_PVVX, None,
                 NotDecodable(Reason.ENCRYPTED_NO_KEY), id="v1-enc-no-key"),
    pytest.param(V1_ENC, "83 93 db a2 55 4c d8 04 be ab 78 cf b3 00 00 7d 6a 1c d2", MAC_PVVX, KEY_BTHOME,
                 NotDecodable(Reason.DECRYPT_FAILED), id="v1-enc-wrong-key"),
    # v1 control byte with length 0 cannot hold an object id
    pytest.param(V1, "00 02 ca 09", MAC_PVVX, None, NotDecodable(Reason.BAD_LENGTH), id="v1-ctrl-length-0"),
    # v1 object whose length runs past the end
    pytest.param(V1, "23 02 ca", MAC_PVVX, None, NotDecodable(Reason.TRUNCATED), id="v1-object-cut"),
    # one AD element cannot hold more than 252 bytes of service data
    pytest.param(V2, "40" + "00 01" * 126, MAC_PVVX, None, ND(Reason.BAD_LENGTH), id="over-252-bytes"),
    # --- MiBeacon ---
    # frames without objects: Magalex2x14/LYWSD03MMC-info README (stock firmware, 30-minute dump: this
    # 0x5830 frame with capability 0x08 between the encrypted ones) and xiaomi-ble tests/test_parser.py
    # test_blank_advertisements_then_encrypted: not a reading, not an error
    pytest.param(MI, "30 58 5b 05 bf 6b 87 2f 38 c1 a4 08", "A4:C1:38:2F:87:6B", KEY_PVVX, NoReading(Format.MIJIA),
                 id="mi-capability-frame"),
    pytest.param(MI, "30 58 5b 05 02 48 3c d4 38 c1 a4 08", "A4:C1:38:D4:3C:48", None, NoReading(Format.MIJIA),
                 id="mi-blank-frame"),
    pytest.param(MI, "30 58 5b 05 02 48 3c d4 38 c1 a4 08", "A4:C1:38:D4:3C:49", None, ND(Reason.MAC_MISMATCH),
                 id="mi-blank-frame-other-advertiser"),
    pytest.param(MI, "30 58 5b 05 02 48 3c d4 38 c1", "A4:C1:38:D4:3C:48", None, ND(Reason.TRUNCATED),
                 id="mi-mac-cut"),
    pytest.param(MI, "30 58 5b 05 02 48 3c d4 38 c1 a4", "A4:C1:38:D4:3C:48", None, ND(Reason.TRUNCATED),
                 id="mi-capability-cut"),
    # M3enc without the key, with a wrong one, from another advertiser, cut short
    pytest.param(MI, "58 58 5b 05 f4 cc bb aa 38 c1 a4 13 df 92 a8 1c b3 00 00 ac c4 6f da", MAC_PVVX, None,
                 ND(Reason.ENCRYPTED_NO_KEY), id="mi-enc-no-key"),
    pytest.param(MI, "58 58 5b 05 f4 cc bb aa 38 c1 a4 13 df 92 a8 1c b3 00 00 ac c4 6f da", MAC_PVVX, KEY_BTHOME,
                 ND(Reason.DECRYPT_FAILED), id="mi-enc-wrong-key"),
    pytest.param(MI, "58 58 5b 05 f4 cc bb aa 38 c1 a4 13 df 92 a8 1c b3 00 00 ac c4 6f da", MAC_BTHOME, KEY_PVVX,
                 ND(Reason.MAC_MISMATCH), id="mi-enc-other-advertiser"),
    pytest.param(MI, "58 58 5b 05 f4 cc bb aa 38 c1 a4 13 df b3 00 00 ac c4 6f da", MAC_PVVX, KEY_PVVX,
                 ND(Reason.TRUNCATED), id="mi-enc-object-cut"),
    # newer Xiaomi objects are skipped, not rejected: xiaomi-ble test_Xiaomi_XMWSDJ04MMC (no MAC in the
    # frame, 0x5948: the nonce takes the advertiser's; plaintext 0x4C08 humidity as a float) and
    # test_Xiaomi_LYWSD02MMC (plaintext 0x4C02)
    pytest.param(MI, "48 59 03 12 a4 1b 77 6e 7c 96 ad d7 00 00 00 f2 bf 54 5b", "2C:11:65:25:70:04",
                 bytes.fromhex("b2cf9a553d53571b5657defd582d676e"), mi(encrypted=True, counter=0xA4),
                 id="mi-enc-no-mac-object-4c08"),
    pytest.param(MI, "48 59 03 12 a4 1b 77 6e 7c 96 ad d7 00 00 00 f2 bf 54 5b", "2C:11:65:25:70:05",
                 bytes.fromhex("b2cf9a553d53571b5657defd582d676e"), ND(Reason.DECRYPT_FAILED),
                 id="mi-enc-no-mac-other-advertiser"),
    pytest.param(MI, "48 59 03 12 a4 1b 77 6e 7c 96 ad d7 00 00 00 f2 bf 54 5b", "not a mac",
                 bytes.fromhex("b2cf9a553d53571b5657defd582d676e"), ND(Reason.MAC_MISMATCH),
                 id="mi-enc-no-mac-advertiser-not-a-mac"),
    pytest.param(MI, "58 58 e4 16 2c 84 53 56 38 c1 a4 2b 6e f2 e9 12 00 00 6c 88 4d 9e", "A4:C1:38:56:53:84",
                 bytes.fromhex("a115210eed7a88e50ad52662e732a9fb"),
                 mi(encrypted=True, counter=0x122C, mac="A4:C1:38:56:53:84"), id="mi-enc-object-4c02"),
    # legacy v2/v3 encryption is out of scope: xiaomi-ble test_bindkey_wrong_legacy (YLKG07YL, 0x3058)
    pytest.param(MI, "58 30 b6 03 d2 8b 98 c5 41 24 f8 c3 49 14 76 75 7e 00 00 00 99", "F8:24:41:C5:98:8B",
                 KEY_PVVX, ND(Reason.UNSUPPORTED_VERSION), id="mi-legacy-encryption"),
    # M1 with version 1, version 6 and the mesh bit
    pytest.param(MI, "50 18 5b 05 1b cc bb aa 38 c1 a4 0d 10 04 be 00 00 02", MAC_PVVX, None,
                 ND(Reason.UNSUPPORTED_VERSION), id="mi-version-1"),
    pytest.param(MI, "50 68 5b 05 1b cc bb aa 38 c1 a4 0d 10 04 be 00 00 02", MAC_PVVX, None,
                 ND(Reason.UNSUPPORTED_VERSION), id="mi-version-6"),
    pytest.param(MI, "d0 58 5b 05 1b cc bb aa 38 c1 a4 0d 10 04 be 00 00 02", MAC_PVVX, None,
                 ND(Reason.UNSUPPORTED_VERSION), id="mi-mesh"),
    # M1 cut: in its object, before it, and its header alone
    pytest.param(MI, "50 58 5b 05 1b cc bb aa 38 c1 a4 0d 10 04 be 00 00", MAC_PVVX, None, ND(Reason.TRUNCATED),
                 id="mi-object-cut"),
    pytest.param(MI, "50 58 5b 05 1b cc bb aa 38 c1 a4 0d 10", MAC_PVVX, None, ND(Reason.TRUNCATED),
                 id="mi-object-header-cut"),
    pytest.param(MI, "50 58 5b 05", MAC_PVVX, None, ND(Reason.TRUNCATED), id="mi-head-cut"),
    # X6 cut in its second object: the first is kept
    pytest.param(MI, "50 20 aa 01 a3 bf 2e 3b 34 2d 58 0d 10 04 b4 00 95 02 0a 10 01", MAC_X6, None,
                 mi(temperature=18.0, humidity=66.1, packet_id=0xA3, mac=MAC_X6), id="mi-second-object-cut"),
]  # fmt: skip


@pytest.mark.parametrize(("uuid16", "payload", "mac", "key", "expected"), NEGATIVE)
def test_negative_and_edge_cases(
    uuid16: int, payload: str, mac: str, key: bytes | None, expected: Reading | NotDecodable
) -> None:
    assert parse(uuid16, h(payload), mac, key) == expected


# Single objects from the bthome.io/format tables ("Example" -> "Result"), for every exported id, and
# unexported ids that must be skipped by their length (text/raw carry a length byte).
SINGLE_OBJECTS = [
    ("0009", v2(packet_id=9)),
    ("0161", v2(battery=97)),
    ("02CA09", v2(temperature=25.06)),
    ("03BF13", v2(humidity=50.55)),
    ("0C020C", v2(voltage=3.074)),
    ("1001", v2(power=True)),
    ("1100", v2(opening=False)),
    ("2E23", v2(humidity=35.0)),
    ("451101", v2(temperature=27.3)),
    ("4A020C", v2(voltage=307.4)),
    ("57EA", v2(temperature=-22.0)),
    ("58EA", v2(temperature=-7.7)),
    ("02F6FF", v2(temperature=-0.1)),
    ("530C48656C6C6F20576F726C6421 02CA09", v2(temperature=25.06)),  # text "Hello World!" skipped
    ("540C48656C6C6F20576F726C6421 03BF13", v2(humidity=50.55)),  # raw skipped
    ("04138A01 0C020C", v2(voltage=3.074)),  # pressure (3 bytes) skipped
    ("505d396164 1001", v2(power=True)),  # timestamp (4 bytes) skipped
    ("02CA09 F00100 F100010204 F2000106", v2(temperature=25.06)),  # device type / firmware ids skipped
    ("02CA09 4522FF", v2(temperature=25.06)),  # a second temperature does not overwrite the first
    ("0161 0009", v2(battery=97, packet_id=9)),  # out of order is accepted (spec asks senders, not us)
    ("5300", v2()),  # empty text object
    ("5305 4865", NotDecodable(Reason.TRUNCATED)),  # text longer than what is left
    ("53", NotDecodable(Reason.TRUNCATED)),  # text without its length byte
    ("02CA", NotDecodable(Reason.TRUNCATED)),
    ("30 01", NotDecodable(Reason.UNKNOWN_OBJECT)),  # 0x30-0x39 are not assigned
    ("02CA09 FF 00", v2(temperature=25.06)),
]


@pytest.mark.parametrize(("objects", "expected"), SINGLE_OBJECTS, ids=[o for o, _ in SINGLE_OBJECTS])
def test_bthome_v2_object(objects: str, expected: Reading | NotDecodable) -> None:
    assert parse(V2, h("40" + objects), MAC_BTHOME) == expected


def test_object_table_covers_the_spec() -> None:
    """Every id of bthome.io/format (and bthome-ble const.py) with its size; nothing else."""
    expected_ids = set(range(0x00, 0x30)) | {0x3A} | set(range(0x3C, 0x65)) | {0xF0, 0xF1, 0xF2}
    assert set(OBJECT_TYPES) == expected_ids
    sizes = {oid: spec.size for oid, spec in OBJECT_TYPES.items()}
    assert sizes[0x04] == 3 and sizes[0x3E] == 4 and sizes[0x50] == 4 and sizes[0xF1] == 4 and sizes[0xF2] == 3
    assert sizes[0x53] == sizes[0x54] == VARIABLE
    exported = {oid: spec.field for oid, spec in OBJECT_TYPES.items() if spec.field}
    assert exported == {
        0x00: "packet_id", 0x01: "battery", 0x02: "temperature", 0x03: "humidity", 0x0C: "voltage",
        0x10: "power", 0x11: "opening", 0x2E: "humidity", 0x45: "temperature", 0x4A: "voltage",
        0x57: "temperature", 0x58: "temperature",
    }  # fmt: skip


# MiBeacon objects after a pvvx plain head (0x5850, product 0x055B, frame counter 7, MAC_PVVX), built
# from the layout of pvvx src/mi_beacon.c / Xiaomi's object definitions: signed temperatures below
# zero, 0.1 % humidity, objects skipped by their length.
MI_HEAD = "50 58 5b 05 07 cc bb aa 38 c1 a4"
MI_OBJECTS = [
    # -1.7 °C (0xffef) and 81.2 %: AlexxIT/XiaomiGateway3 #126 saw -1.7 °C shown as 6551.8 °C (unsigned)
    ("0d 10 04 ef ff 2c 03", mi(temperature=-1.7, humidity=81.2)),
    ("04 10 02 9c ff", mi(temperature=-10.0)),
    ("04 10 02 00 80", mi(temperature=-3276.8)),  # the s16 minimum
    ("04 10 02 ff 7f", mi(temperature=3276.7)),
    ("06 10 02 e8 03", mi(humidity=100.0)),
    ("06 10 02 d3 01", mi(humidity=46.7)),  # 0.1 % kept: xiaomi-ble's test asserts 46 for this value
    ("0a 10 01 64", mi(battery=100)),
    # newer models' objects (0x4C01 temperature as a float, 0x4C02 humidity) are skipped, the rest kept
    ("01 4c 04 00 00 98 41 06 10 02 c2 01", mi(humidity=45.0)),
    ("02 4c 01 3a 0a 10 01 43", mi(battery=67)),
    ("08 4c 04 00 00 34 42", mi()),  # valid, nothing exported: a Reading without values (as BTHome's)
    ("04 10 01 9c 0a 10 01 43", mi(battery=67)),  # 0x1004 with one byte: skipped by its length
    ("0d 10 02 be 00 06 10 02 c2 01", mi(humidity=45.0)),  # 0x100D with two bytes: skipped
    ("04 10 02 be 00 04 10 02 00 00", mi(temperature=19.0)),  # the first temperature wins
    ("0d 10 04 be 00 00 02 04 10 02 00 00 06 10 02 00 00", mi(temperature=19.0, humidity=51.2)),
    ("04 10 02 be 00 0a", mi(temperature=19.0)),  # a stray byte after the last object is ignored
    ("00 00 00", mi()),  # an empty object
    ("04 10 02 be", ND(Reason.TRUNCATED)),
]


@pytest.mark.parametrize(("objects", "expected"), MI_OBJECTS, ids=[o for o, _ in MI_OBJECTS])
def test_mibeacon_object(objects: str, expected: Reading | NotDecodable) -> None:
    if isinstance(expected, Reading):
        expected = dataclasses.replace(expected, packet_id=7, mac=MAC_PVVX)
    assert parse(MI, h(MI_HEAD + objects), MAC_PVVX) == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        # 0x5870: MAC, capability (0x08), objects
        ("70 58 5b 05 07 cc bb aa 38 c1 a4 08", mi(temperature=19.0, packet_id=7, mac=MAC_PVVX)),
        # capability with the I/O bit: 2 bytes of I/O capability follow (Xiaomi's mible_beacon.c)
        ("70 58 5b 05 07 cc bb aa 38 c1 a4 28 01 00", mi(temperature=19.0, packet_id=7, mac=MAC_PVVX)),
        # bond ability 3: a 2-byte Wi-Fi MAC follows
        ("70 58 5b 05 07 cc bb aa 38 c1 a4 18 aa bb", mi(temperature=19.0, packet_id=7, mac=MAC_PVVX)),
        ("70 58 5b 05 07 cc bb aa 38 c1 a4 38 aa bb 01", ND(Reason.TRUNCATED)),
        # 0x5840: no MAC (pvvx's event frames), nothing to compare
        ("40 58 5b 05 07", mi(temperature=19.0, packet_id=7)),
        # reserved bits 0-2 and registered/solicited/auth-mode bits change nothing
        ("57 5f 5b 05 07 cc bb aa 38 c1 a4", mi(temperature=19.0, packet_id=7, mac=MAC_PVVX)),
        # versions 2-5 all decode plaintext (xiaomi-ble's V2/V3 captures above)
        ("50 28 5b 05 07 cc bb aa 38 c1 a4", mi(temperature=19.0, packet_id=7, mac=MAC_PVVX)),
        # the object bit clear: whatever follows, no reading
        ("10 58 5b 05 07 cc bb aa 38 c1 a4", NoReading(Format.MIJIA)),
        ("18 58 5b 05 07 cc bb aa 38 c1 a4", NoReading(Format.MIJIA)),
    ],
)
def test_mibeacon_frame_control(head: str, expected: Reading | NoReading | NotDecodable) -> None:
    assert parse(MI, h(head + " 04 10 02 be 00"), MAC_PVVX) == expected


def test_mibeacon_counter_is_frame_counter_plus_extended_counter() -> None:
    """M3enc: frame counter 0xf4, extended counter b3 00 00 (LE) -> one 32-bit counter, 0xf4 + 0xb3 << 8."""
    result = parse(MI, ad("1a 16 95 fe 58 58 5b 05 f4 cc bb aa 38 c1 a4 13 df 92 a8 1c b3 00 00 ac c4 6f da")[1],
                   MAC_PVVX, KEY_PVVX)  # fmt: skip
    assert isinstance(result, Reading) and result.counter == 46068 and result.packet_id is None


def test_v1_float_and_signed_objects() -> None:
    """v1 takes format and length from the control byte: float32 temperature, sint8 packet id."""
    temp_f32 = bytes((0x45, 0x02)) + struct.pack("<f", 2506.0)  # ctrl 0x45: float, 5 bytes incl. id
    assert parse(V1, temp_f32, MAC_PVVX) == v1(temperature=25.06)
    nan = bytes((0x45, 0x02)) + struct.pack("<f", float("nan"))
    assert parse(V1, nan + h("03 03 bf 13"), MAC_PVVX) == v1(humidity=50.55)
    assert parse(V1, h("22 02 fa"), MAC_PVVX) == v1(temperature=-0.06)  # sint, 1 value byte
    assert parse(V1, h("62 04 00 02 01 4e"), MAC_PVVX) == v1(battery=78)  # string-format object skipped
    assert parse(V1, h("02 ff 00 02 01 4e"), MAC_PVVX) == v1(battery=78)  # unknown id skipped by length


def test_service_uuids_are_bleaks_keys() -> None:
    assert SERVICE_UUIDS == {
        "0000fcd2-0000-1000-8000-00805f9b34fb": 0xFCD2,
        "0000181c-0000-1000-8000-00805f9b34fb": 0x181C,
        "0000181e-0000-1000-8000-00805f9b34fb": 0x181E,
        "0000181a-0000-1000-8000-00805f9b34fb": 0x181A,
        "0000fe95-0000-1000-8000-00805f9b34fb": 0xFE95,
    }


def test_names_are_short_snake_case_label_values() -> None:
    assert len({r.value for r in Reason}) == 10 and len({f.value for f in Format}) == 5
    for name in (*Reason, *Format):
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name) and str(name) == f"{name}" == name.value


@pytest.mark.parametrize(("uuid16", "payload", "mac", "key", "expected"), VECTORS)
def test_bindkey_never_in_result(uuid16: int, payload: bytes, mac: str, key: bytes | None, expected: Reading) -> None:
    for k in (key, KEY_WRONG):
        if k is None:
            continue
        result = parse(uuid16, payload, mac, k)
        text = repr(result) + str(result) + repr(dataclasses.asdict(result))
        assert k.hex() not in text.lower() and repr(k) not in text


def test_accepts_bytearray_and_memoryview() -> None:
    payload = h("40 02 ca 09 03 bf 13")
    expected = v2(temperature=25.06, humidity=50.55)
    assert parse(V2, cast(bytes, bytearray(payload)), MAC_BTHOME) == expected
    assert parse(V2, cast(bytes, memoryview(payload)), MAC_BTHOME) == expected


def test_rejections_allocate_nothing() -> None:
    """NotDecodable results are shared immutable instances (the hot path stays allocation-free)."""
    assert parse(V2, b"", MAC_BTHOME) is parse(V2, b"", MAC_BTHOME)


# --- never raises --------------------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
UUIDS = st.sampled_from([V2, V1, V1_ENC, ENV, MI, 0])
MACS = st.one_of(
    st.sampled_from([MAC_PVVX, MAC_BTHOME, "", "zz", "A4:C1:38:AA:BB"]),
    st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":").upper()),
)
KEYS = st.one_of(st.none(), st.sampled_from([KEY_PVVX, KEY_BTHOME, b"", b"short"]), st.binary(min_size=16, max_size=16))


@FUZZ
@given(uuid16=UUIDS, data=st.binary(max_size=MAX_PAYLOAD + 8), mac=MACS, key=KEYS)
def test_arbitrary_bytes_never_raise(uuid16: int, data: bytes, mac: str, key: bytes | None) -> None:
    result = parse(uuid16, data, mac, key)
    assert isinstance(result, (Reading, NoReading, NotDecodable))
    if isinstance(result, NotDecodable):
        assert result.reason in PARSER_REASONS


@FUZZ
@given(
    info=st.integers(0, 255),
    body=st.lists(st.sampled_from(sorted(OBJECT_TYPES)) | st.integers(0, 255), max_size=30),
    tail=st.binary(max_size=8),
)
def test_v2_object_soup_never_raises(info: int, body: list[int], tail: bytes) -> None:
    """Known ids in random order and count, so the walk goes deep instead of stopping at byte 1."""
    result = parse(V2, bytes([info, *body]) + tail, MAC_BTHOME, KEY_BTHOME)
    assert isinstance(result, (Reading, NotDecodable))


MI_IDS = [0x1004, 0x1006, 0x100A, 0x100D, 0x4C01, 0x4C02, 0x4C08, 0x1001, 0x0000, 0xFFFF]


@FUZZ
@given(
    control=st.sampled_from([0x5850, 0x5858, 0x5840, 0x5848, 0x5870, 0x5830, 0x3050, 0x2050]) | st.integers(0, 0xFFFF),
    objects=st.lists(
        st.tuples(st.sampled_from(MI_IDS) | st.integers(0, 0xFFFF), st.integers(0, 6), st.binary(max_size=6)),
        max_size=8,
    ),
    tail=st.binary(max_size=8),
    key=st.none() | st.just(KEY_PVVX),
)
def test_mibeacon_object_soup_never_raises(
    control: int, objects: list[tuple[int, int, bytes]], tail: bytes, key: bytes | None
) -> None:
    """Known and unknown object ids with right and wrong lengths behind any frame control."""
    body = b"".join(struct.pack("<HB", oid, size) + value for oid, size, value in objects)
    frame = struct.pack("<HHB", control, 0x055B, 7) + h("cc bb aa 38 c1 a4") + body + tail
    result = parse(MI, frame, MAC_PVVX, key)
    assert isinstance(result, (Reading, NoReading, NotDecodable))


PAYLOADS = [p.values[1] for p in VECTORS]  # what mutate splices in


@FUZZ
@given(index=st.integers(0, len(VECTORS) - 1), seed=st.integers(0, 2**32 - 1))
def test_mutated_vectors_never_raise(index: int, seed: int) -> None:
    uuid16, payload, mac, key, _ = VECTORS[index].values
    result = parse(uuid16, mutate(random.Random(seed), payload, PAYLOADS), mac, key)
    assert isinstance(result, (Reading, NoReading, NotDecodable))
