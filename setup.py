"""Packaging metadata; the Debian package is built from this with stdeb."""

import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(
    r'__version__ = "([^"]+)"', Path(__file__).with_name("ble_exporter").joinpath("__init__.py").read_text()
).group(1)  # type: ignore[union-attr]

setup(
    name="ble-exporter",
    version=VERSION,
    description="Prometheus exporter for BLE thermometers (LYWSD03MMC with pvvx/atc1441 firmware)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["ble_exporter", "ble_exporter.*"]),
    install_requires=[
        "bleak>=0.20",
        "prometheus_client>=0.16",
        "PyYAML>=6.0",
        "aiohttp>=3.8",
        "rich>=13.3",
        "bcrypt>=3.2",
        "cryptography>=38",
    ],
    entry_points={"console_scripts": ["ble-exporter = ble_exporter.__main__:main"]},
)
