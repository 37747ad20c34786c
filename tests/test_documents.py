"""The HTTP documents: the collector gives exactly the spec's series for devices heard in the latest scan,
fresh per scrape; /status and the landing page tell the same story from the same view."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import Labels, labelled_samples

from ble_exporter.calibration import Calibration, Line
from ble_exporter.core import ConfigStatus
from ble_exporter.devices import Device
from ble_exporter.documents import RECEPTION_COUNTERS, SENSOR_GAUGES, Collector, View, build_registry, status_document
from ble_exporter.engine import REJECTION_REASONS, ScanEngine
from ble_exporter.health import RadioHealth
from ble_exporter.parser import uuid128

BTHOME = uuid128(0xFCD2)
KITCHEN = Device("A4:C1:38:AA:BB:CC", "kitchen")
ATTIC = Device("A4:C1:38:00:00:01", "attic")
# pvvx issue #740: data1 and data2 of one measurement (packet id 176).
DATA1 = bytes.fromhex("4000b00151028d0a038d11")
DATA2 = bytes.fromhex("4000b00c200b10001101")
PER_SCAN = {name for name, _, _ in SENSOR_GAUGES} | {"ble_sensor_adapter_rssi_dbm"}
RECEPTION = {f"{name}_total" for name, _, _ in RECEPTION_COUNTERS} | {"ble_sensor_adapter_scans_heard_total"}
# From the config, not the scan: present for calibrated devices whether heard or not.
CALIBRATED = "ble_sensor_calibrated"


def data1(packet_id: int) -> bytes:
    """DATA1 under another packet id: the next frames of the same sensor."""
    return DATA1[:2] + bytes((packet_id,)) + DATA1[3:]


def scraped(engine: ScanEngine) -> dict[tuple[str, Labels], float]:
    text = generate_latest(build_registry(lambda: View.of_engine(engine))).decode()
    return {key: value for key, value in labelled_samples(text).items() if not key[0].startswith("process_")}


def one_scan(engine: ScanEngine, *packets: bytes, start: float = 1000.0) -> None:
    engine.open_window(start)
    for i, packet in enumerate(packets):
        engine.ingest(KITCHEN.mac, -67, {BTHOME: packet}, start + 1.0 + i)
    engine.close_window(start + 5.0)


def test_sensor_series_for_a_device_heard() -> None:
    engine = ScanEngine((KITCHEN, ATTIC))
    one_scan(engine, DATA1, DATA2)
    got = scraped(engine)
    k = (("device", "kitchen"),)
    assert got[("ble_sensor_temperature_celsius", k)] == 27.01
    assert got[("ble_sensor_humidity_percent", k)] == 44.93
    assert got[("ble_sensor_battery_percent", k)] == 81
    assert got[("ble_sensor_battery_volts", k)] == 2.848
    assert got[("ble_sensor_rssi_dbm", k)] == -67
    assert got[("ble_sensor_last_update_timestamp_seconds", k)] == 1002.0
    assert got[("ble_sensor_seen", k)] == 1
    assert got[("ble_sensor_adapter_rssi_dbm", (("adapter", "hci0"), *k))] == -67
    assert got[("ble_sensor_adapter_scans_heard_total", (("adapter", "hci0"), *k))] == 1
    assert {name for name, labels in got if name.startswith("ble_sensor_")} == PER_SCAN | RECEPTION  # none calibrated
    assert not any(labels == (("device", "attic"),) for name, labels in got if name in PER_SCAN)


def test_a_device_not_heard_in_the_latest_scan_has_no_per_scan_series() -> None:
    engine = ScanEngine((KITCHEN,))
    one_scan(engine, DATA1)
    assert ("ble_sensor_seen", (("device", "kitchen"),)) in scraped(engine)
    one_scan(engine)
    assert not any(name in PER_SCAN for name, _ in scraped(engine))


def test_reception_counters_start_at_0_for_every_configured_device_and_stay_while_not_heard() -> None:
    engine = ScanEngine((KITCHEN, ATTIC))
    got = scraped(engine)
    for name in RECEPTION - {"ble_sensor_adapter_scans_heard_total"}:
        assert got[(name, (("device", "kitchen"),))] == got[(name, (("device", "attic"),))] == 0
    heard_by = "ble_sensor_adapter_scans_heard_total"
    assert got[(heard_by, (("adapter", "hci0"), ("device", "kitchen")))] == 0
    assert got[(heard_by, (("adapter", "hci0"), ("device", "attic")))] == 0
    one_scan(engine, DATA1, DATA2)  # data1 and data2 of one frame (pvvx #740): one frame
    one_scan(engine, data1(177), data1(179), start=1010.0)  # 177 was missed at 1011, 178 was not heard
    one_scan(engine, start=1020.0)  # not heard: the counters stay
    got = scraped(engine)
    k = (("device", "kitchen"),)
    assert got[("ble_exporter_scans_total", ())] == 3
    assert got[("ble_sensor_scans_heard_total", k)] == 2
    assert got[("ble_sensor_frames_total", k)] == 3
    assert got[("ble_sensor_frames_sent_total", k)] == 3  # 176 -> 179
    assert got[("ble_sensor_restarts_total", k)] == 0
    assert got[("ble_sensor_scans_heard_total", (("device", "attic"),))] == 0


def test_status_tells_every_configured_sensors_reception() -> None:
    engine = ScanEngine((KITCHEN, ATTIC))
    one_scan(engine, data1(10))
    one_scan(engine, data1(11), data1(12), data1(13), data1(14), start=1005.0)
    status = status_document(View.of_engine(engine))
    assert [d["name"] for d in status["devices"]] == ["kitchen"]  # heard in the latest scan
    kitchen, attic = status["sensors"]
    assert kitchen == {
        "name": "kitchen",
        "mac": KITCHEN.mac,
        "heard": True,
        "scans": 2,
        "scans_heard": 2,
        "frames": 5,
        "frames_sent": 4,
        "restarts": 0,
        "period_seconds": 2.0,  # 4 steps from 1001 to 1009
        "adapter_scans_heard": {"hci0": 2},
        "calibrated": [],
    }
    assert attic["heard"] is False and attic["frames"] == 0 and attic["period_seconds"] is None


def test_several_adapters_each_have_their_series_and_the_strongest_signal_is_the_sensors() -> None:
    engine = ScanEngine((KITCHEN, ATTIC), adapters=("hci0", "hci1"))
    engine.open_window(1000.0)
    engine.ingest(KITCHEN.mac, -80, {BTHOME: DATA1}, 1001.0, "hci0")
    engine.ingest(KITCHEN.mac, -58, {BTHOME: DATA1}, 1001.0, "hci1")
    engine.ingest(KITCHEN.mac, -82, {BTHOME: DATA2}, 1003.0, "hci0")  # the latest advert, but the weaker adapter
    engine.close_window(1005.0)
    health = {"hci0": RadioHealth(mode="passive"), "hci1": RadioHealth(mode="passive", up=False, failed=True)}
    text = generate_latest(build_registry(lambda: View.of_engine(engine, health))).decode()
    got = labelled_samples(text)
    k = ("device", "kitchen")
    assert got[("ble_sensor_rssi_dbm", (k,))] == -58
    assert got[("ble_sensor_adapter_rssi_dbm", (("adapter", "hci0"), k))] == -82
    assert got[("ble_sensor_adapter_rssi_dbm", (("adapter", "hci1"), k))] == -58
    assert got[("ble_sensor_adapter_scans_heard_total", (("adapter", "hci1"), ("device", "attic")))] == 0
    assert got[("ble_exporter_scanner_up", (("adapter", "hci0"),))] == 1
    assert got[("ble_exporter_scanner_up", (("adapter", "hci1"),))] == 0
    status = status_document(View.of_engine(engine, health))
    assert [(a["adapter"], a["up"]) for a in status["adapters"]] == [("hci0", True), ("hci1", False)]
    assert status["scanner"]["up"] is True and status["scan_mode"] == "passive"


def test_fields_not_heard_have_no_sample() -> None:
    engine = ScanEngine((KITCHEN,))
    one_scan(engine, DATA2)  # voltage only
    got = scraped(engine)
    assert ("ble_sensor_battery_volts", (("device", "kitchen"),)) in got
    assert ("ble_sensor_temperature_celsius", (("device", "kitchen"),)) not in got


def test_exporter_metrics() -> None:
    engine = ScanEngine((KITCHEN, ATTIC))
    one_scan(engine, DATA1, bytes.fromhex("4002ca"))
    engine.ingest("11:22:33:44:55:66", -90, {}, 1006.0)
    got = scraped(engine)
    assert got[("ble_exporter_scans_total", ())] == 1
    assert got[("ble_exporter_advertisements_received_total", ())] == 3
    assert got[("ble_exporter_advertisements_decoded_total", ())] == 1
    assert got[("ble_exporter_advertisements_rejected_total", (("reason", "truncated"),))] == 1
    assert got[("ble_exporter_last_scan_timestamp_seconds", ())] == 1005.0
    assert got[("ble_exporter_configured_devices", ())] == 2
    assert got[("ble_exporter_devices_seen", ())] == 1
    assert got[("ble_exporter_scanner_up", (("adapter", "hci0"),))] == 1
    assert got[("ble_exporter_scanner_restarts_total", (("adapter", "hci0"),))] == 0
    assert got[("ble_exporter_adapter_resets_total", (("adapter", "hci0"),))] == 0
    assert got[("ble_exporter_device_info", (("device", "attic"), ("mac", "A4:C1:38:00:00:01")))] == 1
    assert any(name == "ble_exporter_build_info" for name, _ in got)


def test_no_devices_still_exposes_the_exporter_series() -> None:
    got = scraped(ScanEngine(()))
    assert got[("ble_exporter_configured_devices", ())] == 0
    assert ("ble_exporter_last_scan_timestamp_seconds", ()) not in got  # no scan has ended yet


def test_samples_carry_no_timestamps() -> None:
    engine = ScanEngine((KITCHEN,))
    one_scan(engine, DATA1)
    families = list(
        text_string_to_metric_families(generate_latest(build_registry(lambda: View.of_engine(engine))).decode())
    )
    samples = [s for family in families for s in family.samples]
    assert samples and all(s.timestamp is None for s in samples)


def test_promtool_finds_nothing_to_complain_about() -> None:
    assert shutil.which("promtool"), "promtool is missing: apt-get install prometheus (make test-deps does)"
    engine = ScanEngine((KITCHEN, ATTIC))
    one_scan(engine, DATA1, DATA2)
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        check=False,
        input=generate_latest(build_registry(lambda: View.of_engine(engine))),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0 and result.stdout + result.stderr == b"", result


GOLDEN = Path(__file__).resolve().parent / "golden" / "metrics.txt"


def test_the_whole_exposition_of_a_fixed_scan_is_the_golden_file(update_golden: bool) -> None:
    """Every family, HELP text, label and value, byte for byte (process_* aside: they depend on the
    process). After a deliberate change: pytest --update-golden, then review the diff of the file."""
    engine = ScanEngine((KITCHEN, Device(ATTIC.mac, ATTIC.name, calibration=Calibration(humidity=Line(offset=2.0)))))
    one_scan(engine, DATA1, DATA2, bytes.fromhex("4002ca"))
    engine.ingest("11:22:33:44:55:66", -90, {}, 1006.0)
    registry = CollectorRegistry(auto_describe=False)
    view = View.of_engine(engine, config=ConfigStatus(last_reload_success_time=1000.5))
    registry.register(Collector(lambda: view))  # type: ignore[arg-type]
    text = generate_latest(registry).decode().replace(platform.python_version(), "PYTHON_VERSION")
    if update_golden:
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_every_rejection_reason_is_exported_at_0_from_start_up() -> None:
    got = scraped(ScanEngine((KITCHEN,)))
    reasons = {labels[0][1] for name, labels in got if name == "ble_exporter_advertisements_rejected_total"}
    assert reasons == {r.value for r in REJECTION_REASONS} and "unknown_uuid" not in reasons
    assert all(v == 0 for (name, _), v in got.items() if name == "ble_exporter_advertisements_rejected_total")


def test_calibrated_quantities_are_marked_and_status_gives_raw_and_calibrated_values() -> None:
    line = Line.through((40.0, 50.0), (42.0, 53.0))
    kitchen = Device(KITCHEN.mac, "kitchen", calibration=Calibration(temperature=Line(offset=-0.51), humidity=line))
    attic = Device(ATTIC.mac, "attic", calibration=Calibration(humidity=Line(offset=2.0)))
    engine = ScanEngine((kitchen, attic))
    one_scan(engine, DATA1)
    got = scraped(engine)
    marked = {labels for name, labels in got if name == CALIBRATED}
    assert marked == {
        (("device", "kitchen"), ("quantity", "temperature")),
        (("device", "kitchen"), ("quantity", "humidity")),
        (("device", "attic"), ("quantity", "humidity")),  # not heard: the mark is the config's
    }
    assert got[("ble_sensor_temperature_celsius", (("device", "kitchen"),))] == 27.01 - 0.51
    (heard,) = status_document(View.of_engine(engine))["devices"]
    assert heard["raw"] == {"temperature": 27.01, "humidity": 44.93}
    assert heard["temperature"] == 27.01 - 0.51 and heard["humidity"] == line(44.93)
    sensors = {s["name"]: s["calibrated"] for s in status_document(View.of_engine(engine))["sensors"]}
    assert sensors == {"kitchen": ["temperature", "humidity"], "attic": ["humidity"]}


def test_an_uncalibrated_device_has_no_raw_values_in_status() -> None:
    engine = ScanEngine((KITCHEN,))
    one_scan(engine, DATA1)
    (heard,) = status_document(View.of_engine(engine))["devices"]
    assert "raw" not in heard and heard["temperature"] == 27.01
