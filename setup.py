"""Packaging metadata; the Debian package is built from this with stdeb. The dependencies come from
packaging/dependencies.txt (packaging/deps.py reads it)."""

import importlib.util
import re
import sys
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(
    r'__version__ = "([^"]+)"', Path(__file__).with_name("ble_exporter").joinpath("__init__.py").read_text()
).group(1)  # type: ignore[union-attr]

_spec = importlib.util.spec_from_file_location("ble_exporter_deps", Path(__file__).with_name("packaging") / "deps.py")
assert _spec is not None and _spec.loader is not None
deps = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = deps  # (dataclasses look their module up there)
_spec.loader.exec_module(deps)
DEPENDENCIES = deps.load()

setup(
    name="ble-exporter",
    version=VERSION,
    description="Prometheus exporter for BLE thermometers (LYWSD03MMC with pvvx/atc1441 firmware)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=DEPENDENCIES.python_requires(),
    packages=find_packages(include=["ble_exporter", "ble_exporter.*"]),
    install_requires=DEPENDENCIES.install_requires(),
    entry_points={"console_scripts": ["ble-exporter = ble_exporter.__main__:main"]},
)
