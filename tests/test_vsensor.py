"""The system test's virtual sensors (systemtest/guest/vsensor.py) carry encoders of their own, written
from the published formats apart from ble_exporter.encoder: they must reproduce the published vectors
(their `selftest`) and decode, through the project's parser, to what they say they advertised."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from ble_exporter.parser import Format, Reading, parse

VSENSOR = Path(__file__).resolve().parent.parent / "systemtest" / "guest" / "vsensor.py"
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
MAC = "A4:C1:38:12:34:56"


def _vsensor() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vsensor", VSENSOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_selftest_reproduces_the_published_vectors() -> None:
    result = subprocess.run([sys.executable, str(VSENSOR), "selftest"], capture_output=True, text=True, check=False)
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and lines and all(line.startswith("ok ") for line in lines), result.stdout
    assert sum("Mijia" in line or "stock LYWSD03MMC" in line for line in lines) == 4


def test_mijia_sensor_frames_decode_to_the_measurement() -> None:
    vs = _vsensor()
    for n in range(300, 309):  # three cycles of temperature, humidity, battery
        m = vs.measurement(6, n)
        m["temperature"] = round(m["temperature"] * 10) / 10
        m["humidity"] = round(m["humidity"] * 10) / 10
        ad = vs.service_data_ad(0xFE95, vs.mijia_encrypt(vs.mijia_object(m, n % 3), MAC, KEY, n))
        assert ad[1:4] == bytes.fromhex("1695fe")
        field = vs.MIJIA_OBJECTS[n % 3][0]
        expected = Reading(format=Format.MIJIA, encrypted=True, counter=n, mac=MAC, **{field: m[field]})
        assert parse(0xFE95, ad[4:], MAC, KEY) == expected
        if field == "temperature":
            assert m["temperature"] < 0  # sensor 6 reads below zero: the signed path
