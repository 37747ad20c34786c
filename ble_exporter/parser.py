"""Decoding of thermometer advertisements: bytes in, a Reading or NotDecodable out, never an exception.

CONTRACT (owned by the parser work; engine/scanner/simulator rely on it):
- parse(uuid16, data, mac, bindkey=None) -> Reading | NotDecodable
- SERVICE_UUIDS: dict[str, int], bleak's 128-bit service-data keys -> 16-bit UUID for every format decoded
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded advertisement; None means the packet did not carry that property."""

    format: str  # one of FORMAT_* names, e.g. "bthome_v2"
    encrypted: bool = False
    temperature: float | None = None  # °C
    humidity: float | None = None  # %
    battery: int | None = None  # %
    voltage: float | None = None  # V
    packet_id: int | None = None  # BTHome packet id / pvvx/atc frame counter
    counter: int | None = None  # encryption counter (replay protection); None when plaintext
    mac: str | None = None  # MAC carried inside the payload, "AA:BB:CC:DD:EE:FF"


@dataclass(frozen=True, slots=True)
class NotDecodable:
    """Why a packet gave no reading; `reason` is a short label value for a metric."""

    reason: str
