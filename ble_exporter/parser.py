"""Decoding of thermometer advertisements: bytes in, a Reading (or NoReading, or NotDecodable) out, never
an exception.

The engine relies on two names: parse(uuid16, data, mac, bindkey=None) -> Reading | NoReading |
NotDecodable, and SERVICE_UUIDS (bleak's 128-bit service-data keys -> the 16-bit UUID of every format
decoded).

Formats, dispatched on the 16-bit service-data UUID (``data`` is the service data after the UUID):

- 0xFCD2 BTHome v2, plain or AES-CCM encrypted, optionally with the MAC in the payload (bthome.io/format,
  bthome.io/encryption).
- 0x181C / 0x181E BTHome v1 (legacy), plain / encrypted (bthome.io/v1).
- 0x181A pvvx/atc1441 firmware, told apart by length: 15 (pvvx custom), 14 (pvvx custom from firmware
  built without the trigger flags byte), 13 (atc1441), 11 (encrypted pvvx custom), 8 (encrypted atc1441).
- 0xFE95 MiBeacon, the "Mijia (MiHome)" format of the pvvx firmware and of Xiaomi's own firmware, plain
  (v2-v5) or AES-CCM encrypted (v4/v5): frame control (2) · product id (2) · frame counter (1) · [MAC (6,
  reversed)] · [capability] · objects `[id u16][length u8][value]` · [extended counter (3) · MIC (4)]
  (pvvx src/mi_beacon.c; Xiaomi's mijia_ble_common mible_beacon.c). Objects exported: 0x1004
  temperature (s16 ×0.1 °C), 0x1006 humidity (u16 ×0.1 %), 0x100A battery (%), 0x100D temperature and
  humidity.

Choices made where the sources leave room (each is pinned by a test):

- BTHome v2 walks objects with lengths from OBJECT_TYPES (every id of the spec), so ids we do not export
  are skipped. An id that is not in the spec ends the walk; the objects before it are kept (as bthome-ble
  does). If the walk ends before a single complete object, the packet is NotDecodable. Ids out of
  ascending order are accepted (the spec asks senders for order; rejecting would only lose data).
  If a property occurs twice (e.g. two temperatures), the first one wins.
- A BTHome packet without objects (v2: just the device-info byte; v1: empty) is a valid, empty Reading.
- BTHome v2 "MAC included" (device-info bit 1): the payload MAC is reported in ``Reading.mac`` and used for
  the nonce; it is not compared with the advertiser address, because that bit exists for devices that
  advertise from random addresses.
- pvvx custom / atc1441 plain carry the sender's MAC; it must equal the advertiser address, otherwise the
  packet is ``mac_mismatch`` (0x181A is the SIG Environmental Sensing UUID, so other devices use it too).
- Encrypted pvvx custom / atc1441 have a one-byte frame counter in clear; it is returned as both
  ``packet_id`` and ``counter`` (it is the only replay-relevant number they carry, and it wraps at 256).
- Plain BTHome packets return ``counter=None``; encrypted ones return the counter and never a packet id
  that was not authenticated.
- MiBeacon: a frame without objects (the capability frame 0x5830 that Xiaomi's firmware, and older pvvx
  builds, send between data frames) is ``NoReading``: neither a reading nor a rejection. It is not
  authenticated, so it cannot count as a sighting of a sensor that encrypts, and rejecting it as a
  downgrade would raise an alarm every few adverts.
- MiBeacon objects other than the four exported (0x4C01 and up of newer models, events, 0x1004 with a
  length other than 2, ...) are skipped by their length; the frame's other objects are kept. A frame
  whose objects end early keeps the complete ones before the cut (as BTHome); none complete is
  ``truncated``. If a property occurs twice, the first one wins.
- MiBeacon plain frames return the frame counter as ``packet_id``; encrypted ones return the frame
  counter and the 3-byte extended counter as one 32-bit ``counter`` (counter byte + ext << 8, the
  firmware's nonce ``cnt32``). A MAC in the frame must be the advertiser's (``mac_mismatch``: every
  Xiaomi device uses 0xFE95); frames without one (pvvx event frames 0x5840/0x5848) use the advertiser's
  address in the nonce, as xiaomi-ble and ble_monitor do. The frame control is not authenticated by
  the MIC (the nonce is MAC, product id and counter; the associated data is the constant 0x11).
- MiBeacon versions and kinds not decoded are ``unsupported_version``: version below 2 or above 5,
  legacy v2/v3 encryption (a 12-byte key, never used by pvvx), mesh frames.
- The capability byte is followed by 2 bytes when its bond-ability bits are 3 (Wi-Fi MAC) and by 2
  more when its I/O bit (5) is set, as Xiaomi's own encoder writes them (xiaomi-ble and ble_monitor
  skip 1 byte for I/O; no thermometer sends either together with objects).
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Format(str, Enum):
    """The advertising formats decoded; the values are what /status, the log and metrics show."""

    __str__ = str.__str__  # the value, in f-strings and %s too (Python 3.11 changed the default)

    BTHOME_V2 = "bthome_v2"
    BTHOME_V1 = "bthome_v1"
    PVVX = "pvvx"  # pvvx custom
    ATC1441 = "atc1441"
    MIJIA = "mijia"  # MiBeacon (UUID 0xFE95), pvvx's "Mijia (MiHome)" format and Xiaomi's own firmware


class Reason(str, Enum):
    """Why an advert from a configured device gave no reading: the `reason` label of
    ble_exporter_advertisements_rejected_total. parse() returns the first eight; the engine, which
    keeps each device's history, decides the last two."""

    __str__ = str.__str__

    UNKNOWN_UUID = "unknown_uuid"
    """The service-data UUID is none of SERVICE_UUIDS (the scanner should not have passed it on)."""
    TRUNCATED = "truncated"
    """The payload ends before its header, its encryption trailer or its first object is complete."""
    BAD_LENGTH = "bad_length"
    """The length fits no layout: 0x181A payloads other than 8/11/13/14/15 bytes, anything over 252 bytes
    (one AD element cannot hold more), a BTHome v1 object whose control byte says length 0."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """BTHome v2 device-info bits 5-7 are not 2; a MiBeacon frame of a version or kind not decoded (version
    below 2 or above 5, legacy v2/v3 encryption, mesh)."""
    UNKNOWN_OBJECT = "unknown_object"
    """The first BTHome v2 object id is not in the spec, so nothing can be decoded."""
    ENCRYPTED_NO_KEY = "encrypted_no_key"
    """The packet is encrypted and no bindkey was given for the device."""
    DECRYPT_FAILED = "decrypt_failed"
    """Authentication failed: wrong bindkey (or not 16 bytes), tampered or corrupted packet, wrong MAC."""
    MAC_MISMATCH = "mac_mismatch"
    """The MAC inside a pvvx/atc1441/MiBeacon payload is not the advertiser's, or `mac` is not a valid
    address."""
    REPLAY = "replay"
    """(engine) An encryption counter lower than the last one accepted (the same counter again is the
    same advert reported again, not a replay)."""
    DOWNGRADE = "downgrade"
    """(engine) A plaintext packet from a device that has a bindkey."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One decoded advertisement; None means the packet did not carry that property."""

    format: Format
    encrypted: bool = False
    temperature: float | None = None  # °C
    humidity: float | None = None  # %
    battery: int | None = None  # %
    voltage: float | None = None  # V
    packet_id: int | None = None  # BTHome packet id / pvvx/atc/plain MiBeacon frame counter
    counter: int | None = None  # encryption counter (replay protection); None when plaintext
    mac: str | None = None  # MAC carried inside the payload, "AA:BB:CC:DD:EE:FF"
    power: bool | None = None  # BTHome 0x10 "power" (pvvx: GPIO_TRG output); pvvx custom flags bit 1
    opening: bool | None = None  # BTHome 0x11 "opening" (pvvx: reed switch input); pvvx custom flags bit 0
    flags: int | None = None  # pvvx custom trigger-flags byte as sent; encrypted atc1441: 0x04 or 0


@dataclass(frozen=True, slots=True)
class NotDecodable:
    """Why a packet gave no reading."""

    reason: Reason


@dataclass(frozen=True, slots=True)
class NoReading:
    """A well-formed advert that carries no measurement by design (a MiBeacon frame without objects):
    neither a reading nor a rejection. The engine ignores it (see the module notes)."""

    format: Format


# One immutable instance per reason: a rejected packet allocates nothing.
_ND: dict[Reason, NotDecodable] = {reason: NotDecodable(reason) for reason in Reason}
_NO_READING_MIJIA = NoReading(Format.MIJIA)

# --- UUIDs and addresses -------------------------------------------------------------------------------

UUID_BTHOME_V2 = 0xFCD2
UUID_BTHOME_V1 = 0x181C
UUID_BTHOME_V1_ENCRYPTED = 0x181E
UUID_ENVIRONMENTAL_SENSING = 0x181A  # pvvx custom and atc1441
UUID_XIAOMI = 0xFE95  # MiBeacon ("Mijia")


def uuid128(uuid16: int) -> str:
    """bleak's lower-case 128-bit form of a 16-bit SIG UUID (its key for service data)."""
    return f"0000{uuid16:04x}-0000-1000-8000-00805f9b34fb"


SERVICE_UUIDS: dict[str, int] = {
    uuid128(u): u
    for u in (UUID_BTHOME_V2, UUID_BTHOME_V1, UUID_BTHOME_V1_ENCRYPTED, UUID_ENVIRONMENTAL_SENSING, UUID_XIAOMI)
}

MAX_PAYLOAD = 252
"""An AD element is at most 255 bytes after its length byte: type (1) + UUID (2) + 252 bytes of data."""


def mac_bytes(mac: str) -> bytes | None:
    """'A4:C1:38:AA:BB:CC' -> 6 bytes in display order; None if it is not such an address."""
    if len(mac) != 17:
        return None
    try:
        raw = bytes.fromhex(mac.replace(":", ""))
    except ValueError:
        return None
    return raw if len(raw) == 6 else None


# --- BTHome object table -----------------------------------------------------------------------------

VARIABLE = -1
"""ObjectSpec.size of text/raw objects: a length byte follows the object id."""


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """One BTHome object id: its wire size and, if we export it, the Reading field and scaling."""

    name: str
    size: int  # value bytes after the id; VARIABLE for text/raw
    signed: bool = False
    factor: float = 1.0
    field: str | None = None  # Reading field this object fills


def _spec(name: str, size: int, signed: bool = False, factor: float = 1.0, field: str | None = None) -> ObjectSpec:
    return ObjectSpec(name, size, signed, factor, field)


# The whole v2 object-id list of bthome.io/format and bthome-ble const.py (MEAS_TYPES), plus the device
# information ids 0xF0-0xF2 of the spec. Ids absent here end a v2 walk.
OBJECT_TYPES: dict[int, ObjectSpec] = {
    0x00: _spec("packet_id", 1, field="packet_id"),
    0x01: _spec("battery", 1, field="battery"),
    0x02: _spec("temperature", 2, True, 0.01, "temperature"),
    0x03: _spec("humidity", 2, False, 0.01, "humidity"),
    0x04: _spec("pressure", 3, False, 0.01),
    0x05: _spec("illuminance", 3, False, 0.01),
    0x06: _spec("mass_kg", 2, False, 0.01),
    0x07: _spec("mass_lb", 2, False, 0.01),
    0x08: _spec("dewpoint", 2, True, 0.01),
    0x09: _spec("count", 1),
    0x0A: _spec("energy", 3, False, 0.001),
    0x0B: _spec("power_w", 3, False, 0.01),
    0x0C: _spec("voltage", 2, False, 0.001, "voltage"),
    0x0D: _spec("pm2_5", 2),
    0x0E: _spec("pm10", 2),
    0x0F: _spec("generic_boolean", 1),
    0x10: _spec("power", 1, field="power"),
    0x11: _spec("opening", 1, field="opening"),
    0x12: _spec("co2", 2),
    0x13: _spec("tvoc", 2),
    0x14: _spec("moisture", 2, False, 0.01),
    0x15: _spec("battery_low", 1),
    0x16: _spec("battery_charging", 1),
    0x17: _spec("carbon_monoxide", 1),
    0x18: _spec("cold", 1),
    0x19: _spec("connectivity", 1),
    0x1A: _spec("door", 1),
    0x1B: _spec("garage_door", 1),
    0x1C: _spec("gas_detected", 1),
    0x1D: _spec("heat", 1),
    0x1E: _spec("light", 1),
    0x1F: _spec("lock", 1),
    0x20: _spec("moisture_detected", 1),
    0x21: _spec("motion", 1),
    0x22: _spec("moving", 1),
    0x23: _spec("occupancy", 1),
    0x24: _spec("plug", 1),
    0x25: _spec("presence", 1),
    0x26: _spec("problem", 1),
    0x27: _spec("running", 1),
    0x28: _spec("safety", 1),
    0x29: _spec("smoke", 1),
    0x2A: _spec("sound", 1),
    0x2B: _spec("tamper", 1),
    0x2C: _spec("vibration", 1),
    0x2D: _spec("window", 1),
    0x2E: _spec("humidity_u8", 1, field="humidity"),
    0x2F: _spec("moisture_u8", 1),
    0x3A: _spec("button", 1),
    0x3C: _spec("dimmer", 2),
    0x3D: _spec("count_u16", 2),
    0x3E: _spec("count_u32", 4),
    0x3F: _spec("rotation", 2, True, 0.1),
    0x40: _spec("distance_mm", 2),
    0x41: _spec("distance_m", 2, False, 0.1),
    0x42: _spec("duration", 3, False, 0.001),
    0x43: _spec("current", 2, False, 0.001),
    0x44: _spec("speed", 2, False, 0.01),
    0x45: _spec("temperature_0_1", 2, True, 0.1, "temperature"),
    0x46: _spec("uv_index", 1, False, 0.1),
    0x47: _spec("volume_l_u16", 2, False, 0.1),
    0x48: _spec("volume_ml", 2),
    0x49: _spec("volume_flow_rate", 2, False, 0.001),
    0x4A: _spec("voltage_0_1", 2, False, 0.1, "voltage"),
    0x4B: _spec("gas_u24", 3, False, 0.001),
    0x4C: _spec("gas_u32", 4, False, 0.001),
    0x4D: _spec("energy_u32", 4, False, 0.001),
    0x4E: _spec("volume_l_u32", 4, False, 0.001),
    0x4F: _spec("water", 4, False, 0.001),
    0x50: _spec("timestamp", 4),
    0x51: _spec("acceleration", 2, False, 0.001),
    0x52: _spec("gyroscope", 2, False, 0.001),
    0x53: _spec("text", VARIABLE),
    0x54: _spec("raw", VARIABLE),
    0x55: _spec("volume_storage", 4, False, 0.001),
    0x56: _spec("conductivity", 2),
    0x57: _spec("temperature_s8", 1, True, 1.0, "temperature"),
    0x58: _spec("temperature_s8_0_35", 1, True, 0.35, "temperature"),
    0x59: _spec("count_s8", 1, True),
    0x5A: _spec("count_s16", 2, True),
    0x5B: _spec("count_s32", 4, True),
    0x5C: _spec("power_s32", 4, True, 0.01),
    0x5D: _spec("current_s16", 2, True, 0.001),
    0x5E: _spec("direction", 2, False, 0.01),
    0x5F: _spec("precipitation", 2, False, 0.1),
    0x60: _spec("channel", 1),
    0x61: _spec("rotational_speed", 2),
    0x62: _spec("speed_s32", 4, True, 0.000001),
    0x63: _spec("acceleration_s32", 4, True, 0.000001),
    0x64: _spec("light_level", 1),
    0xF0: _spec("device_type_id", 2),
    0xF1: _spec("firmware_version_u32", 4),
    0xF2: _spec("firmware_version_u24", 3),
}

# Reading fields an object can fill, as slots of the list a walk fills in.
_FIELDS: tuple[str, ...] = ("temperature", "humidity", "battery", "voltage", "packet_id", "power", "opening")
_T, _H, _B, _V, _PID, _PWR, _OPN = range(len(_FIELDS))
_SLOT = {name: i for i, name in enumerate(_FIELDS)}

Number = int | float
Value = int | float | bool
Converter = Callable[[Number], Value]


def _converter(spec: ObjectSpec) -> Converter:
    """Raw integer -> field value. Division by 10**k so 2506 -> 25.06 exactly as the literal reads."""
    field = spec.field
    if field in ("power", "opening"):
        return bool
    if field in ("battery", "packet_id"):
        return int
    if spec.factor == 1.0:
        return float
    divisor = round(1 / spec.factor)
    if math.isclose(divisor * spec.factor, 1.0):
        return lambda raw: raw / divisor
    factor = spec.factor
    return lambda raw: round(raw * factor, 2)


_STRUCT_CODES = {(1, False): "<B", (1, True): "<b", (2, False): "<H", (2, True): "<h"}

# Dense 256-entry tables for the hot loop: size (0 = not in spec) and, for exported ids,
# (slot, struct unpack_from, converter).
_Exporter = tuple[int, Callable[[bytes, int], tuple[int]], Converter]
_V2_SIZES: tuple[int, ...] = tuple(OBJECT_TYPES[i].size if i in OBJECT_TYPES else 0 for i in range(256))
_V2_EXPORTERS: tuple[_Exporter | None, ...] = tuple(
    (
        _SLOT[spec.field],
        struct.Struct(_STRUCT_CODES[spec.size, spec.signed]).unpack_from,
        _converter(spec),
    )
    if spec is not None and spec.field is not None
    else None
    for spec in (OBJECT_TYPES.get(i) for i in range(256))
)
# BTHome v1 carries each value's format and length in its control byte; only slot and scale come from here.
_V1_EXPORTERS: dict[int, tuple[int, Converter]] = {
    oid: (_SLOT[spec.field], _converter(spec)) for oid, spec in OBJECT_TYPES.items() if spec.field is not None
}
_FLOAT_STRUCTS = {2: struct.Struct("<e"), 4: struct.Struct("<f"), 8: struct.Struct("<d")}


def _walk_v2(data: bytes, pos: int, vals: list[Any]) -> tuple[int, Reason | None]:
    """Walk BTHome v2 objects from `pos`; return (complete objects seen, reason the walk stopped early)."""
    n = len(data)
    count = 0
    while pos < n:
        oid = data[pos]
        size = _V2_SIZES[oid]
        if size == 0:
            return count, Reason.UNKNOWN_OBJECT
        start = pos + 1
        if size == VARIABLE:
            if start >= n:
                return count, Reason.TRUNCATED
            start += 1
            size = data[start - 1]
        end = start + size
        if end > n:
            return count, Reason.TRUNCATED
        exporter = _V2_EXPORTERS[oid]
        if exporter is not None:
            slot, unpack, convert = exporter
            if vals[slot] is None:
                vals[slot] = convert(unpack(data, start)[0])
        count += 1
        pos = end
    return count, None


def _walk_v1(data: bytes, vals: list[Any]) -> tuple[int, Reason | None]:
    """Walk BTHome v1 objects `[ctrl][id][value]`; ctrl bits 5-7 format, bits 0-4 length incl. the id."""
    n = len(data)
    pos = 0
    count = 0
    while pos < n:
        ctrl = data[pos]
        length = ctrl & 0x1F  # bits 0-4
        if length == 0:
            return count, Reason.BAD_LENGTH
        end = pos + 1 + length
        if end > n:
            return count, Reason.TRUNCATED
        exporter = _V1_EXPORTERS.get(data[pos + 1])
        vlen = length - 1
        if exporter is not None and 1 <= vlen <= 8:
            slot, convert = exporter
            if vals[slot] is None:
                fmt = ctrl >> 5  # bits 5-7: 0 uint, 1 sint, 2 float, 3 string, 4 MAC/raw
                raw: Number | None = None
                if fmt <= 1:
                    raw = int.from_bytes(data[pos + 2 : end], "little", signed=fmt == 1)
                elif fmt == 2 and vlen in _FLOAT_STRUCTS:
                    raw = _FLOAT_STRUCTS[vlen].unpack_from(data, pos + 2)[0]
                    if not math.isfinite(raw):
                        raw = None
                if raw is not None:
                    vals[slot] = convert(raw)
        count += 1
        pos = end
    return count, None


def _reading(
    fmt: Format, encrypted: bool, vals: list[Any], counter: int | None = None, mac: str | None = None
) -> Reading:
    return Reading(
        format=fmt,
        encrypted=encrypted,
        temperature=vals[_T],
        humidity=vals[_H],
        battery=vals[_B],
        voltage=vals[_V],
        packet_id=vals[_PID],
        counter=counter,
        mac=mac,
        power=vals[_PWR],
        opening=vals[_OPN],
    )


def _same_mac(payload_mac: str, mac: str) -> bool:
    return payload_mac == mac or payload_mac == mac.upper()


@functools.cache
def _crypto() -> tuple[Any, type[Exception]]:
    """(AESCCM, InvalidTag), imported at the first encrypted packet: a daemon whose sensors send plaintext
    never loads cryptography and its OpenSSL (6-8 MB of RSS)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    return AESCCM, InvalidTag


@functools.lru_cache(maxsize=64)  # bounded: parse() takes any key
def _cipher(bindkey: bytes) -> Any:
    """The AES-CCM context of a bindkey, made once per key rather than per packet."""
    return _crypto()[0](bindkey, tag_length=4)


def _decrypt(bindkey: bytes, nonce: bytes, ciphertext_and_tag: bytes, aad: bytes | None) -> bytes | None:
    """AES-CCM with a 4-byte tag; None when the tag does not verify or the key is not 16 bytes."""
    if len(bindkey) != 16:
        return None
    try:
        result: bytes = _cipher(bytes(bindkey)).decrypt(nonce, ciphertext_and_tag, aad)
    except _crypto()[1]:
        return None
    return result


# --- BTHome v2 -----------------------------------------------------------------------------------------

_V2_UUID_LE = b"\xd2\xfc"


def _parse_bthome_v2(data: bytes, mac: str, bindkey: bytes | None) -> Reading | NotDecodable:
    n = len(data)
    if n == 0:
        return _ND[Reason.TRUNCATED]
    info = data[0]
    if info >> 5 != 2:  # bits 5-7: BTHome version
        return _ND[Reason.UNSUPPORTED_VERSION]
    pos = 1
    payload_mac: str | None = None
    if info & 0x02:  # bit 1: MAC included (6 bytes, reversed) - bthome-ble's use of the reserved bit
        if n < 7:
            return _ND[Reason.TRUNCATED]
        payload_mac = data[6:0:-1].hex(":").upper()
        pos = 7
    vals: list[Any] = [None] * len(_FIELDS)
    if not info & 0x01:  # bit 0: encryption
        count, stop = _walk_v2(data, pos, vals)
        if stop is not None and count == 0:
            return _ND[stop]
        return _reading(Format.BTHOME_V2, False, vals, None, payload_mac)

    # Encrypted: info [mac] ciphertext counter(4, LE) MIC(4); nonce = MAC ‖ D2 FC ‖ info ‖ counter; no AAD.
    if n < pos + 8:
        return _ND[Reason.TRUNCATED]
    if bindkey is None:
        return _ND[Reason.ENCRYPTED_NO_KEY]
    nonce_mac = data[6:0:-1] if payload_mac is not None else mac_bytes(mac)
    if nonce_mac is None:
        return _ND[Reason.MAC_MISMATCH]
    counter_bytes = data[n - 8 : n - 4]
    nonce = nonce_mac + _V2_UUID_LE + data[0:1] + counter_bytes
    plain = _decrypt(bindkey, nonce, data[pos : n - 8] + data[n - 4 :], None)
    if plain is None:
        return _ND[Reason.DECRYPT_FAILED]
    count, stop = _walk_v2(plain, 0, vals)
    if stop is not None and count == 0:
        return _ND[stop]
    return _reading(Format.BTHOME_V2, True, vals, int.from_bytes(counter_bytes, "little"), payload_mac)


# --- BTHome v1 -----------------------------------------------------------------------------------------

_V1_ENC_UUID_LE = b"\x1e\x18"
_V1_AAD = b"\x11"


def _finish_v1(data: bytes, encrypted: bool, counter: int | None) -> Reading | NotDecodable:
    vals: list[Any] = [None] * len(_FIELDS)
    count, stop = _walk_v1(data, vals)
    if stop is not None and count == 0:
        return _ND[stop]
    return _reading(Format.BTHOME_V1, encrypted, vals, counter)


def _parse_bthome_v1(data: bytes, mac: str, bindkey: bytes | None) -> Reading | NotDecodable:
    return _finish_v1(data, False, None)


def _parse_bthome_v1_encrypted(data: bytes, mac: str, bindkey: bytes | None) -> Reading | NotDecodable:
    # ciphertext ‖ counter(4, LE) ‖ MIC(4); nonce = MAC ‖ 1E 18 ‖ counter; AAD 0x11.
    n = len(data)
    if n < 8:
        return _ND[Reason.TRUNCATED]
    if bindkey is None:
        return _ND[Reason.ENCRYPTED_NO_KEY]
    mac_raw = mac_bytes(mac)
    if mac_raw is None:
        return _ND[Reason.MAC_MISMATCH]
    counter_bytes = data[n - 8 : n - 4]
    nonce = mac_raw + _V1_ENC_UUID_LE + counter_bytes
    plain = _decrypt(bindkey, nonce, data[: n - 8] + data[n - 4 :], _V1_AAD)
    if plain is None:
        return _ND[Reason.DECRYPT_FAILED]
    return _finish_v1(plain, True, int.from_bytes(counter_bytes, "little"))


# --- pvvx custom and atc1441 (UUID 0x181A) ---------------------------------------------------------

_CUSTOM = struct.Struct("<hHHBB")  # temp ×0.01, hum ×0.01, battery mV, battery %, counter (+ flags)
_ATC1441 = struct.Struct(">hBBHB")  # temp ×0.1, hum %, battery %, battery mV, counter
_CUSTOM_ENC = struct.Struct("<hHBB")  # temp ×0.01, hum ×0.01, battery %, flags
_PVVX_AAD = b"\x11"


def _parse_custom(data: bytes, mac: str) -> Reading | NotDecodable:
    payload_mac = data[5::-1].hex(":").upper()  # MAC LSB first
    if not _same_mac(payload_mac, mac):
        return _ND[Reason.MAC_MISMATCH]
    temp, hum, mv, batt, count = _CUSTOM.unpack_from(data, 6)
    flags: int | None = None
    power: bool | None = None
    opening: bool | None = None
    if len(data) == 15:
        flags = data[14]
        power = bool(flags & 0x02)  # bit 1: GPIO_TRG output value
        opening = bool(flags & 0x01)  # bit 0: reed switch input
    return Reading(
        format=Format.PVVX,
        temperature=temp / 100,
        humidity=hum / 100,
        battery=batt,
        voltage=mv / 1000,
        packet_id=count,
        mac=payload_mac,
        power=power,
        opening=opening,
        flags=flags,
    )


def _parse_atc1441(data: bytes, mac: str) -> Reading | NotDecodable:
    payload_mac = data[:6].hex(":").upper()  # MAC in display order
    if not _same_mac(payload_mac, mac):
        return _ND[Reason.MAC_MISMATCH]
    temp, hum, batt, mv, count = _ATC1441.unpack_from(data, 6)
    return Reading(
        format=Format.ATC1441,
        temperature=temp / 10,
        humidity=float(hum),
        battery=batt,
        voltage=mv / 1000,
        packet_id=count,
        mac=payload_mac,
    )


def _decrypt_pvvx(data: bytes, mac: str, bindkey: bytes | None) -> bytes | NotDecodable:
    """Encrypted custom/atc1441: counter(1) ‖ ciphertext ‖ MIC(4).

    Nonce = MAC (LSB first) ‖ the first 5 bytes of the AD element (length, 0x16, 1A 18, counter); AAD 0x11.
    """
    if bindkey is None:
        return _ND[Reason.ENCRYPTED_NO_KEY]
    mac_raw = mac_bytes(mac)
    if mac_raw is None:
        return _ND[Reason.MAC_MISMATCH]
    nonce = mac_raw[::-1] + bytes((len(data) + 3, 0x16, 0x1A, 0x18, data[0]))
    plain = _decrypt(bindkey, nonce, data[1:], _PVVX_AAD)
    if plain is None:
        return _ND[Reason.DECRYPT_FAILED]
    return plain


def _parse_custom_encrypted(data: bytes, mac: str, bindkey: bytes | None) -> Reading | NotDecodable:
    plain = _decrypt_pvvx(data, mac, bindkey)
    if isinstance(plain, NotDecodable):
        return plain
    temp, hum, batt, flags = _CUSTOM_ENC.unpack(plain)
    count = data[0]
    return Reading(
        format=Format.PVVX,
        encrypted=True,
        temperature=temp / 100,
        humidity=hum / 100,
        battery=batt,
        packet_id=count,
        counter=count,
        power=bool(flags & 0x02),
        opening=bool(flags & 0x01),
        flags=flags,
    )


def _parse_atc1441_encrypted(data: bytes, mac: str, bindkey: bytes | None) -> Reading | NotDecodable:
    plain = _decrypt_pvvx(data, mac, bindkey)
    if isinstance(plain, NotDecodable):
        return plain
    # temp (v/2 - 40 °C), humidity (v/2 %), bit 7 "TRG output controlled by thresholds" + 7-bit battery
    batt = plain[2]
    count = data[0]
    return Reading(
        format=Format.ATC1441,
        encrypted=True,
        temperature=plain[0] / 2 - 40,
        humidity=plain[1] / 2,
        battery=batt & 0x7F,
        packet_id=count,
        counter=count,
        flags=0x04 if batt & 0x80 else 0,
    )


def _parse_environmental(data: bytes, mac: str, bindkey: bytes | None) -> Reading | NotDecodable:
    n = len(data)
    if n in (14, 15):
        return _parse_custom(data, mac)
    if n == 13:
        return _parse_atc1441(data, mac)
    if n == 11:
        return _parse_custom_encrypted(data, mac, bindkey)
    if n == 8:
        return _parse_atc1441_encrypted(data, mac, bindkey)
    return _ND[Reason.BAD_LENGTH]


# --- MiBeacon, pvvx's "Mijia (MiHome)" format (UUID 0xFE95) -------------------------------------------

# Frame control, a little-endian u16 (bit names from Xiaomi's mible_beacon.h): bits 0-2 reserved,
# bit 8 registered, bit 9 solicited, bits 10-11 auth mode: none of them changes the layout.
_MI_ENCRYPTED = 0x0008  # bit 3
_MI_MAC = 0x0010  # bit 4: MAC included (6 bytes, reversed)
_MI_CAPABILITY = 0x0020  # bit 5: capability byte included
_MI_OBJECT = 0x0040  # bit 6: objects included
_MI_MESH = 0x0080  # bit 7: mesh information after the objects (not decoded)
_MI_HEAD = 5  # frame control (2), product id (2), frame counter (1)
_MI_TRAILER = 7  # encrypted: extended counter (3), MIC (4)
_MI_AAD = b"\x11"
_MI_T_H = struct.Struct("<hH").unpack_from  # 0x100D: temperature ×0.1 °C, humidity ×0.1 %
_MI_S16 = struct.Struct("<h").unpack_from
_MI_U16 = struct.Struct("<H").unpack_from


def _walk_mi(data: bytes, pos: int, end: int, vals: list[Any]) -> int:
    """Walk MiBeacon objects `[id u16][length u8][value]` in data[pos:end]; fill `vals` (first value wins).

    Returns the number of complete objects; objects after a cut are lost, bytes after the last complete
    one are ignored. Lengths come from the frame, so unknown ids (and known ids with a length their
    value does not have) are skipped.
    """
    count = 0
    while pos + 3 <= end:
        oid = data[pos] | data[pos + 1] << 8
        start = pos + 3
        pos = start + data[pos + 2]
        if pos > end:
            break
        count += 1
        size = pos - start
        if oid == 0x100D:
            if size == 4:
                temp, hum = _MI_T_H(data, start)
                if vals[_T] is None:
                    vals[_T] = temp / 10
                if vals[_H] is None:
                    vals[_H] = hum / 10
        elif oid == 0x1004:
            if size == 2 and vals[_T] is None:
                vals[_T] = _MI_S16(data, start)[0] / 10
        elif oid == 0x1006:
            if size == 2 and vals[_H] is None:
                vals[_H] = _MI_U16(data, start)[0] / 10
        elif oid == 0x100A and size == 1 and vals[_B] is None:
            vals[_B] = data[start]
    return count


def _parse_mibeacon(data: bytes, mac: str, bindkey: bytes | None) -> Reading | NoReading | NotDecodable:
    n = len(data)
    if n < _MI_HEAD:
        return _ND[Reason.TRUNCATED]
    control = data[0] | data[1] << 8
    version = control >> 12  # bits 12-15
    encrypted = control & _MI_ENCRYPTED
    if control & _MI_MESH or not 2 <= version <= 5 or (encrypted and version < 4):
        return _ND[Reason.UNSUPPORTED_VERSION]
    pos = _MI_HEAD
    payload_mac: str | None = None
    if control & _MI_MAC:
        pos = _MI_HEAD + 6
        if n < pos:
            return _ND[Reason.TRUNCATED]
        payload_mac = data[10:4:-1].hex(":").upper()
        if not _same_mac(payload_mac, mac):
            return _ND[Reason.MAC_MISMATCH]
    if control & _MI_CAPABILITY:
        if n <= pos:
            return _ND[Reason.TRUNCATED]
        capability = data[pos]
        pos += 1
        if capability & 0x18 == 0x18:  # bits 3-4, bond ability 3: a Wi-Fi MAC (2 bytes) follows
            pos += 2
        if capability & 0x20:  # bit 5: I/O capability (2 bytes)
            pos += 2
        if n < pos:
            return _ND[Reason.TRUNCATED]
    if not control & _MI_OBJECT:
        return _NO_READING_MIJIA
    vals: list[Any] = [None] * len(_FIELDS)
    if not encrypted:
        if not _walk_mi(data, pos, n, vals):
            return _ND[Reason.TRUNCATED]
        return Reading(
            format=Format.MIJIA,
            temperature=vals[_T],
            humidity=vals[_H],
            battery=vals[_B],
            packet_id=data[4],
            mac=payload_mac,
        )

    # Encrypted (v4/v5): objects ‖ extended counter (3) ‖ MIC (4); AES-CCM, 4-byte tag, AAD 0x11,
    # nonce = MAC (as in the frame: reversed) ‖ product id (LE) ‖ frame counter ‖ extended counter.
    end = n - _MI_TRAILER
    if end < pos + 3:
        return _ND[Reason.TRUNCATED]
    if bindkey is None:
        return _ND[Reason.ENCRYPTED_NO_KEY]
    if payload_mac is not None:
        nonce_mac = data[5:11]
    else:
        mac_raw = mac_bytes(mac)
        if mac_raw is None:
            return _ND[Reason.MAC_MISMATCH]
        nonce_mac = mac_raw[::-1]
    extended = data[end : end + 3]
    plain = _decrypt(bindkey, nonce_mac + data[2:5] + extended, data[pos:end] + data[n - 4 :], _MI_AAD)
    if plain is None:
        return _ND[Reason.DECRYPT_FAILED]
    if not _walk_mi(plain, 0, len(plain), vals):
        return _ND[Reason.TRUNCATED]
    return Reading(
        format=Format.MIJIA,
        encrypted=True,
        temperature=vals[_T],
        humidity=vals[_H],
        battery=vals[_B],
        counter=data[4] | int.from_bytes(extended, "little") << 8,
        mac=payload_mac,
    )


# --- entry point ---------------------------------------------------------------------------------------

_Decoder = Callable[[bytes, str, bytes | None], Reading | NoReading | NotDecodable]
_DECODERS: dict[int, _Decoder] = {
    UUID_BTHOME_V2: _parse_bthome_v2,
    UUID_BTHOME_V1: _parse_bthome_v1,
    UUID_BTHOME_V1_ENCRYPTED: _parse_bthome_v1_encrypted,
    UUID_ENVIRONMENTAL_SENSING: _parse_environmental,
    UUID_XIAOMI: _parse_mibeacon,
}


def parse(uuid16: int, data: bytes, mac: str, bindkey: bytes | None = None) -> Reading | NoReading | NotDecodable:
    """Decode one service-data payload (the bytes after the 16-bit UUID) sent by `mac`.

    Pure and total: any bytes give a Reading, a NoReading or a NotDecodable, never an exception.
    `bindkey` (16 bytes) is only used for encrypted formats and is never stored in the result.
    """
    decoder = _DECODERS.get(uuid16)
    if decoder is None:
        return _ND[Reason.UNKNOWN_UUID]
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) > MAX_PAYLOAD:
        return _ND[Reason.BAD_LENGTH]
    return decoder(data, mac, bindkey)
