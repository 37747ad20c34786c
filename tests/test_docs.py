"""The README and the man page say what the code does: every metric and key is documented, and the
faults table quotes the exporter's own lines (made here by real runs, paths and ports put back to the
packaged ones)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from bluez_mock import BluezMock
from support import REPO, ExporterFactory, free_port, labelled_samples, run_cli

from ble_exporter.config import KEYS

README = (REPO / "README.md").read_text()
MAN = (REPO / "debian" / "ble-exporter.1").read_text().replace("\\-", "-")
PACKAGED_CONFIG = "/etc/ble-exporter/config.yaml"


def metric_names() -> set[str]:
    """Every series name of the golden exposition (the collector's whole output)."""
    golden = (REPO / "tests" / "golden" / "metrics.txt").read_text()
    return {m.group(1) for m in re.finditer(r"^([a-z_]+)[{ ]", golden, re.M)}


def test_every_metric_is_in_the_readme_table_and_the_man_page() -> None:
    names = metric_names()
    assert len(names) >= 18
    for name in names:
        assert f"`{name}`" in README, name
        assert name in MAN, name


def test_every_config_key_is_in_the_readme_example() -> None:
    example = README[README.index("## Configuration") :]
    for key in KEYS:
        assert re.search(rf"^{key}:|^  \"A4", example, re.M) and f"{key}:" in example, key


def fault_line(text: str) -> str:
    """The README's faults-table row whose log line starts like `text` (up to its first varying part)."""
    rows = [line for line in README.splitlines() if line.startswith("| ") and text in line]
    assert len(rows) == 1, (text, rows)
    return rows[0].replace("\\|", "|")  # a | in a Markdown table cell is written \|


def run(config: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(config)
    result = run_cli("run", "--config", str(path), prefix=args, env=env)
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr.strip().removeprefix("ble-exporter: error: ").replace(str(path), PACKAGED_CONFIG)


def test_the_no_dbus_line_is_the_real_one(tmp_path: Path) -> None:
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={tmp_path}/bus")
    line = run(f"log_file: {tmp_path}/x.log\n", tmp_path, env=env).replace(
        f"{tmp_path}/bus", "/run/dbus/system_bus_socket"
    )
    shown = line.split("`systemctl start dbus`")[0]  # what follows depends on this machine's kernel
    assert shown in fault_line("the system D-Bus is not running")


def test_the_port_lines_are_the_real_ones(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("", port))
        blocker.listen()
        in_use = run(f"listen_port: {port}\nlog_file: {tmp_path}/x.log\n", tmp_path, "env")
    in_use = in_use.replace(str(port), "18085")
    assert in_use in fault_line("(Address already in use)")
    # As root, without the capability the packaged service lacks too.
    caps = "-net_bind_service"
    prefix = ("setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "--") if os.geteuid() == 0 else ("env",)
    privileged = run(f"listen_port: 80\nlog_file: {tmp_path}/x.log\n", tmp_path, *prefix)
    assert privileged in fault_line("ports below 1024 need privileges")


@pytest.mark.parametrize("log_file", ["/var/log"])
def test_the_log_file_line_is_the_real_one(tmp_path: Path, log_file: str) -> None:
    line = run(f"log_file: {log_file}\n", tmp_path, "env")
    assert line in fault_line(f"log file {log_file} is a directory")


# ---- several adapters, through real bleak and the mock bluetoothd (tests/bluez_mock.py) ----

DONGLE = "00:1A:7D:DA:71:13"


def test_the_adapter_address_not_found_line_is_the_real_one(bluez: BluezMock, tmp_path: Path) -> None:
    line = run(f'adapter: "{DONGLE}"\nlog_file: {tmp_path}/x.log\n', tmp_path, env=bluez.env())
    assert line in fault_line("no adapter has the address")


def test_the_one_adapter_of_several_lines_are_the_real_ones(
    bluez: BluezMock, exporter_factory: ExporterFactory
) -> None:
    """A dongle pulled mid-scan: set aside with one line while hci0 scans on; plugged back in, it is
    taken again at the next scan start (its first retry)."""
    bluez.add_adapter("hci1", address=DONGLE)
    exporter = exporter_factory(
        "scan_interval_seconds: 3\nscan_duration_seconds: 2.5\nwatchdog_silent_scans: 0\nadapter: [hci0, hci1]\n",
        env=bluez.env(),
    )
    exporter.wait_until(
        "both adapters scanning", lambda: bluez.discovery_starts("hci0") and bluez.discovery_starts("hci1")
    )
    starts = bluez.discovery_starts("hci1")
    exporter.wait_until("the next scan's start", lambda: bluez.discovery_starts("hci1") > starts, 10, 0.02)

    def logged(text: str) -> str:
        log = exporter.log_file.read_text() if exporter.log_file.exists() else ""
        return next((line.split(" ", 2)[2] for line in log.splitlines() if text in line), "")

    bluez.remove_adapter("hci1")
    failed = exporter.wait_until("hci1 set aside", lambda: logged("retrying hci1"))
    up = labelled_samples(exporter.get("/metrics")[1])
    assert (
        up[("ble_exporter_scanner_up", (("adapter", "hci0"),))],
        up[("ble_exporter_scanner_up", (("adapter", "hci1"),))],
    ) == (1, 0)
    bluez.add_adapter("hci1", address=DONGLE)
    back = exporter.wait_until("hci1 taken again", lambda: logged("works again"))
    row = fault_line("one adapter of several fails")
    assert failed in row and back in row
