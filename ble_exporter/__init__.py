"""ble-exporter: BLE thermometers (pvvx/atc1441 firmware) to Prometheus."""

__version__ = "0.1.0"
