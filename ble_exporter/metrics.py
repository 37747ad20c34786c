"""Prometheus metrics: a custom collector that builds fresh families from the latest snapshot.

Fresh families per scrape (the exporter guidelines' rule) mean a sensor that was not heard in the
latest scan simply has no ble_sensor_* series: nothing stale is ever exported. Values are cached
BLE readings, so no sample carries a timestamp; the time of the reading is its own gauge.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from ble_exporter import __version__
from ble_exporter.core import ConfigStatus
from ble_exporter.engine import REJECTION_REASONS, Readings, ScanEngine

# (name, help, value of a device snapshot); a device gets a sample only where the value is known.
SENSOR_GAUGES: tuple[tuple[str, str, Callable[[Readings], float | None]], ...] = (
    (
        "ble_sensor_temperature_celsius",
        "Temperature last advertised in the latest scan.",
        lambda d: d.temperature,
    ),
    (
        "ble_sensor_humidity_percent",
        "Relative humidity last advertised in the latest scan.",
        lambda d: d.humidity,
    ),
    ("ble_sensor_battery_percent", "Battery level last advertised in the latest scan.", lambda d: d.battery),
    ("ble_sensor_battery_volts", "Battery voltage last advertised in the latest scan.", lambda d: d.voltage),
    ("ble_sensor_rssi_dbm", "Signal strength of the last advert heard in the latest scan.", lambda d: d.rssi),
    (
        "ble_sensor_last_update_timestamp_seconds",
        "Unix time of the last advert heard from the device in the latest scan.",
        lambda d: d.last_seen,
    ),
    ("ble_sensor_seen", "1 for each device heard in the latest scan; absent when not heard.", lambda d: 1),
)


class EngineCollector:
    """Exposes the engine's latest snapshot and counters.

    # TYPE ble_sensor_temperature_celsius gauge
    ble_sensor_temperature_celsius{device="living_room"} 21.5
    ... (one family per SENSOR_GAUGES entry, label `device`)
    # TYPE ble_exporter_advertisements_received_total counter
    ble_exporter_advertisements_received_total 1234.0
    ble_exporter_advertisements_rejected_total{reason="decrypt_failed"} 3.0
    ble_exporter_device_info{device="living_room",mac="A4:C1:38:12:34:56"} 1.0
    ble_exporter_build_info{version="0.1.0",python_version="3.11.2"} 1.0
    """

    def __init__(
        self,
        engine: ScanEngine,
        config: ConfigStatus | None = None,
        auth_failures: Callable[[], int] | None = None,
    ) -> None:
        self._engine = engine
        self._config = config
        self._auth_failures = auth_failures

    def collect(self) -> Iterator[Metric]:
        yield from sensor_families(self._engine)
        yield from exporter_families(self._engine)
        if self._config is not None:
            yield from config_families(self._config)
        if self._auth_failures is not None:
            yield _counter(
                "ble_exporter_http_auth_failures",
                "HTTP requests refused for wrong or missing credentials (basic_auth_users of the web config).",
                self._auth_failures(),
            )


def sensor_families(engine: ScanEngine) -> Iterator[Metric]:
    devices = engine.snapshot.devices
    for name, help_text, value_of in SENSOR_GAUGES:
        family = GaugeMetricFamily(name, help_text, labels=["device"])
        for d in devices:
            value = value_of(d.readings)
            if value is not None:
                family.add_metric([d.device.name], value)
        yield family


def exporter_families(engine: ScanEngine) -> Iterator[Metric]:
    counters = engine.counters
    snapshot = engine.snapshot
    health = engine.health
    yield _counter("ble_exporter_scans", "Scans completed.", counters.scans)
    yield _gauge(
        "ble_exporter_scanner_up",
        "1 while the scanner hears adverts; 0 after scans that heard none.",
        health.up,
    )
    yield _counter(
        "ble_exporter_scanner_restarts",
        "Scanner sessions restarted by the silent-scan watchdog.",
        health.restarts,
    )
    yield _counter(
        "ble_exporter_adapter_resets",
        "Adapter power cycles, when renewing the scanner did not bring adverts back.",
        health.adapter_resets,
    )
    yield _counter(
        "ble_exporter_advertisements_received",
        "Adverts reported by the scanner, from any device, configured or not.",
        counters.adverts_received,
    )
    yield _counter(
        "ble_exporter_advertisements_decoded",
        "Adverts from configured devices that gave a reading.",
        counters.adverts_decoded,
    )
    rejected = CounterMetricFamily(
        "ble_exporter_advertisements_rejected",
        "Adverts from configured devices that gave no reading, by reason.",
        labels=["reason"],
    )
    for reason in REJECTION_REASONS:  # every reason from start-up, so rate() and alerts work at once
        rejected.add_metric([reason.value], counters.rejected.get(reason, 0))
    yield rejected
    if snapshot.ended is not None:
        yield _gauge("ble_exporter_last_scan_timestamp_seconds", "Unix time the latest scan ended.", snapshot.ended)
    yield _gauge("ble_exporter_configured_devices", "Devices in the config file.", len(engine.devices))
    yield _gauge("ble_exporter_devices_seen", "Configured devices heard in the latest scan.", len(snapshot.devices))
    info = GaugeMetricFamily(
        "ble_exporter_device_info", "A configured device: its name and MAC address.", labels=["device", "mac"]
    )
    for device in engine.devices:
        info.add_metric([device.name, device.mac], 1)
    yield info
    build = GaugeMetricFamily(
        "ble_exporter_build_info",
        "ble-exporter's version and Python's.",
        labels=["version", "python_version"],
    )
    build.add_metric([__version__, platform.python_version()], 1)
    yield build


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def config_families(config: ConfigStatus) -> Iterator[Metric]:
    """The names Prometheus gives its own config reloads."""
    yield _gauge(
        "ble_exporter_config_last_reload_successful",
        "Whether the last configuration reload attempt was successful.",
        config.last_reload_successful,
    )
    yield _gauge(
        "ble_exporter_config_last_reload_success_timestamp_seconds",
        "Timestamp of the last successful configuration reload (the start counts as one).",
        config.last_reload_success_time,
    )


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


def build_registry(
    engine: ScanEngine, config: ConfigStatus | None = None, auth_failures: Callable[[], int] | None = None
) -> CollectorRegistry:
    """A private registry (no import-time globals): the engine's metrics, the daemon's (its config
    reloads, refused credentials), and process_* of this process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine, config, auth_failures))  # type: ignore[arg-type]
    ProcessCollector(registry=registry)
    return registry
