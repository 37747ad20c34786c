"""The parser's inverse: build the service data the pvvx/atc1441 firmware would send for a Reading.

Used by the simulated scanner (test mode) and by the property tests (encode -> parse round trips).
Layouts follow the firmware, not just the specs:

- BTHome v2: objects in ascending id order, each only if the Reading has it: packet id (0x00), battery
  (0x01), temperature (0x02), humidity (0x03), voltage (0x0C), power (0x10), opening (0x11). A Reading with
  (packet_id, battery, temperature, humidity) gives pvvx's data1 packet, one with (packet_id, voltage,
  power, opening) its data2 packet. Encrypted: device info 0x41, no packet-id object (pvvx sends none),
  then counter(4, LE) and MIC(4). ``Reading.mac`` set -> device-info bit 1 and the MAC in the payload.
- BTHome v1: pvvx order: packet id, temperature, humidity, battery, power, voltage, opening; encrypted on
  UUID 0x181E without packet id.
- pvvx custom: 15 bytes (14 when the Reading has no flags/power/opening, as firmware without trigger
  support sends); encrypted: 11 bytes (temperature, humidity, battery, flags; no voltage).
- atc1441: 13 bytes, big-endian; encrypted: 8 bytes (half-degree temperature, half-percent humidity,
  7-bit battery and the "trigger on" bit).
- MiBeacon ("Mijia"), as pvvx sends it: frame control 0x5850 (plain) / 0x5858 (encrypted), product id
  0x055B (LYWSD03MMC), frame counter, the MAC (reversed), then objects. Plain: 0x100D (temperature and
  humidity) when the Reading has both, else 0x1004 / 0x1006, then 0x100A (battery); the frame counter
  is ``Reading.packet_id``. Encrypted: 0x1004, 0x1006, 0x100A, each one present (pvvx sends one per
  frame, cycling through them measurement by measurement: the simulator passes Readings with one
  field), then extended counter and MIC; frame counter and extended counter are ``counter`` (32 bits).

Values are rounded to the format's resolution; fields a format cannot carry are left out. A field a
fixed layout needs but the Reading lacks, or a value outside the wire type, raises ValueError (the
message never contains the bindkey). For encrypted pvvx/atc1441 the one-byte header counter is
``counter & 0xFF`` (the firmware's ``(u8)send_count``); ``Reading.packet_id`` is not used there.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from .parser import (
    UUID_BTHOME_V1,
    UUID_BTHOME_V1_ENCRYPTED,
    UUID_BTHOME_V2,
    UUID_ENVIRONMENTAL_SENSING,
    UUID_XIAOMI,
    Format,
    Reading,
    mac_bytes,
)

__all__ = [
    "MIJIA_PRODUCT_ID",
    "advertising_data",
    "encode",
    "mijia_frame",
    "seal_bthome_v1",
    "seal_bthome_v2",
    "seal_mijia",
    "seal_pvvx",
]

MIJIA_PRODUCT_ID = 0x055B
"""The product id pvvx puts in MiBeacon frames on a LYWSD03MMC (and on models without an id of their own)."""


def _int(value: float, scale: float, lo: int, hi: int, what: str) -> int:
    """Round value×scale to the wire integer, or say which field does not fit."""
    raw = round(value * scale)
    if not lo <= raw <= hi:
        raise ValueError(f"{what} {value!r} does not fit the wire range {lo}..{hi} (×{scale})")
    return raw


def _need(value: float | None, what: str, fmt: str) -> float:
    if value is None:
        raise ValueError(f"format {fmt} always carries {what}; the Reading has none")
    return value


def _mac_bytes(mac: str) -> bytes:
    raw = mac_bytes(mac)
    if raw is None:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def _key(bindkey: bytes | None, fmt: str) -> AESCCM:
    if bindkey is None or len(bindkey) != 16:
        raise ValueError(f"encrypted {fmt} needs a 16-byte bindkey")
    return AESCCM(bindkey, tag_length=4)


def _flags(reading: Reading) -> int | None:
    """pvvx trigger flags: as given, else bit 0 = opening, bit 1 = power, else None."""
    if reading.flags is not None:
        return _int(reading.flags, 1, 0, 255, "flags")
    if reading.power is None and reading.opening is None:
        return None
    return (0x02 if reading.power else 0) | (0x01 if reading.opening else 0)


# --- BTHome --------------------------------------------------------------------------------------------


def _bthome_v2_objects(reading: Reading, with_packet_id: bool) -> bytes:
    out = bytearray()
    if with_packet_id and reading.packet_id is not None:
        out += bytes((0x00, _int(reading.packet_id, 1, 0, 255, "packet_id")))
    if reading.battery is not None:
        out += bytes((0x01, _int(reading.battery, 1, 0, 255, "battery")))
    if reading.temperature is not None:
        out += b"\x02" + struct.pack("<h", _int(reading.temperature, 100, -32768, 32767, "temperature"))
    if reading.humidity is not None:
        out += b"\x03" + struct.pack("<H", _int(reading.humidity, 100, 0, 65535, "humidity"))
    if reading.voltage is not None:
        out += b"\x0c" + struct.pack("<H", _int(reading.voltage, 1000, 0, 65535, "voltage"))
    if reading.power is not None:
        out += bytes((0x10, int(reading.power)))
    if reading.opening is not None:
        out += bytes((0x11, int(reading.opening)))
    return bytes(out)


def _bthome_v1_objects(reading: Reading, with_packet_id: bool) -> bytes:
    out = bytearray()
    if with_packet_id and reading.packet_id is not None:
        out += bytes((0x02, 0x00, _int(reading.packet_id, 1, 0, 255, "packet_id")))
    if reading.temperature is not None:
        t = _int(reading.temperature, 100, -32768, 32767, "temperature")
        out += b"\x23\x02" + struct.pack("<h", t)  # ctrl 0x23: sint, 3 bytes incl. id
    if reading.humidity is not None:
        out += b"\x03\x03" + struct.pack("<H", _int(reading.humidity, 100, 0, 65535, "humidity"))
    if reading.battery is not None:
        out += bytes((0x02, 0x01, _int(reading.battery, 1, 0, 255, "battery")))
    if reading.power is not None:
        out += bytes((0x02, 0x10, int(reading.power)))
    if reading.voltage is not None:
        out += b"\x03\x0c" + struct.pack("<H", _int(reading.voltage, 1000, 0, 65535, "voltage"))
    if reading.opening is not None:
        out += bytes((0x02, 0x11, int(reading.opening)))
    return bytes(out)


def seal_bthome_v2(
    plaintext: bytes,
    mac: str,
    bindkey: bytes | None,
    counter: int,
    *,
    payload_mac: str | None = None,
    info: int = 0x41,
) -> bytes:
    """Encrypted BTHome v2 service data for already-encoded objects (`plaintext`).

    Nonce = MAC (payload MAC if given, else `mac`) ‖ D2 FC ‖ device info ‖ counter(4, LE); no AAD.
    `payload_mac` also sets device-info bit 1 and puts the MAC (reversed) after the info byte.
    """
    counter_le = _int(counter, 1, 0, 0xFFFFFFFF, "counter").to_bytes(4, "little")
    head = b""
    if payload_mac is not None:
        info |= 0x02
        head = _mac_bytes(payload_mac)[::-1]
    info |= 0x01
    nonce_mac = _mac_bytes(payload_mac if payload_mac is not None else mac)
    sealed = _key(bindkey, Format.BTHOME_V2).encrypt(
        nonce_mac + b"\xd2\xfc" + bytes((info,)) + counter_le, plaintext, None
    )
    return bytes((info,)) + head + sealed[:-4] + counter_le + sealed[-4:]


def seal_bthome_v1(plaintext: bytes, mac: str, bindkey: bytes | None, counter: int) -> bytes:
    """Encrypted BTHome v1 service data (UUID 0x181E): nonce MAC ‖ 1E 18 ‖ counter, AAD 0x11."""
    counter_le = _int(counter, 1, 0, 0xFFFFFFFF, "counter").to_bytes(4, "little")
    nonce = _mac_bytes(mac) + b"\x1e\x18" + counter_le
    sealed = _key(bindkey, Format.BTHOME_V1).encrypt(nonce, plaintext, b"\x11")
    return sealed[:-4] + counter_le + sealed[-4:]


def seal_pvvx(plaintext: bytes, mac: str, bindkey: bytes | None, counter: int) -> bytes:
    """Encrypted pvvx custom / atc1441 service data (UUID 0x181A): counter(1) ‖ ciphertext ‖ MIC(4).

    Nonce = MAC (LSB first) ‖ AD length ‖ 0x16 ‖ 1A 18 ‖ counter; AAD 0x11.
    """
    count = counter & 0xFF
    ad_len = 3 + 1 + len(plaintext) + 4
    nonce = _mac_bytes(mac)[::-1] + bytes((ad_len, 0x16, 0x1A, 0x18, count))
    return bytes((count,)) + _key(bindkey, "pvvx/atc1441").encrypt(nonce, plaintext, b"\x11")


# --- pvvx custom and atc1441 --------------------------------------------------------------------------


def _pvvx(reading: Reading, mac: str, bindkey: bytes | None, counter: int) -> bytes:
    fmt = Format.PVVX
    temp = _int(_need(reading.temperature, "temperature", fmt), 100, -32768, 32767, "temperature")
    hum = _int(_need(reading.humidity, "humidity", fmt), 100, 0, 65535, "humidity")
    batt = _int(_need(reading.battery, "battery", fmt), 1, 0, 255, "battery")
    flags = _flags(reading)
    if reading.encrypted:
        plain = struct.pack("<hHBB", temp, hum, batt, flags or 0)
        return seal_pvvx(plain, mac, bindkey, counter)
    mv = _int(_need(reading.voltage, "voltage", fmt), 1000, 0, 65535, "voltage")
    count = _int(_need(reading.packet_id, "packet_id", fmt), 1, 0, 255, "packet_id")
    payload_mac = _mac_bytes(reading.mac if reading.mac is not None else mac)[::-1]
    body = struct.pack("<hHHBB", temp, hum, mv, batt, count)
    return payload_mac + body + (b"" if flags is None else bytes((flags,)))


def _atc1441(reading: Reading, mac: str, bindkey: bytes | None, counter: int) -> bytes:
    fmt = Format.ATC1441
    temperature = _need(reading.temperature, "temperature", fmt)
    humidity = _need(reading.humidity, "humidity", fmt)
    batt = _need(reading.battery, "battery", fmt)
    if reading.encrypted:
        trigger = 0x80 if (reading.flags or 0) & 0x04 else 0
        plain = bytes(
            (
                _int(temperature + 40, 2, 0, 255, "temperature"),
                _int(humidity, 2, 0, 255, "humidity"),
                _int(batt, 1, 0, 127, "battery") | trigger,
            )
        )
        return seal_pvvx(plain, mac, bindkey, counter)
    payload_mac = _mac_bytes(reading.mac if reading.mac is not None else mac)
    return payload_mac + struct.pack(
        ">hBBHB",
        _int(temperature, 10, -32768, 32767, "temperature"),
        _int(humidity, 1, 0, 255, "humidity"),
        _int(batt, 1, 0, 255, "battery"),
        _int(_need(reading.voltage, "voltage", fmt), 1000, 0, 65535, "voltage"),
        _int(_need(reading.packet_id, "packet_id", fmt), 1, 0, 255, "packet_id"),
    )


# --- MiBeacon ("Mijia") -------------------------------------------------------------------------------


def mijia_frame(
    objects: bytes,
    mac: str | None,
    frame_counter: int,
    *,
    frame_control: int = 0x5850,
    product_id: int = MIJIA_PRODUCT_ID,
    capability: bytes = b"",
) -> bytes:
    """Plain MiBeacon service data: frame control, product id, frame counter, the MAC (reversed) when
    `mac` is given, `capability` as given, then the already-encoded `objects`. The frame control is
    written as given (bit 4 MAC, bit 5 capability, bit 6 objects are not adjusted)."""
    head = struct.pack("<HHB", frame_control, product_id, _int(frame_counter, 1, 0, 255, "frame counter"))
    return head + (b"" if mac is None else _mac_bytes(mac)[::-1]) + capability + objects


def seal_mijia(
    objects: bytes,
    mac: str,
    bindkey: bytes | None,
    counter: int,
    *,
    payload_mac: bool = True,
    frame_control: int = 0x5858,
    product_id: int = MIJIA_PRODUCT_ID,
) -> bytes:
    """Encrypted MiBeacon (v4/v5) service data for already-encoded `objects`: head ‖ ciphertext ‖
    extended counter (3) ‖ MIC (4). AES-CCM, 4-byte tag, AAD 0x11; nonce = MAC (reversed) ‖ product id
    (LE) ‖ counter (4, LE: the frame counter byte, then the extended counter). `payload_mac=False`
    leaves the MAC out of the frame (and bit 4 of the frame control), as pvvx's event frames do."""
    counter_le = _int(counter, 1, 0, 0xFFFFFFFF, "counter").to_bytes(4, "little")
    mac_le = _mac_bytes(mac)[::-1]
    if not payload_mac:
        frame_control &= ~0x0010
    head = struct.pack("<HH", frame_control, product_id) + counter_le[:1] + (mac_le if payload_mac else b"")
    nonce = mac_le + struct.pack("<H", product_id) + counter_le
    sealed = _key(bindkey, Format.MIJIA).encrypt(nonce, objects, b"\x11")
    return head + sealed[:-4] + counter_le[1:] + sealed[-4:]


def _mijia(reading: Reading, mac: str, bindkey: bytes | None, counter: int) -> bytes:
    temp = None if reading.temperature is None else _int(reading.temperature, 10, -32768, 32767, "temperature")
    hum = None if reading.humidity is None else _int(reading.humidity, 10, 0, 65535, "humidity")
    batt = None if reading.battery is None else _int(reading.battery, 1, 0, 255, "battery")
    out = bytearray()
    if temp is not None and hum is not None and not reading.encrypted:
        out += struct.pack("<HBhH", 0x100D, 4, temp, hum)
    else:
        if temp is not None:
            out += struct.pack("<HBh", 0x1004, 2, temp)
        if hum is not None:
            out += struct.pack("<HBH", 0x1006, 2, hum)
    if batt is not None:
        out += struct.pack("<HBB", 0x100A, 1, batt)
    if not out:
        raise ValueError("format mijia carries temperature, humidity or battery; the Reading has none")
    frame_mac = reading.mac if reading.mac is not None else mac
    if reading.encrypted:
        return seal_mijia(bytes(out), frame_mac, bindkey, counter)
    packet_id = _int(_need(reading.packet_id, "packet_id", Format.MIJIA), 1, 0, 255, "packet_id")
    return mijia_frame(bytes(out), frame_mac, packet_id)


# --- entry points -------------------------------------------------------------------------------------


def encode(reading: Reading, mac: str, bindkey: bytes | None = None, counter: int = 0) -> tuple[int, bytes]:
    """(uuid16, service data) the firmware would send for `reading` in `reading.format`.

    `mac` is the sender's address (for payload MACs and nonces); `bindkey` and `counter` are used when
    `reading.encrypted` (the counter of a Reading is ignored; pass it here).
    """
    fmt = reading.format
    if fmt == Format.BTHOME_V2:
        objects = _bthome_v2_objects(reading, with_packet_id=not reading.encrypted)
        if reading.encrypted:
            return UUID_BTHOME_V2, seal_bthome_v2(objects, mac, bindkey, counter, payload_mac=reading.mac)
        if reading.mac is None:
            return UUID_BTHOME_V2, b"\x40" + objects
        return UUID_BTHOME_V2, b"\x42" + _mac_bytes(reading.mac)[::-1] + objects
    if fmt == Format.BTHOME_V1:
        objects = _bthome_v1_objects(reading, with_packet_id=not reading.encrypted)
        if reading.encrypted:
            return UUID_BTHOME_V1_ENCRYPTED, seal_bthome_v1(objects, mac, bindkey, counter)
        return UUID_BTHOME_V1, objects
    if fmt == Format.PVVX:
        return UUID_ENVIRONMENTAL_SENSING, _pvvx(reading, mac, bindkey, counter)
    if fmt == Format.ATC1441:
        return UUID_ENVIRONMENTAL_SENSING, _atc1441(reading, mac, bindkey, counter)
    if fmt == Format.MIJIA:
        return UUID_XIAOMI, _mijia(reading, mac, bindkey, counter)
    raise ValueError(f"unknown format {fmt!r}")


def advertising_data(uuid16: int, payload: bytes, name: str | None = None) -> bytes:
    """Raw advertising data as bthome.io/format lays it out: Flags AD (02 01 06, which BlueZ passive
    scanning needs), an optional complete-local-name AD, then the service-data AD
    `[len] 16 [uuid16 LE] payload`."""
    if len(payload) > 252:
        raise ValueError("service data longer than one AD element can hold")
    out = b"\x02\x01\x06"
    if name is not None:
        encoded = name.encode()
        if len(encoded) > 29:
            raise ValueError("local name longer than a legacy advertisement can hold")
        out += bytes((len(encoded) + 1, 0x09)) + encoded
    return out + bytes((len(payload) + 3, 0x16)) + uuid16.to_bytes(2, "little") + payload
