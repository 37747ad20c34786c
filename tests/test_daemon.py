"""`ble-exporter run` as a process: reloading the config (SIGHUP, as `systemctl reload` sends it),
signals at any moment of start-up, and adapter recovery through the real bleak on a mock bluetoothd."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from bluez_mock import BluezMock, BluezMockError
from support import (
    Exporter,
    ExporterFactory,
    Listener,
    Scraper,
    TlsFiles,
    free_port,
    labelled_samples,
    start_cli,
    wait_until,
)

FAST = "scan_interval_seconds: 1\nscan_duration_seconds: 1\n"
KEY = "231d39c1d7cc1ab1aee224cd096db932"
RELOADED = ("ble_exporter_config_last_reload_successful", "")
WATCHDOG = "watchdog_silent_scans: 1\nadapter_reset_after_silent_scans: 1\n"
KITCHEN = "A4:C1:38:AA:BB:CC"


def devices(**names: str) -> str:
    return "devices:\n" + "".join(f'  "{mac}": {name}\n' for name, mac in names.items())


ONE, TWO, THREE = "A4:C1:38:00:00:01", "A4:C1:38:00:00:02", "A4:C1:38:00:00:03"


def signals_taken(process: subprocess.Popen[str], timeout: float = 10) -> None:
    """Wait until the process catches SIGTERM (its SigCgt mask in /proc): from there on, its start-up
    is the program's own; before it, the interpreter is still being loaded."""
    deadline = time.monotonic() + timeout
    while True:
        fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{process.pid}/status").read_text().splitlines())
        if int(fields["SigCgt"], 16) & (1 << (signal.SIGTERM - 1)):
            return
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.002)


def rewrite(exporter: Exporter, body: str) -> None:
    """The config as a user leaves it after `sudoedit`: the fixture's head (port, log) plus `body`."""
    head = "".join(line + "\n" for line in exporter.config.read_text().splitlines()[:3])
    exporter.config.write_text(head + body)


def test_a_valid_reload_takes_effect_without_a_restart(exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(FAST + devices(one=ONE, two=TWO), "--simulate")
    exporter.wait_healthy()
    both = {("ble_sensor_seen", "one"), ("ble_sensor_seen", "two")}
    exporter.wait_until("both sensors", lambda: both <= exporter.samples().keys())
    scraper = Scraper(exporter.port)
    scraper.start()
    scans_before = exporter.samples()[("ble_exporter_scans_total", "")]
    loaded_before = exporter.samples()[("ble_exporter_config_last_reload_success_timestamp_seconds", "")]
    time.sleep(1.1)
    # one renamed, two removed, three added (with a bindkey), scans every 2 s
    rewrite(
        exporter,
        "scan_interval_seconds: 2\nscan_duration_seconds: 1\n"
        + devices(uno=ONE)
        + f'  "{THREE}": {{name: three, bindkey: "{KEY}"}}\n',
    )
    exporter.process.send_signal(signal.SIGHUP)
    exporter.wait_until("the new sensor", lambda: ("ble_sensor_seen", "three") in exporter.samples())
    got = exporter.samples()
    assert ("ble_sensor_seen", "two") not in got and ("ble_exporter_device_info", "two") not in got
    assert ("ble_exporter_device_info", "uno") in got and ("ble_exporter_device_info", "one") not in got
    assert got[("ble_exporter_scans_total", "")] > scans_before  # counters go on
    assert got[("ble_exporter_config_last_reload_successful", "")] == 1
    assert got[("ble_exporter_config_last_reload_success_timestamp_seconds", "")] > loaded_before
    assert got[("ble_exporter_advertisements_rejected_total", "decrypt_failed")] == 0
    status = json.loads(exporter.get("/status")[1])
    assert status["scan_interval_seconds"] == 2 and status["config"]["last_reload_successful"] is True
    scraper.done.set()
    scraper.join(5)
    assert len(scraper.statuses) > 20 and set(scraper.statuses) == {200}, scraper.statuses[:5]
    assert exporter.stop() == 0
    log = exporter.log_file.read_text()
    changes = "devices added: three; devices removed: two; devices changed: uno; scan_interval_seconds 1 -> 2"
    assert f"INFO ble_exporter: reload: config {exporter.config} loaded: {changes}\n" in log
    assert log.count("ble-exporter 0.1.0 starting") == 1  # one process throughout


def test_an_invalid_reload_leaves_the_running_config_alone(exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(FAST + devices(one=ONE), "--simulate")
    exporter.wait_healthy()
    exporter.wait_until("a reading", lambda: ("ble_sensor_seen", "one") in exporter.samples())
    rewrite(exporter, FAST + "listen_port: 0\nscan_mode: loud\n" + devices(one=ONE))
    exporter.process.send_signal(signal.SIGHUP)
    exporter.wait_until("the rejection", lambda: exporter.samples()[RELOADED] == 0)
    log = exporter.log_file.read_text()
    rejected = [line.split(" ERROR ble_exporter: ", 1)[1] for line in log.splitlines() if "reload rejected" in line]
    assert rejected == [
        f"reload rejected, running on as before: {exporter.config}:6: `listen_port` is given twice; keep one",
        f"reload rejected, running on as before: {exporter.config}:7: scan_mode `loud` is not one of auto, passive, "
        "active",
    ]
    status = json.loads(exporter.get("/status")[1])
    assert status["config"]["last_reload_successful"] is False and len(status["config"]["problems"]) == 2
    scans = exporter.samples()[("ble_exporter_scans_total", "")]
    exporter.wait_until("scans going on", lambda: exporter.samples()[("ble_exporter_scans_total", "")] > scans + 1)
    rewrite(exporter, FAST + devices(one=ONE))  # fixed: the next reload takes it
    exporter.process.send_signal(signal.SIGHUP)
    exporter.wait_until("a good reload", lambda: exporter.samples()[RELOADED] == 1)
    assert json.loads(exporter.get("/status")[1])["config"]["problems"] == []
    assert exporter.stop() == 0


def test_a_new_listen_port_is_bound_before_the_old_one_closes(exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(FAST + devices(one=ONE), "--simulate")
    exporter.wait_healthy()
    old, new = exporter.port, free_port()
    exporter.config.write_text(exporter.config.read_text().replace(f"listen_port: {old}", f"listen_port: {new}"))
    exporter.process.send_signal(signal.SIGHUP)
    exporter.port = new
    exporter.wait_healthy(10)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{old}/healthz", timeout=1)
    assert "HTTP 127.0.0.1:" in exporter.log_file.read_text()
    assert exporter.stop() == 0


def test_reload_speaks_the_notify_protocol(listener: Listener, exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(FAST + devices(one=ONE), "--simulate")
    exporter.wait_until("READY=1", lambda: listener.times("READY=1"), 15, interval=0.05)
    exporter.process.send_signal(signal.SIGHUP)
    exporter.wait_until(
        "READY=1 after the reload", lambda: any(m.startswith("READY=1\n") for _, m in listener.messages), 20, 0.05
    )
    messages = [m for _, m in listener.messages if "WATCHDOG" not in m]
    reloading = next(m for m in messages if m.startswith("RELOADING=1"))
    assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", reloading)
    usec = int(reloading.split("=")[-1])
    assert abs(usec - time.monotonic_ns() // 1000) < 30_000_000  # CLOCK_MONOTONIC, as systemd compares it
    assert messages.index(reloading) < messages.index("READY=1\nSTATUS=config reloaded")
    assert exporter.stop() == 0


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3, 0.6])
def test_a_sigterm_at_any_moment_of_start_up_is_a_clean_stop(exporter_factory: ExporterFactory, delay: float) -> None:
    exporter = exporter_factory(FAST + devices(one=ONE), "--simulate")
    signals_taken(exporter.process)
    time.sleep(delay)
    exporter.process.send_signal(signal.SIGTERM)
    assert exporter.process.wait(10) == 0
    assert exporter.stderr() == ""
    if exporter.log_file.exists():  # logging starts after the config is read
        assert exporter.log_file.read_text().rstrip().endswith("INFO ble_exporter: stopped")


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3])
def test_a_sighup_during_start_up_does_not_stop_the_service(exporter_factory: ExporterFactory, delay: float) -> None:
    exporter = exporter_factory(FAST + devices(one=ONE), "--simulate")
    signals_taken(exporter.process)
    time.sleep(delay)
    exporter.process.send_signal(signal.SIGHUP)
    exporter.wait_healthy()
    exporter.wait_until("the reload it asked for", lambda: "reload: config" in exporter.log_file.read_text())
    assert exporter.stop() == 0


def test_watch_still_quits_on_sighup(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(devices(one=ONE))
    process = start_cli("watch", "--simulate", "--config", str(config), stdin=subprocess.DEVNULL)
    time.sleep(1.5)
    process.send_signal(signal.SIGHUP)
    assert process.wait(10) == 0


# ---- adapter recovery: a deaf adapter that only a power cycle revives (tests/bluez_mock.py) ----


def test_a_deaf_adapter_is_reset_once_and_readings_come_back(
    bluez: BluezMock, exporter_factory: ExporterFactory
) -> None:
    config = (
        FAST + "watchdog_silent_scans: 1\nadapter_reset_after_silent_scans: 1\n" + devices(kitchen="A4:C1:38:AA:BB:CC")
    )
    exporter = exporter_factory(config, env=bluez.env())
    exporter.wait_healthy()
    bluez.wait_scanning()
    data = {"0000fcd2-0000-1000-8000-00805f9b34fb": bytes.fromhex("4000b00151028d0a038d11")}

    def advertised_and_seen() -> bool:
        bluez.advertise(KITCHEN, data, rssi=-58)
        return ("ble_sensor_seen", "kitchen") in exporter.samples()

    exporter.wait_until("a reading", advertised_and_seen)
    bluez.make_deaf()
    exporter.wait_until("the reset", lambda: not advertised_and_seen() and bluez.power_cycles() == 1, timeout=30)
    exporter.wait_until("readings again", advertised_and_seen)
    got = exporter.samples()
    assert got[("ble_exporter_adapter_resets_total", "")] == 1 and bluez.power_cycles() == 1
    assert got[("ble_exporter_scanner_restarts_total", "")] >= 1 and got[("ble_exporter_scanner_up", "")] == 1
    assert exporter.stop() == 0
    log = exporter.log_file.read_text()
    assert "renewing the scanning session did not help" in log and "adapter hci0 reset; scanning again" in log


def test_an_adapter_powered_off_by_a_user_is_not_fought(bluez: BluezMock, exporter_factory: ExporterFactory) -> None:
    config = (
        FAST + "watchdog_silent_scans: 1\nadapter_reset_after_silent_scans: 1\n" + devices(kitchen="A4:C1:38:AA:BB:CC")
    )
    exporter = exporter_factory(config, env=bluez.env())
    exporter.wait_healthy()
    bluez.power_off()
    assert exporter.process.wait(10) == 1
    # Noticed between scans (check) or at the next scan start: the powered-off fault either way.
    assert "powered off" in exporter.stderr() and bluez.power_cycles() == 0


DONGLE = "00:1A:7D:DA:71:13"


def test_an_adapter_of_two_that_is_unplugged_is_set_aside_and_comes_back_by_itself(
    bluez: BluezMock, exporter_factory: ExporterFactory
) -> None:
    """The dongle named by its address: unplugged, the exporter scans on with hci0 and says why;
    plugged in again (as another hci number), it is back within the retries' 10 scans."""
    bluez.add_adapter("hci1", address=DONGLE)
    exporter = exporter_factory(FAST + f'adapter: [hci0, "{DONGLE}"]\n' + devices(kitchen=KITCHEN), env=bluez.env())
    exporter.wait_healthy()
    bluez.wait_scanning("hci0")
    bluez.wait_scanning("hci1")
    data = {"0000fcd2-0000-1000-8000-00805f9b34fb": bytes.fromhex("4000b00151028d0a038d11")}

    def by_adapter() -> dict[str, float]:
        for adapter, rssi in (("hci0", -80), ("hci1", -60), ("hci2", -62)):
            with contextlib.suppress(BluezMockError):  # an adapter not there (now)
                bluez.advertise(KITCHEN, data, rssi=rssi, adapter=adapter)
        got = labelled_samples(exporter.get("/metrics")[1])
        return {dict(k[1])["adapter"]: v for k, v in got.items() if k[0] == "ble_sensor_adapter_rssi_dbm"}

    exporter.wait_until("both adapters", lambda: by_adapter() == {"hci0": -80, DONGLE: -60})
    assert exporter.samples()[("ble_sensor_rssi_dbm", "kitchen")] == -60  # the strongest adapter's
    bluez.remove_adapter("hci1")
    exporter.wait_until("hci0 alone", lambda: by_adapter() == {"hci0": -80})
    status = json.loads(exporter.get("/status")[1])
    dongle = next(a for a in status["adapters"] if a["adapter"] == DONGLE)
    assert dongle["up"] is False and dongle["address"] == DONGLE
    assert "disappeared" in dongle["last_error"] or "no adapter has the address" in dongle["last_error"]
    metrics = labelled_samples(exporter.get("/metrics")[1])
    assert metrics[("ble_exporter_scanner_up", (("adapter", DONGLE),))] == 0
    assert metrics[("ble_exporter_scanner_up", (("adapter", "hci0"),))] == 1
    bluez.add_adapter("hci2", address=DONGLE)  # plugged in again, renumbered
    exporter.wait_until("the dongle back", lambda: by_adapter() == {"hci0": -80, DONGLE: -62}, timeout=15)
    assert exporter.process.poll() is None
    assert exporter.stop() == 0
    log = exporter.log_file.read_text()
    assert log.count(f"retrying {DONGLE} at scan starts") == 1
    assert f"scanner: adapter {DONGLE} works again; scanning with it" in log


def test_the_exporter_exits_1_when_no_adapter_of_several_works(
    bluez: BluezMock, exporter_factory: ExporterFactory
) -> None:
    bluez.add_adapter("hci1", address=DONGLE)
    exporter = exporter_factory(FAST + "adapter: [hci0, hci1]\n" + devices(kitchen=KITCHEN), env=bluez.env())
    exporter.wait_healthy()
    bluez.power_off("hci1")
    bluez.power_off("hci0")
    assert exporter.process.wait(15) == 1
    assert "no adapter can scan (hci0: " in exporter.stderr()


# ---- TLS and basic auth (web_config_file, in the exporter-toolkit format) ----

SCRAPE_PASSWORD = "scrape-pass"


def https(
    port: int, path: str, tls_files: TlsFiles, auth: tuple[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    request = urllib.request.Request(f"https://127.0.0.1:{port}{path}")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return int(response.status), dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), dict(e.headers), e.read().decode()


def secured_exporter(tmp_path: Path, tls_files: TlsFiles, exporter_factory: ExporterFactory) -> Exporter:
    hashed = bcrypt.hashpw(SCRAPE_PASSWORD.encode(), bcrypt.gensalt(10)).decode()  # htpasswd -nBC 10's cost
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {tls_files.cert}\n  key_file: {tls_files.key}\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    exporter = exporter_factory(FAST + f"web_config_file: {web}\n" + devices(one=ONE), "--simulate")
    deadline = time.monotonic() + 15
    error: Exception | None = None
    while True:
        try:
            if https(exporter.port, "/healthz", tls_files)[0] == 200:  # /healthz needs no credentials
                return exporter
        except OSError as e:
            error = e
        assert exporter.process.poll() is None, exporter.stderr()
        assert time.monotonic() < deadline, f"no HTTPS answer: {error!r}"
        time.sleep(0.1)


def test_credentials_over_tls(tmp_path: Path, tls_files: TlsFiles, exporter_factory: ExporterFactory) -> None:
    exporter = secured_exporter(tmp_path, tls_files, exporter_factory)
    status, headers, body = https(exporter.port, "/metrics", tls_files, ("prometheus", SCRAPE_PASSWORD))
    assert status == 200 and "ble_exporter_http_auth_failures_total 0.0" in body
    for credentials in (None, ("prometheus", "wrong"), ("nobody", SCRAPE_PASSWORD)):
        for path in ("/metrics", "/status", "/"):
            status, headers, _ = https(exporter.port, path, tls_files, credentials)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm="), (credentials, path)
    exporter.wait_until(  # /metrics renders counters at most once a second
        "the refusals counted",
        lambda: (
            "ble_exporter_http_auth_failures_total 9.0"
            in https(exporter.port, "/metrics", tls_files, ("prometheus", SCRAPE_PASSWORD))[2]
        ),
        timeout=5,
    )
    with pytest.raises(OSError):  # plain HTTP on the TLS port: no answer
        urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/healthz", timeout=3)
    assert exporter.stop() == 0
    log = exporter.log_file.read_text()
    assert log.count("requests with wrong or missing credentials refused") == 1  # one summary a minute at most
    assert SCRAPE_PASSWORD not in log


def test_a_real_prometheus_scrapes_over_tls_with_basic_auth(
    tmp_path: Path, tls_files: TlsFiles, exporter_factory: ExporterFactory
) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is missing: apt-get install prometheus (make test-deps does)"
    exporter = secured_exporter(tmp_path, tls_files, exporter_factory)
    port = free_port()

    def job(name: str, password: str) -> str:
        return (
            f"  - job_name: {name}\n    scheme: https\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
            f"    tls_config: {{ca_file: {tls_files.ca}}}\n"
            f"    basic_auth: {{username: prometheus, password: {password}}}\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n"
        )

    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs:\n" + job("ble-exporter", SCRAPE_PASSWORD) + job("wrong-password", "guess"))
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def both_scraped() -> dict[str, Any]:
        """Prometheus's targets by job once it has scraped both, else none."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=2) as response:
                targets = {t["labels"]["job"]: t for t in json.load(response)["data"]["activeTargets"]}
        except (OSError, ValueError, KeyError):
            return {}
        return targets if {t["health"] for t in targets.values()} >= {"up", "down"} else {}

    try:
        targets = wait_until("Prometheus scraping both jobs", both_scraped, 60, interval=0.5, process=process)
        assert targets["ble-exporter"]["health"] == "up" and targets["ble-exporter"]["scrapeUrl"].startswith("https://")
        assert targets["wrong-password"]["health"] == "down" and "401" in targets["wrong-password"]["lastError"]
    finally:
        process.terminate()
        process.wait(15)
    assert exporter.stop() == 0


# ---- calibration, end to end: the real bleak, a mock BlueZ, the exporter's /metrics and /status ----


def test_calibration_is_applied_exactly_and_a_reload_changes_it_without_resetting_a_counter(
    bluez: BluezMock, exporter_factory: ExporterFactory
) -> None:
    """The sensor advertises 27.01 °C and 44.93 %RH (pvvx #740's data1); the config takes 0.51 °C off
    and maps humidity through (40, 42) and (50, 53): 1.1 * 44.93 - 2 = 47.423 %RH."""
    calibrated = (
        f'devices:\n  "{KITCHEN}":\n    name: kitchen\n    temperature_offset: -0.51\n'
        "    humidity_points: [[40, 42], [50, 53]]\n"
    )
    exporter = exporter_factory(FAST + calibrated, env=bluez.env())
    exporter.wait_healthy()
    bluez.wait_scanning()
    data = {"0000fcd2-0000-1000-8000-00805f9b34fb": bytes.fromhex("4000b00151028d0a038d11")}

    def reading_is(temperature: float) -> bool:
        bluez.advertise(KITCHEN, data, rssi=-58)
        got = exporter.samples().get(("ble_sensor_temperature_celsius", "kitchen"))
        return got is not None and abs(got - temperature) < 1e-9

    exporter.wait_until("the calibrated temperature", lambda: reading_is(26.5))
    got = exporter.samples()
    assert got[("ble_sensor_humidity_percent", "kitchen")] == pytest.approx(47.423, abs=1e-9)
    assert got[("ble_sensor_calibrated", "kitchen")] == 1
    (device,) = json.loads(exporter.get("/status")[1])["devices"]
    assert device["raw"] == {"temperature": 27.01, "humidity": 44.93}
    scans, frames = got[("ble_exporter_scans_total", "")], got[("ble_sensor_frames_total", "kitchen")]
    rewrite(exporter, FAST + calibrated.replace("temperature_offset: -0.51", "temperature_offset: 0.49"))
    exporter.process.send_signal(signal.SIGHUP)
    exporter.wait_until("the new offset", lambda: reading_is(27.5))
    got = exporter.samples()
    assert got[("ble_exporter_scans_total", "")] > scans and got[("ble_sensor_frames_total", "kitchen")] >= frames
    assert got[RELOADED] == 1 and exporter.stop() == 0


def test_a_reload_log_line_names_the_adapters_as_the_config_writes_them() -> None:
    from ble_exporter.config import parse_config
    from ble_exporter.daemon import config_changes

    changed = config_changes(parse_config("adapter: hci0\n"), parse_config("adapter: [hci0, 00:1a:7d:da:71:13]\n"))
    assert changed == "adapter hci0 -> hci0, 00:1A:7D:DA:71:13"
