"""The command line, and the exporter end to end as a process: real HTTP, real signals, exit statuses."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
from bluez_mock import BluezMock
from support import REPO, Exporter, ExporterFactory, free_port, run_cli, samples, start_cli, wait_until

from ble_exporter import __version__
from ble_exporter.main import main

FAST = "scan_interval_seconds: 1\nscan_duration_seconds: 1\n"  # the shortest a real scan may be
DEVICES = """devices:
  "A4:C1:38:00:00:01": one
  "A4:C1:38:00:00:02": two
  "A4:C1:38:00:00:03": {name: three, bindkey: 231d39c1d7cc1ab1aee224cd096db932}
"""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(REPO / "etc/ble-exporter/config.yaml")]) == 0
    summary, checked = capsys.readouterr().out.splitlines()
    assert "OK: 0 devices" in summary and "HTTP on 0.0.0.0:8000" in summary
    assert checked.startswith("the log file checked as user ")  # which checks depend on who runs it


def test_check_config_says_which_sensors_are_calibrated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"log_file: {tmp_path}/x.log\ndevices:\n"
        '  "A4:C1:38:00:00:01":\n    name: kitchen\n    temperature_offset: -0.4\n'
        "    humidity_points: [[33, 33.1], [72, 75.3]]\n"
        '  "A4:C1:38:00:00:02": attic\n'
    )
    assert main(["check-config", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("calibrated:")] == [
        "calibrated: kitchen (temperature -0.4 °C, humidity × 1.082 -2.608 %RH (two points))"
    ]


def test_check_config_problems_exit_2_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("listen_port: 0\nscan_mode: loud\n")
    assert main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [  # in line order
        f"ble-exporter: error: {config}:1: listen_port 0 is not a TCP port; use 1-65535, e.g. 8000",
        f"ble-exporter: error: {config}:2: scan_mode `loud` is not one of auto, passive, active",
    ]


def test_run_simulated_end_to_end(exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(FAST + DEVICES, "--simulate")
    exporter.wait_healthy()

    def all_three() -> dict[tuple[str, str], float]:
        got = exporter.samples()
        return got if all(("ble_sensor_seen", d) in got for d in ("one", "two", "three")) else {}

    got = exporter.wait_until("readings of all three sensors", all_three, 20, interval=0.2)
    for device in ("one", "two", "three"):
        assert got[("ble_sensor_seen", device)] == 1
        assert abs(got[("ble_sensor_last_update_timestamp_seconds", device)] - time.time()) < 30
    assert got[("ble_exporter_configured_devices", "")] == 3
    assert got[("ble_exporter_advertisements_decoded_total", "")] >= 3
    assert not any(name == "ble_sensor_seen" and d.startswith("neighbour") for name, d in got)
    for (name, _device), value in got.items():
        if name == "ble_sensor_temperature_celsius":
            assert -10 <= value <= 40
        elif name == "ble_sensor_humidity_percent":
            assert 0 <= value <= 100
    promtool = subprocess.run(
        ["promtool", "check", "metrics"], input=exporter.get("/metrics")[1], capture_output=True, text=True, check=False
    )
    assert (promtool.returncode, promtool.stdout + promtool.stderr) == (0, "")
    status, body = exporter.get("/status")
    document = json.loads(body)
    assert status == 200 and document["devices_configured"] == 3 and document["scan_mode"] == "simulated"
    assert document["adapter"] == "simulated" and document["demo_devices"] == 0
    began = time.monotonic()
    assert exporter.stop() == 0
    assert time.monotonic() - began < 2.0
    log = exporter.log_file.read_text()
    assert "scan: end, heard" in log and "stopped" in log
    assert "231d39c1d7cc1ab1aee224cd096db932" not in log


def test_run_simulated_with_no_devices_invents_demo_sensors(exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(FAST + "devices: {}\n", "--simulate")
    exporter.wait_healthy()
    exporter.wait_until("demo sensors", lambda: 'ble_sensor_seen{device="demo_' in exporter.get("/metrics")[1], 15, 0.2)
    assert 'ble_sensor_seen{device="demo_' in exporter.get("/metrics")[1]
    document = json.loads(exporter.get("/status")[1])
    assert (document["devices_configured"], document["demo_devices"], document["adapter"]) == (0, 3, "simulated")
    assert exporter.stop() == 0
    assert "no devices in" in exporter.log_file.read_text()


def test_sigint_is_a_clean_stop_too(exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(FAST + DEVICES, "--simulate")
    exporter.wait_healthy()
    exporter.process.send_signal(signal.SIGINT)
    assert exporter.process.wait(5) == 0


def test_bad_config_exits_2_with_one_line(exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory("scan_mode: loud\n", "--simulate")
    assert exporter.process.wait(10) == 2
    err = exporter.stderr()
    assert err.count("\n") == 1 and "scan_mode `loud`" in err and "Traceback" not in err


def test_unwritable_log_file_is_a_config_error(exporter_factory: ExporterFactory, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    exporter = exporter_factory(FAST, "--simulate", "--log-file", f"{blocker}/sub/x.log")
    assert exporter.process.wait(10) == 2
    err = exporter.stderr()
    assert err == (
        f"ble-exporter: error: --log-file: log file {blocker}/sub/x.log cannot be created: {blocker} is a file, "
        "not a directory; choose another path\n"
    )


def test_port_in_use_exits_3(exporter_factory: ExporterFactory) -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        exporter = exporter_factory(FAST + DEVICES, "--simulate", port=port)
        assert exporter.process.wait(10) == 3
    err = exporter.stderr()
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def test_no_bluetooth_at_all_exits_1_with_a_clear_error(exporter_factory: ExporterFactory, tmp_path: Path) -> None:
    import os

    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={tmp_path}/no-bus")
    exporter = exporter_factory(FAST + DEVICES, env=env)
    assert exporter.process.wait(15) == 1
    err = exporter.stderr()
    assert err.startswith(
        "ble-exporter: error: Bluetooth scan start on hci0 failed: the system D-Bus is not running "
        f"({tmp_path}/no-bus: No such file or directory); start it with `systemctl start dbus`"
    )
    assert "Traceback" not in err and err.count("\n") == 1


# ---- the exporter process scanning through real bleak and a mock bluetoothd (tests/bluez_mock.py) ----

MOCK_DEVICES = 'devices:\n  "A4:C1:38:AA:BB:CC": kitchen\n'
PVVX = {  # pvvx issue #740: data1 and data2 under the same packet id 176
    "0000fcd2-0000-1000-8000-00805f9b34fb": [
        bytes.fromhex("4000b00151028d0a038d11"),
        bytes.fromhex("4000b00c200b10001101"),
    ]
}


def advertise_until(bluez: BluezMock, exporter: Exporter, wanted: str, timeout: float = 20) -> str:
    """Advertise the pvvx pair over and over until /metrics shows `wanted`; return the scrape."""
    bluez.wait_scanning()
    key, packets = next(iter(PVVX.items()))
    sent = itertools.count()

    def advertised_and_shown() -> str:
        bluez.advertise("A4:C1:38:AA:BB:CC", {key: packets[next(sent) % 2]}, rssi=-58)
        text = exporter.get("/metrics")[1]
        return text if wanted in text else ""

    return exporter.wait_until(f"{wanted} in /metrics", advertised_and_shown, timeout)


def test_run_with_bleak_exports_what_bluez_reports(bluez: BluezMock, exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(FAST + MOCK_DEVICES, env=bluez.env())
    exporter.wait_healthy()
    text = advertise_until(bluez, exporter, 'ble_sensor_battery_volts{device="kitchen"}')
    text = advertise_until(bluez, exporter, 'ble_sensor_temperature_celsius{device="kitchen"}')
    got = samples(text)
    assert got[("ble_sensor_temperature_celsius", "kitchen")] == 27.01
    assert got[("ble_sensor_humidity_percent", "kitchen")] == 44.93
    assert got[("ble_sensor_battery_percent", "kitchen")] == 81
    assert got[("ble_sensor_rssi_dbm", "kitchen")] == -58
    assert '"scan_mode": "active"' in exporter.get("/status")[1]
    assert exporter.stop() == 0
    assert not bluez.is_discovering()  # the scan was stopped on the way out
    assert "scanning actively instead" in exporter.log_file.read_text()


def test_run_without_the_adapter_exits_1(bluez: BluezMock, exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(FAST + MOCK_DEVICES + "adapter: hci7\n", env=bluez.env())
    assert exporter.process.wait(15) == 1
    err = exporter.stderr()
    assert err.startswith("ble-exporter: error: Bluetooth scan start on hci7 failed: ")
    assert "adapter hci7 does not exist" in err and err.count("\n") == 1 and "Traceback" not in err
    assert "adapter hci7 does not exist" in exporter.log_file.read_text()


@pytest.mark.parametrize(
    ("fault", "fix"),
    [
        ("kill_bluetoothd", "BlueZ \\(org.bluez\\) left the system D-Bus"),
        ("remove_adapter", "adapter hci0 disappeared"),
        ("power_off", "adapter hci0 was powered off"),
    ],
)
def test_bluez_or_adapter_vanishing_mid_scan_exits_1_at_once(
    bluez: BluezMock, exporter_factory: ExporterFactory, fault: str, fix: str
) -> None:
    exporter = exporter_factory(
        "scan_interval_seconds: 60\nscan_duration_seconds: 50\n" + MOCK_DEVICES, env=bluez.env()
    )
    exporter.wait_healthy()
    deadline = time.monotonic() + 10
    while '"scan_mode": "active"' not in exporter.get("/status")[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    getattr(bluez, fault)()
    began = time.monotonic()
    assert exporter.process.wait(10) == 1
    assert time.monotonic() - began < 3.0  # within the scan, not at its end 50 s later
    err = exporter.stderr()
    assert re.search(fix, err) and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(fix, exporter.log_file.read_text())


# ---- the silent-scan watchdog, through real bleak and the mock bluetoothd ----

WATCHED = FAST + MOCK_DEVICES + "watchdog_silent_scans: {}\n"
RESTART_LINE = re.compile(
    r"WARNING ble_exporter\.scanner: scanner: no advert at all in 3 scans on hci0 \(active mode, "
    r"last advert \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\); restarting the scanner"
)


def scanner_state(exporter: Exporter) -> tuple[float, float, float]:
    """(ble_exporter_scanner_up, ble_exporter_scanner_restarts_total, ble_exporter_scans_total)."""
    got = exporter.samples()
    return (
        got[("ble_exporter_scanner_up", "")],
        got[("ble_exporter_scanner_restarts_total", "")],
        got[("ble_exporter_scans_total", "")],
    )


def test_silent_scanner_is_restarted_in_process_and_recovers(
    bluez: BluezMock, exporter_factory: ExporterFactory
) -> None:
    exporter = exporter_factory(WATCHED.format(3), env=bluez.env())
    exporter.wait_healthy()
    advertise_until(bluez, exporter, 'ble_sensor_temperature_celsius{device="kitchen"}')
    assert scanner_state(exporter)[:2] == (1, 0)
    # Silence: after three scans without any advert the scanner is renewed, and scanner_up drops.
    exporter.wait_until("a scanner restart", lambda: scanner_state(exporter)[1] >= 1, 10)
    up, _restarts, _scans = scanner_state(exporter)
    assert up == 0
    status = json.loads(exporter.get("/status")[1])
    assert status["scanner"]["up"] is False and status["scanner"]["restarts"] >= 1
    assert RESTART_LINE.search(exporter.log_file.read_text()), exporter.log_file.read_text()[-2000:]
    assert 'ble_sensor_temperature_celsius{device="kitchen"}' not in exporter.get("/metrics")[1]
    # The renewed scanner keeps opening discovery sessions while nothing is heard, and renews again.
    starts = bluez.discovery_starts()
    exporter.wait_until("new discovery sessions", lambda: bluez.discovery_starts() >= starts + 2, 5)
    exporter.wait_until("a second restart", lambda: scanner_state(exporter)[1] >= 2, 10)
    # Adverts again: readings come back and the scanner is up.
    advertise_until(bluez, exporter, 'ble_sensor_temperature_celsius{device="kitchen"}')
    exporter.wait_until("scanner_up 1", lambda: scanner_state(exporter)[0] == 1, 5)
    assert json.loads(exporter.get("/status")[1])["scanner"]["up"] is True
    assert exporter.process.poll() is None  # silence alone never ends the process
    assert exporter.stop() == 0
    log = exporter.log_file.read_text()
    assert "scanner: adverts are arriving again" in log and "Traceback" not in log
    assert not bluez.is_discovering()


def test_watchdog_silent_scans_0_never_restarts(bluez: BluezMock, exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(WATCHED.format(0), env=bluez.env())
    exporter.wait_healthy()
    advertise_until(bluez, exporter, 'ble_sensor_temperature_celsius{device="kitchen"}')
    scans = scanner_state(exporter)[2]
    exporter.wait_until("six silent scans", lambda: scanner_state(exporter)[2] >= scans + 6, 10)
    assert scanner_state(exporter)[:2] == (1, 0)
    assert exporter.process.poll() is None
    assert "restarting the scanner" not in exporter.log_file.read_text()


# ---- the log file: deleted, rotated, on a full disk; the scan loop and /metrics carry on ----


def scans(exporter: Exporter) -> float:
    return exporter.samples()[("ble_exporter_scans_total", "")]


def wait_for_line(path: Path, text: str, timeout: float = 5) -> str:
    def content() -> str:
        with contextlib.suppress(FileNotFoundError):
            content = path.read_text()
            if text in content:
                return content
        return ""

    return wait_until(f"{text!r} in {path}", content, timeout, interval=0.05)


def test_log_file_deleted_rotated_or_its_directory_removed_while_running(exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(FAST + DEVICES, "--simulate")
    exporter.wait_healthy()
    log = exporter.log_file
    wait_for_line(log, "scan: end")
    log.unlink()  # deleted
    wait_for_line(log, "scan: end")  # a new file, with the next scan in it
    rotated = log.with_name(log.name + ".1")
    log.rename(rotated)  # what logrotate does (create mode, no copytruncate)
    wait_for_line(log, "scan: end")
    size = rotated.stat().st_size
    before = scans(exporter)
    exporter.wait_until("two more scans", lambda: scans(exporter) >= before + 2, 5)
    assert rotated.stat().st_size == size  # nothing more goes to the rotated file
    shutil.rmtree(log.parent)  # the whole directory: records are dropped, scanning goes on
    before = scans(exporter)
    exporter.wait_until("three scans without a log directory", lambda: scans(exporter) >= before + 3, 5)
    log.parent.mkdir()
    wait_for_line(log, "scan: end")
    assert exporter.stop() == 0
    assert "stopped" in log.read_text() and "Traceback" not in log.read_text()
    assert exporter.stderr() == ""


def test_full_disk_under_the_log_file_does_not_stop_scanning_or_serving(
    exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    # The log path is a symlink, switched to /dev/full (every write: ENOSPC, "No space left on
    # device") while running, then back to a file: as a disk that fills up and is cleaned.
    real = tmp_path / "real.log"
    link = tmp_path / "logs" / "ble_exporter.log"
    link.parent.mkdir()
    link.symlink_to(real)
    exporter = exporter_factory(FAST + DEVICES, "--simulate")
    exporter.wait_healthy()
    wait_for_line(real, "scan: end")
    swap = tmp_path / "logs" / "swap"
    swap.symlink_to("/dev/full")
    swap.replace(link)
    before = scans(exporter)
    exporter.wait_until("three scans with a full disk", lambda: scans(exporter) >= before + 3, 8)
    for _ in range(10):
        assert exporter.get("/metrics")[0] == 200 and exporter.get("/status")[0] == 200
    assert exporter.process.poll() is None
    cleaned = tmp_path / "cleaned.log"
    swap.symlink_to(cleaned)
    swap.replace(link)
    wait_for_line(cleaned, "scan: end")  # logging resumes once there is room again
    assert exporter.stop() == 0
    assert exporter.stderr() == ""  # dropped records are not printed either
    assert "Traceback" not in real.read_text() + cleaned.read_text()


# ---- SIGTERM: a clean stop within 2 s, BlueZ not left discovering, whatever the clients do ----


def test_sigterm_mid_scan_stops_discovery_within_2_s_despite_clients(
    bluez: BluezMock, exporter_factory: ExporterFactory
) -> None:
    exporter = exporter_factory(
        "scan_interval_seconds: 60\nscan_duration_seconds: 50\n" + MOCK_DEVICES, env=bluez.env()
    )
    exporter.wait_healthy()
    exporter.wait_until("the scan to start", bluez.is_discovering, 10)
    advertise_until(bluez, exporter, "ble_exporter_advertisements_received_total 1.0", timeout=10)
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    clients = [socket.create_connection(("127.0.0.1", exporter.port)) for _ in range(20)]  # idle
    for s in clients[:5]:
        s.sendall(request[:7])  # trickling
    clients[5].setblocking(False)
    with contextlib.suppress(BlockingIOError):
        clients[5].send(request * 20_000)  # a pipelined flood whose answers are never read
    time.sleep(0.2)
    try:
        exporter.process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        assert exporter.process.wait(5) == 0
        assert time.monotonic() - began < 2.0
    finally:
        for s in clients:
            s.close()
    assert not bluez.is_discovering()  # StopDiscovery went out before the exit
    assert exporter.stderr() == ""
    log = exporter.log_file.read_text()
    assert log.rstrip().endswith("INFO ble_exporter: stopped") and "Traceback" not in log


# ---- what a new user runs into (issue 12) ----


def start(tmp_path: Path, config: str, *args: str) -> subprocess.Popen[str]:
    """`ble-exporter run --config` on exactly `config` (the fixture's own head sets listen_address)."""
    path = tmp_path / "own.yaml"
    path.write_text(config)
    return start_cli("run", "--config", str(path), *args)


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as response:
        return int(response.status)


def test_listen_address_all_is_dual_stack_and_logged_with_brackets(tmp_path: Path) -> None:
    port = free_port()
    log_file = tmp_path / "x.log"
    process = start(tmp_path, f'listen_address: "::"\nlisten_port: {port}\nlog_file: {log_file}\n', "--simulate")
    try:
        wait_until(
            "ready in the log", lambda: log_file.exists() and "ready" in log_file.read_text(), 15, process=process
        )
        assert get(f"http://127.0.0.1:{port}/healthz") == 200  # IPv4 too, as `::` promises
        assert get(f"http://[::1]:{port}/healthz") == 200
        assert f"ready: HTTP on [::]:{port}, scanning" in log_file.read_text()
    finally:
        process.terminate()
        assert process.wait(5) == 0


def test_a_port_below_1024_without_the_privilege_says_so(tmp_path: Path) -> None:
    # As root the exporter runs without CAP_NET_BIND_SERVICE, as the packaged service does.
    caps = "-net_bind_service"
    prefix = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "--"] if os.geteuid() == 0 else []
    port = next(p for p in range(1023, 600, -1) if port_is_free(p))
    result = run_once(
        tmp_path, f"listen_port: {port}\nlog_file: {tmp_path}/x.log\n", "run", "--simulate", prefix=prefix
    )
    assert result.returncode == 3, result.stderr
    assert result.stderr == (
        f"ble-exporter: error: cannot listen on *:{port} (Permission denied); ports below 1024 need privileges, "
        f"which the service does not have; use e.g. 8000; change listen_port in {tmp_path}/c.yaml\n"
    )


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("log_file: {tmp}\n", "{c}:1: log file {tmp} is a directory; name a file in it, e.g. {tmp}/ble-exporter.log"),
        (
            "log_file: {tmp}/c.yaml/logs/x.log\n",
            "{c}:1: log file {tmp}/c.yaml/logs/x.log cannot be created: {c} is a file, not a directory",
        ),
        ("listen_port: 80\nlog_file: {tmp}/x.log\n", "{c}:1: listen_port 80: ports below 1024 need privileges"),
        ("scan_duration_seconds: 0.01\nlog_file: {tmp}/x.log\n", "{c}:1: scan_duration_seconds 0.01 is below 1 s"),
        # /proc looks writable to root, but nothing can be made there: only trying tells
        (
            "log_file: /proc/ble-exporter-test/x.log\n",
            "{c}:1: log file /proc/ble-exporter-test/x.log cannot be written (No such file or directory); "
            "choose another path",
        ),
        (
            "log_file: {tmp}/ro/logs/x.log\n",
            "{c}:1: log file {tmp}/ro/logs/x.log cannot be written (Read-only file system); choose another path",
        ),
        (
            "log_file: {tmp}/x.log\nweb_config_file: {tmp}/web.yml\n",
            "{tmp}/web.yml: no such file; create it (README: Securing the endpoints) or change web_config_file",
        ),
    ],
)
def test_check_config_catches_what_run_would_at_start_up(tmp_path: Path, config: str, expected: str) -> None:
    """The same broken configs to both commands: the same lines, exit 2 (`run` refuses what the service's
    check refuses, but a privileged port, which root by hand may bind)."""
    text = config.format(tmp=tmp_path)
    (tmp_path / "ro").mkdir()
    prefix = read_only_mount(tmp_path / "ro")
    checked = run_once(tmp_path, text, "check-config", prefix=prefix)
    want = expected.format(tmp=tmp_path, c=tmp_path / "c.yaml")
    assert checked.returncode == 2 and checked.stderr.startswith(f"ble-exporter: error: {want}"), checked.stderr
    assert checked.stderr.count("\n") == 1
    if "listen_port" not in text:  # the service cannot bind it; root by hand can, so `run` is not refused
        ran = run_once(tmp_path, text, "run", prefix=prefix)
        assert ran.returncode == 2 and ran.stderr == checked.stderr


def read_only_mount(directory: Path) -> list[str]:
    """A command prefix that runs the command with an empty read-only filesystem on `directory` (a tmpfs
    in a mount namespace of its own; a user namespace makes that possible without root)."""
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    return ["unshare", *user, "--mount", "sh", "-c", f'mount -t tmpfs -o ro tmpfs "{directory}" && exec "$@"', "-"]


def test_checking_a_log_file_leaves_nothing_behind(tmp_path: Path) -> None:
    """check-config does what `run` will (makes the directories, opens the file) and undoes it."""
    ok = run_once(tmp_path, f"log_file: {tmp_path}/new/logs/x.log\n", "check-config")
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "x.log").write_text("kept\n")
    ok = run_once(tmp_path, f"log_file: {tmp_path}/logs/x.log\n", "check-config")
    assert ok.returncode == 0 and (tmp_path / "logs" / "x.log").read_text() == "kept\n"
    too_long = "x" * 300  # the directories are made, then the file cannot be
    failed = run_once(tmp_path, f"log_file: {tmp_path}/a/b/{too_long}\n", "check-config")
    assert failed.returncode == 2 and "(File name too long)" in failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "logs"]


def test_check_config_as_a_user_who_cannot_write_the_log_says_it_is_their_check(
    tmp_path: Path, as_nobody: list[str]
) -> None:
    """A permission is a matter of who writes: as another user than the service's, a log file that user
    cannot write is a note, not an error (the service, as ble-exporter, may well write it)."""
    prefix = as_nobody
    shared = Path(tempfile.mkdtemp(prefix="ble-exporter-test-"))  # pytest's tmp_path is private to root
    shared.chmod(0o755)
    logs = shared / "logs"
    logs.mkdir(mode=0o700)
    try:
        result = run_once(shared, f"log_file: {logs}/x.log\n", "check-config", prefix=prefix)
    finally:
        shutil.rmtree(shared)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("the log file checked as user nobody; the service uses them as ble-exporter")
    assert lines[2].startswith(f"note: as user nobody: log file {logs}/x.log cannot be reached (permission denied")


def test_an_empty_log_file_option_and_real_scans_shorter_than_a_second_are_refused(tmp_path: Path) -> None:
    empty = run_once(tmp_path, "", "run", "--log-file", "")
    assert empty.returncode == 2 and "argument --log-file: is empty; give a file path" in empty.stderr
    fast = run_once(
        tmp_path, f"scan_interval_seconds: 0.01\nscan_duration_seconds: 0.01\nlog_file: {tmp_path}/x\n", "run"
    )
    assert fast.returncode == 2 and "scan_interval_seconds 0.01 is below 1 s" in fast.stderr
    assert fast.stderr.count("\n") == 2 and "Traceback" not in fast.stderr


def test_a_relative_log_file_option_is_taken_from_the_current_directory(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    port = free_port()
    config.write_text(f"listen_port: {port}\nlisten_address: 127.0.0.1\n")
    process = start_cli(
        "run", "--simulate", "--config", str(config), "--log-file", "rel/x.log",
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=None,
    )  # fmt: skip
    try:
        wait_until("rel/x.log", (tmp_path / "rel" / "x.log").exists, 15, process=process)
    finally:
        process.terminate()
        process.wait(5)


def run_once(tmp_path: Path, config: str, *args: str, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "c.yaml"
    path.write_text(config)
    return run_cli(*args[:1], "--config", str(path), *args[1:], prefix=prefix)


# ---- secrets: bindkeys readable by every user are warned about ----


def test_a_config_with_bindkeys_readable_by_everyone_is_warned_about(tmp_path: Path) -> None:
    body = 'devices:\n  "A4:C1:38:00:00:01":\n    name: shed\n    bindkey: "231d39c1d7cc1ab1aee224cd096db932"\n'
    config = tmp_path / "c.yaml"
    config.write_text(f"log_file: {tmp_path}/x.log\n" + body)
    config.chmod(0o644)
    result = run_once(tmp_path, config.read_text(), "check-config")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stdout  # on stderr, like the errors: a script keeping stderr sees it
    (warning,) = result.stderr.splitlines()
    assert warning == (
        f"ble-exporter: warning: {tmp_path}/c.yaml holds bindkeys (with one, anyone can forge that sensor's "
        f"readings) and every user on this machine can read it; run `sudo chmod 640 {tmp_path}/c.yaml` and "
        f"`sudo chgrp ble-exporter {tmp_path}/c.yaml`"
    )
    (tmp_path / "c.yaml").chmod(0o640)
    quiet = run_cli("check-config", "--config", str(tmp_path / "c.yaml"))
    assert quiet.returncode == 0 and "warning" not in quiet.stdout + quiet.stderr


def test_a_user_who_cannot_read_the_config_is_told_to_use_sudo(tmp_path: Path, as_nobody: list[str]) -> None:
    shared = Path(tempfile.mkdtemp(prefix="ble-exporter-test-"))
    shared.chmod(0o755)
    config = shared / "config.yaml"
    config.write_text("devices: {}\n")
    config.chmod(0o600)  # as root:root would be without the package's group
    prefix = as_nobody
    try:
        result = run_cli("check-config", "--config", str(config), prefix=prefix)
    finally:
        shutil.rmtree(shared)
    assert result.returncode == 2 and result.stderr == (
        f"ble-exporter: error: {config}: cannot be read (Permission denied); run it as root (sudo), or check its "
        "permissions\n"
    )
