"""The HTTP documents: the Prometheus collector (/metrics), /status and the landing page (/).

All three are built from one `View` of the running exporter (the engine's latest snapshot and
counters, the scan cycle's health, the config and how its last reload went), so they cannot tell
different stories. Fresh metric families per scrape (the exporter guidelines' rule) mean a sensor not
heard in the latest scan simply has no ble_sensor_* series: nothing stale is ever exported. Values are
cached BLE readings, so no sample carries a timestamp; the time of the reading is its own gauge.
"""

from __future__ import annotations

import html
import platform
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from ble_exporter import __version__
from ble_exporter.config import DEFAULTS, Config
from ble_exporter.core import ConfigStatus, Core
from ble_exporter.devices import Device
from ble_exporter.engine import (
    REJECTION_REASONS,
    Counters,
    DeviceSnapshot,
    LiveState,
    Readings,
    ScanEngine,
    Snapshot,
)
from ble_exporter.health import RadioHealth
from ble_exporter.reception import Reception


@dataclass(frozen=True)
class View:
    """The exporter at one moment, as every document shows it."""

    snapshot: Snapshot  # the latest scan's devices (immutable)
    counters: Counters
    devices: tuple[Device, ...]  # what is scanned: the config's devices, or the demo sensors
    health: Mapping[str, RadioHealth]  # by adapter, in the config's order
    reception: Mapping[str, Reception] = field(default_factory=dict)  # by MAC, every device in `devices`
    adapter_scans_heard: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # MAC -> adapter -> scans
    config: ConfigStatus | None = None  # None: no reloads to tell of (tests of the sensor series)
    cfg: Config = DEFAULTS
    demo: bool = False  # simulated demo sensors stand in for a config without devices
    simulated: bool = False
    uptime: float = 0.0
    auth_failures: int | None = None  # None: the daemon counts none (no web config)
    live: Mapping[str, LiveState] = field(default_factory=dict)  # by MAC: each device's last known readings

    @classmethod
    def of_engine(cls, engine: ScanEngine, health: Mapping[str, RadioHealth] | None = None, **kw: Any) -> View:
        return cls(
            engine.snapshot,
            engine.counters,
            engine.devices,
            health if health is not None else {adapter: RadioHealth() for adapter in engine.adapters},
            engine.reception,
            engine.adapter_scans_heard,
            live=engine.live,
            **kw,
        )

    @property
    def up(self) -> bool:
        """Whether any adapter hears."""
        return any(h.up for h in self.health.values())

    @property
    def mode(self) -> str:
        """The scan mode, as one word: the first working adapter's."""
        modes = [h.mode for h in self.health.values() if h.up] or [h.mode for h in self.health.values()]
        return modes[0] if modes else "starting"


class Documents:
    """The documents of one running exporter: `view()` reads the core when a document is built."""

    def __init__(self, core: Core, started: float, auth_failures: Callable[[], int] | None = None) -> None:
        self._core = core
        self._started = started
        self._auth_failures = auth_failures

    def view(self, now: float) -> View:
        core = self._core
        return View.of_engine(
            core.engine,
            core.health,
            config=core.config_status,
            cfg=core.cfg,
            demo=core.demo,
            simulated=core.simulated,
            uptime=now - self._started,
            auth_failures=None if self._auth_failures is None else self._auth_failures(),
        )

    def generation(self) -> object:
        """What changes when a scan ends: a cached /metrics rendering older than it is stale."""
        return self._core.engine.snapshot


# --- /metrics ----------------------------------------------------------------------------------------

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


class Collector:
    """Exposes a View per scrape.

    # TYPE ble_sensor_temperature_celsius gauge
    ble_sensor_temperature_celsius{device="living_room"} 21.5
    ... (one family per SENSOR_GAUGES entry, label `device`)
    # TYPE ble_exporter_advertisements_received_total counter
    ble_exporter_advertisements_received_total 1234.0
    ble_exporter_advertisements_rejected_total{reason="decrypt_failed"} 3.0
    ble_exporter_device_info{device="living_room",mac="A4:C1:38:12:34:56"} 1.0
    ble_exporter_build_info{version="0.1.0",python_version="3.11.2"} 1.0
    """

    def __init__(self, view: Callable[[], View]) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        yield from metric_families(self._view())


def build_registry(view: Callable[[], View]) -> CollectorRegistry:
    """A private registry (no import-time globals): the exporter's metrics and process_* of this process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(view))  # type: ignore[arg-type]
    ProcessCollector(registry=registry)
    return registry


def metric_families(view: View) -> Iterator[Metric]:
    yield from _sensor_families(view)
    yield from _reception_families(view)
    yield from _exporter_families(view)
    if view.config is not None:
        yield from _config_families(view.config)
    if view.auth_failures is not None:
        yield _counter(
            "ble_exporter_http_auth_failures",
            "HTTP requests refused for wrong or missing credentials (basic_auth_users of the web config).",
            view.auth_failures,
        )


def _sensor_families(view: View) -> Iterator[Metric]:
    devices = view.snapshot.devices
    for name, help_text, value_of in SENSOR_GAUGES:
        family = GaugeMetricFamily(name, help_text, labels=["device"])
        for d in devices:
            value = value_of(d.readings)
            if value is not None:
                family.add_metric([d.device.name], value)
        yield family
    by_adapter = GaugeMetricFamily(
        "ble_sensor_adapter_rssi_dbm",
        "Signal strength of the last advert each adapter heard from the device in the latest scan.",
        labels=["device", "adapter"],
    )
    for d in devices:
        for adapter, rssi in d.adapters.items():
            if rssi is not None:
                by_adapter.add_metric([d.device.name, adapter], rssi)
    yield by_adapter


# (name, help, value of a sensor's Reception): counters of every configured device from the first scrape,
# kept while it is not heard, unlike the per-scan gauges above.
RECEPTION_COUNTERS: tuple[tuple[str, str, Callable[[Reception], int]], ...] = (
    (
        "ble_sensor_scans_heard",
        "Scans in which the device gave a reading; divided by ble_exporter_scans_total, the share heard.",
        lambda r: r.scans_heard,
    ),
    (
        "ble_sensor_frames",
        "Distinct frames heard from the device (new values of its frame counter).",
        lambda r: r.frames,
    ),
    (
        "ble_sensor_frames_sent",
        "Frames the device sent by its own counter, between the frames heard; an upper bound of its "
        "measurements (events and battery frames bump the counter too).",
        lambda r: r.frames_sent,
    ),
    (
        "ble_sensor_restarts",
        "Times the device's frame counter started again (went back, or jumped further than time allows).",
        lambda r: r.restarts,
    ),
)


def _reception_families(view: View) -> Iterator[Metric]:
    for name, help_text, value_of in RECEPTION_COUNTERS:
        family = CounterMetricFamily(name, help_text, labels=["device"])
        for device in view.devices:
            reception = view.reception.get(device.mac)
            family.add_metric([device.name], value_of(reception) if reception is not None else 0)
        yield family
    by_adapter = CounterMetricFamily(
        "ble_sensor_adapter_scans_heard",
        "Scans in which the adapter heard a reading of the device.",
        labels=["device", "adapter"],
    )
    for device in view.devices:
        heard = view.adapter_scans_heard.get(device.mac, {})
        for adapter in view.health:
            by_adapter.add_metric([device.name, adapter], heard.get(adapter, 0))
    yield by_adapter
    calibrated = GaugeMetricFamily(
        "ble_sensor_calibrated",
        "1 for each quantity the config calibrates on the device (its values are exported calibrated).",
        labels=["device", "quantity"],
    )
    for device in view.devices:
        for quantity in device.calibration.quantities() if device.calibration else ():
            calibrated.add_metric([device.name, quantity], 1)
    yield calibrated


def _exporter_families(view: View) -> Iterator[Metric]:
    counters, snapshot = view.counters, view.snapshot
    yield _counter("ble_exporter_scans", "Scans completed.", counters.scans)
    yield _by_adapter(
        view,
        GaugeMetricFamily(
            "ble_exporter_scanner_up",
            "1 while the adapter's scanner hears adverts; 0 after scans that heard none, or while it has failed.",
            labels=["adapter"],
        ),
        lambda h: h.up,
    )
    yield _by_adapter(
        view,
        CounterMetricFamily(
            "ble_exporter_scanner_restarts",
            "Scanner sessions restarted by the silent-scan watchdog.",
            labels=["adapter"],
        ),
        lambda h: h.restarts,
    )
    yield _by_adapter(
        view,
        CounterMetricFamily(
            "ble_exporter_adapter_resets",
            "Adapter power cycles, when renewing the scanner did not bring adverts back.",
            labels=["adapter"],
        ),
        lambda h: h.resets,
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
    yield _gauge("ble_exporter_configured_devices", "Devices in the config file.", len(view.devices))
    yield _gauge("ble_exporter_devices_seen", "Configured devices heard in the latest scan.", len(snapshot.devices))
    info = GaugeMetricFamily(
        "ble_exporter_device_info", "A configured device: its name and MAC address.", labels=["device", "mac"]
    )
    for device in view.devices:
        info.add_metric([device.name, device.mac], 1)
    yield info
    build = GaugeMetricFamily(
        "ble_exporter_build_info",
        "ble-exporter's version and Python's.",
        labels=["version", "python_version"],
    )
    build.add_metric([__version__, platform.python_version()], 1)
    yield build


def _config_families(config: ConfigStatus) -> Iterator[Metric]:
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


def _by_adapter(view: View, family: Metric, value_of: Callable[[RadioHealth], float]) -> Metric:
    for adapter, health in view.health.items():
        family.add_metric([adapter], value_of(health))  # type: ignore[attr-defined]
    return family


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


# --- /status -----------------------------------------------------------------------------------------


def status_document(view: View) -> dict[str, Any]:
    """/status: the spec's four keys first, then what helps a user see why readings are missing."""
    cfg, snapshot, config = view.cfg, view.snapshot, view.config or ConfigStatus()
    healths = view.health.values()
    heard = {d.device.mac for d in snapshot.devices}
    return {
        "scan_interval_seconds": cfg.scan_interval_seconds,
        "scan_duration_seconds": cfg.scan_duration_seconds,
        "last_scan_timestamp": int(snapshot.ended) if snapshot.ended is not None else None,
        "devices_seen": len(snapshot.devices),
        "devices_configured": len(cfg.devices),
        "demo_devices": len(view.devices) if view.demo else 0,
        "version": __version__,
        "uptime_seconds": round(view.uptime, 1),
        "adapter": "simulated" if view.simulated else cfg.adapters_shown,
        "scan_mode": view.mode,
        "scanner": {  # every adapter together: up while any hears; the latest error of any
            "up": view.up,
            "restarts": sum(h.restarts for h in healths),
            "adapter_resets": sum(h.resets for h in healths),
            **_last_error(max(healths, key=lambda h: h.last_error_time or 0.0, default=RadioHealth())),
        },
        "adapters": [
            {
                "adapter": adapter,
                "address": h.address,
                "mode": h.mode,
                "up": h.up,
                "restarts": h.restarts,
                "resets": h.resets,
                **_last_error(h),
            }
            for adapter, h in view.health.items()
        ],
        "config": {
            "path": cfg.path,
            "last_reload_successful": config.last_reload_successful,
            "last_reload_success_timestamp": int(config.last_reload_success_time),
            "problems": list(config.problems),
        },
        "devices": [
            {
                "name": d.device.name,
                "mac": d.device.mac,
                "last_seen_timestamp": int(d.readings.last_seen or 0),
                "format": d.readings.format,
                "temperature": d.readings.temperature,
                "humidity": d.readings.humidity,
                **_raw(d),
            }
            for d in snapshot.devices
        ],
        "sensors": [_sensor_status(device, view, heard) for device in view.devices],
    }


def _last_error(health: RadioHealth) -> dict[str, Any]:
    when = health.last_error_time
    return {"last_error": health.last_error, "last_error_timestamp": None if when is None else int(when)}


def _raw(d: DeviceSnapshot) -> dict[str, Any]:
    """A calibrated device's values as the sensor sent them."""
    if d.raw is None:
        return {}
    return {"raw": {"temperature": d.raw.temperature, "humidity": d.raw.humidity}}


def _sensor_status(device: Device, view: View, heard: set[str]) -> dict[str, Any]:
    """Every configured device, heard or not: how well it is heard."""
    r = view.reception.get(device.mac) or Reception()
    return {
        "name": device.name,
        "mac": device.mac,
        "heard": device.mac in heard,  # in the latest scan
        "scans": r.scans,
        "scans_heard": r.scans_heard,
        "frames": r.frames,
        "frames_sent": r.frames_sent,
        "restarts": r.restarts,
        "period_seconds": None if r.period is None else round(r.period, 2),
        "adapter_scans_heard": dict(view.adapter_scans_heard.get(device.mac, {})),
        "calibrated": list(device.calibration.quantities()) if device.calibration else [],
    }


# --- / -----------------------------------------------------------------------------------------------


def landing_page(view: View) -> str:
    """The links page the Prometheus docs ask exporters for."""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ble-exporter</title></head>
<body><h1>ble-exporter {html.escape(__version__)}</h1>
<p>Prometheus exporter for BLE thermometers.</p>
<ul><li><a href="metrics">/metrics</a> – Prometheus metrics</li>
<li><a href="status">/status</a> – scanner status (JSON)</li>
<li><a href="healthz">/healthz</a> – liveness</li></ul>
</body></html>
"""
