"""The configured sensors: what the engine, the scanners and the front ends know of each one.

Kept apart from the config file's parser so that the core (engine, scan cycle) never loads PyYAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ble_exporter.calibration import Calibration

_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")


@dataclass(frozen=True)
class Device:
    mac: str  # upper case, ':'-separated
    name: str
    bindkey: bytes | None = field(default=None, repr=False)  # never in a repr, log or error
    calibration: Calibration | None = None  # None: the values as the sensor sends them


def normalise_mac(text: str) -> str | None:
    """`a4-c1-38-aa-bb-cc` -> `A4:C1:38:AA:BB:CC`; None if it is not six hex pairs."""
    if not _MAC.match(text):
        return None
    return text.replace("-", ":").upper()
