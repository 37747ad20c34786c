"""Import direction: the core never pulls in a front end, and the daemon never loads rich."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("bleak", "aiohttp", "rich", "prometheus_client")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    return set(out.split())


@pytest.mark.parametrize("module", ["ble_exporter.parser", "ble_exporter.engine", "ble_exporter.config"])
def test_core_imports_no_io_library(module: str) -> None:
    assert loaded_after(f"import {module}").isdisjoint(HEAVY)


def test_the_engine_does_not_import_the_http_layer() -> None:
    loaded = loaded_after("import ble_exporter.engine, ble_exporter.scanner, ble_exporter.simulator")
    assert "ble_exporter.exporter" not in loaded and "ble_exporter.metrics" not in loaded
    assert loaded.isdisjoint(HEAVY)  # bleak is imported only when a real scan starts


def test_the_daemon_does_not_load_rich() -> None:
    loaded = loaded_after("import ble_exporter.main, ble_exporter.exporter, ble_exporter.metrics")
    assert "rich" not in loaded and "ble_exporter.watch" not in loaded
