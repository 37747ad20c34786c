"""`ble-exporter watch`: what the user sees (render into a plain 80-column console), and the command in a
real terminal (tmux): readings appear, q and Ctrl-C quit with status 0 and the terminal restored."""

from __future__ import annotations

import io
import itertools
import os
import re
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from bluez_mock import BluezMock
from rich.console import Console
from support import CLI, REPO, run_cli, start_cli, wait_until

from ble_exporter.calibration import Calibration, Line
from ble_exporter.devices import Device
from ble_exporter.encoder import encode
from ble_exporter.engine import ScanEngine
from ble_exporter.health import RadioHealth
from ble_exporter.parser import Format, Reading, uuid128
from ble_exporter.watch import (
    SPARKS,
    STALE_SECONDS,
    AdvertRate,
    Header,
    render,
    sparkline,
    unknown_sensors,
)

BTHOME = uuid128(0xFCD2)
# pvvx/ATC_MiThermometer issue #740, BTHome v2 from the pvvx firmware: data1 = battery 81 %,
# 27.01 °C, 44.93 % RH; data2 = 2.848 V (the firmware alternates the two under one packet id).
DATA1 = bytes.fromhex("4000b00151028d0a038d11")
DATA2 = bytes.fromhex("4000b00c200b10001101")
LIVING = "A4:C1:38:AA:BB:CC"
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
DEVICES = (Device(LIVING, "living_room"), Device("A4:C1:38:00:00:02", "bedroom"))
T0 = 1_700_000_000.0


def show(
    engine: ScanEngine,
    now: float,
    *,
    show_all: bool = False,
    rate: float | None = 2.4,
    width: int = 80,
    height: int = 24,
    scroll: int = 0,
    health: RadioHealth | Mapping[str, RadioHealth] | None = None,
) -> list[str]:
    """The view as a colourless terminal of `width` columns shows it, one string per line."""
    console = Console(
        file=io.StringIO(), width=width, height=height, color_system=None, force_terminal=False, legacy_windows=False
    )
    healths = health if isinstance(health, Mapping) else {"hci0": health or RadioHealth()}
    header = Header(T0 - 125.0, rate, "/etc/ble-exporter/config.yaml", healths)
    console.print(render(engine, now, header, show_all=show_all, width=width, height=height, scroll=scroll))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b" not in text  # no colour or style codes on a terminal without colour
    return [line.rstrip() for line in text.splitlines()]


def row(lines: list[str], key: str) -> str:
    found = [line for line in lines if key in line]
    assert len(found) == 1, (key, lines)
    return found[0]


def heard(engine: ScanEngine, mac: str = LIVING, at: float = T0, rssi: int = -67) -> None:
    engine.ingest(mac, rssi, {BTHOME: DATA1}, at)
    engine.ingest(mac, rssi, {BTHOME: DATA2}, at)


def test_a_heard_device_shows_its_readings() -> None:
    engine = ScanEngine(DEVICES)
    heard(engine)
    lines = show(engine, T0 + 2)
    living = row(lines, "living_room")
    assert re.search(r"^living_room +A4:C1:38:AA:BB:CC +27\.01 +\S+ +45 +81% +2\.85 +-67 +2s +2 +BTHome v2$", living), (
        living
    )
    header = lines[0]
    assert "hci0 starting" in header and "up 0:02:07" in header and "2.4 adverts/s" in header
    assert "1/2 heard" in header


def test_rows_follow_the_config_order_and_unheard_devices_wait() -> None:
    engine = ScanEngine(DEVICES)
    heard(engine)
    lines = show(engine, T0 + 1)
    names = [line.split()[0] for line in lines if line.startswith(("living_room", "bedroom"))]
    assert names == ["living_room", "bedroom"]
    waiting = row(lines, "bedroom")
    assert "A4:C1:38:00:00:02" in waiting and waiting.endswith("waiting…")
    assert "27.01" not in waiting and re.search(r" 0 +waiting…$", waiting)  # no packets, no readings


def test_a_device_quiet_for_longer_than_the_stale_limit_is_marked_without_colour() -> None:
    engine = ScanEngine(DEVICES)
    heard(engine)
    fresh = row(show(engine, T0 + STALE_SECONDS), "living_room")
    assert "30s " in fresh + " " and "!" not in fresh
    lines = show(engine, T0 + 95)
    stale = row(lines, "living_room")
    assert "95s!" in stale and "27.01" in stale  # the last reading stays, marked
    assert "4m!" in row(show(engine, T0 + 250), "living_room")
    assert "! not heard for 30 s" in lines[-1] and "q" in lines[-1] and "quit" in lines[-1]
    assert "0/2 heard" in lines[0]


def test_header_shows_the_scan_mode_in_use_and_a_silent_scanner() -> None:
    engine = ScanEngine(DEVICES)
    health = RadioHealth(mode="passive")
    assert "· hci0 passive ·" in show(engine, T0, health=health)[0]
    health.mode = "active"
    health.up = False
    assert "hci0 active (silent)" in show(engine, T0, rate=None, health=health)[0]
    assert "– adverts/s" in show(engine, T0, rate=None, health=health)[0]
    health.mode = "simulated"
    health.up = True
    assert "· simulated sensors ·" in show(engine, T0, health=health)[0]


def test_several_adapters_show_in_the_header_and_the_best_one_per_sensor() -> None:
    engine = ScanEngine(DEVICES, adapters=("hci0", "hci1"))
    engine.open_window(T0)
    engine.ingest(DEVICES[0].mac, -80, {BTHOME: DATA1}, T0 + 1, "hci0")
    engine.ingest(DEVICES[0].mac, -62, {BTHOME: DATA1}, T0 + 1, "hci1")
    engine.close_window(T0 + 5)
    healths = {"hci0": RadioHealth(mode="passive"), "hci1": RadioHealth(mode="passive", up=False, failed=True)}
    lines = show(engine, T0 + 6, width=120, health=healths)
    assert "hci0 passive, hci1 failed" in lines[0]
    header_row = next(line for line in lines if line.startswith("name"))
    assert "via" in header_row
    assert row(lines, DEVICES[0].name).split()[header_row.split().index("via")] == "hci1"
    narrow = show(engine, T0 + 6, health=healths)  # 80 columns: the first column to give way
    assert not any(line.startswith("name") and "via" in line for line in narrow)


def test_all_lists_sensors_not_in_the_config_with_the_yaml_to_paste_for_the_strongest() -> None:
    engine = ScanEngine(DEVICES, keep_unknown=True)
    heard(engine)
    heard(engine, "A4:C1:38:99:00:01", T0 + 1, rssi=-88)
    heard(engine, "A4:C1:38:99:00:02", T0 + 2, rssi=-48)
    engine.ingest("A4:C1:38:99:00:03", -40, {BTHOME: b"\x40\xff\xff"}, T0)  # not decodable: not a sensor
    engine.ingest("11:22:33:44:55:66", -40, {}, T0)  # a phone: no service data of ours
    lines = show(engine, T0 + 3, show_all=True)
    start = lines.index("In range, not in the config:")
    section = lines[start:]
    near, far = row(section, "A4:C1:38:99:00:02 "), row(section, "A4:C1:38:99:00:01 ")
    assert section.index(far) < section.index(near)  # first heard first: rows do not reshuffle with RSSI
    assert re.search(r"^A4:C1:38:99:00:02 +27\.01 +45 +81% +2\.85 +-48 +1s +2 +BTHome v2$", near), near
    assert not any("99:00:03" in line or "11:22:33" in line for line in lines)
    assert not any(LIVING in line for line in section)  # configured devices are not repeated
    assert 'put under `devices:` in config.yaml:  "A4:C1:38:99:00:02": my_room' in row(section, "devices:")
    assert not any("In range" in line for line in show(engine, T0 + 3, show_all=False))


def test_all_with_nothing_configured_and_nothing_heard_says_so() -> None:
    lines = show(ScanEngine((), keep_unknown=True), T0, show_all=True)
    assert "No devices in /etc/ble-exporter/config.yaml." in lines
    assert any("none heard yet" in line for line in lines)
    assert "--all lists the sensors in range" in row(show(ScanEngine(()), T0), "No devices")


def test_the_view_fits_80x24_with_a_crowd_of_neighbours() -> None:
    names = ["a_rather_long_sensor_name", "b", "c"]
    devices = [Device(f"A4:C1:38:00:00:{i:02X}", name) for i, name in enumerate(names)]
    engine = ScanEngine(devices, keep_unknown=True)
    for i in range(30):
        heard(engine, f"A4:C1:38:99:01:{i:02X}", T0, rssi=-50 - i)
    for device in devices:
        heard(engine, device.mac, T0)
    lines = show(engine, T0 + 1, show_all=True)
    assert len(lines) == 23 and max(len(line) for line in lines) <= 80  # a line spare for the cursor
    assert "… and 20 more, weaker" in lines
    # Long names are cut (to 11 or 12 columns: rich versions differ by one), the figures never are.
    assert re.match(r"a_rather_lo?… +A4:C1:38:00:00:00 27\.01 ", row(lines, "a_rather_"))
    kept = [line.split()[0] for line in lines if line.startswith("A4:C1:38:99:01:")]
    assert kept == [f"A4:C1:38:99:01:{i:02X}" for i in range(10)]  # the strongest are kept
    wide = show(engine, T0 + 1, width=120)
    assert "a_rather_long_sensor_name" in row(wide, "a_rather")


def crowd(n: int = 30, neighbours: int = 0) -> ScanEngine:
    devices = [Device(f"A4:C1:38:00:01:{i:02X}", f"room_{i:02d}") for i in range(n)]
    engine = ScanEngine(devices, keep_unknown=True)
    for device in devices:
        heard(engine, device.mac, T0)
    for i in range(neighbours):
        heard(engine, f"A4:C1:38:99:01:{i:02X}", T0, rssi=-50 - i)
    return engine


@pytest.mark.parametrize(("width", "height", "show_all"), [(80, 24, False), (80, 24, True), (50, 12, True)])
def test_more_devices_than_rows_keep_the_header_and_footer_and_say_which_are_shown(
    width: int, height: int, show_all: bool
) -> None:
    engine = crowd(30, neighbours=3)
    lines = show(engine, T0 + 1, show_all=show_all, width=width, height=height)
    assert len(lines) <= height - 1 and max(len(line) for line in lines) <= width
    assert lines[0].endswith("30/30 heard") and "…" not in lines[0]  # the header is whole
    assert "q  quit · ↑↓ scroll" in lines[-1]
    rows = [line for line in lines if line.startswith("room_")]
    assert rows[0].startswith("room_00") and 1 <= len(rows) < 30
    assert f"devices 1–{len(rows)} of 30 · ↑↓ PgUp PgDn to scroll" in lines
    if show_all:
        assert "In range, not in the config:" in lines
    scrolled = show(engine, T0 + 1, show_all=show_all, width=width, height=height, scroll=10)
    assert next(line for line in scrolled if line.startswith("room_")).startswith("room_10")
    last = show(engine, T0 + 1, width=width, height=height, scroll=999)
    assert [line for line in last if line.startswith("room_")][-1].startswith("room_29")


def test_a_narrow_terminal_drops_the_mac_before_the_name() -> None:
    lines = show(crowd(3), T0 + 1, width=50)
    assert max(len(line) for line in lines) <= 50
    assert re.match(r"room_00 +27\.01 ", row(lines, "room_00"))  # the name stays, whole
    assert "A4:C1:38" not in "\n".join(lines) and "MAC" not in lines[2]
    assert "MAC" in show(crowd(3), T0 + 1, width=80)[2]


def test_a_wide_terminal_gives_the_trend_the_width() -> None:
    header = {width: show(crowd(3), T0 + 1, width=width)[2] for width in (80, 100, 160)}
    trend = {width: len(re.search(r"trend *", line).group(0)) for width, line in header.items()}  # type: ignore[union-attr]
    assert trend[80] < trend[100] < trend[160] and trend[160] > 60
    assert all(len(line) <= width for width, line in header.items())


def test_an_encrypted_sensor_shows_as_encrypted() -> None:
    device = Device(LIVING, "living_room", bindkey=KEY)
    engine = ScanEngine([device])
    reading = Reading(format=Format.BTHOME_V2, encrypted=True, temperature=19.5, humidity=51.0, battery=77)
    uuid16, payload = encode(reading, LIVING, KEY, counter=1000)
    engine.ingest(LIVING, -70, {uuid128(uuid16): payload}, T0)
    lines = show(engine, T0 + 1)
    living = row(lines, "living_room")
    expected = r"^living_room +A4:C1:38:AA:BB:CC +19\.50 +\S+ +51 +77% +– +-70 +1s +1 BTHome v2\*$"
    assert re.search(expected, living), living
    assert "* encrypted" in lines[-1]


def test_sparkline_draws_the_recent_trend_oldest_left() -> None:
    rising = [(T0 + i * 100.0, 20.0 + i) for i in range(6)]
    assert sparkline(rising, T0 + 599, 6, span=600) == "▁▂▄▅▇█"  # 20 to 25 °C, scaled to the 8 blocks
    assert sparkline([(T0, 20.0)], T0 + 599, 6, span=600) == SPARKS[4] + "     "  # a gap is blank
    assert sparkline([], T0, 6) == "      "
    noise = [(T0 + i, 20.0 + (i % 2) * 0.02) for i in range(600)]
    assert len(set(sparkline(noise, T0 + 600, 6, span=600))) == 1  # 0.02 °C of noise is a flat line
    assert sparkline([(T0 - 10_000, 5.0), (T0, 20.0)], T0, 3, span=600) == "  " + SPARKS[4]  # old points drop


def test_a_rising_temperature_shows_in_the_row_trend() -> None:
    engine = ScanEngine(DEVICES)
    for minute in range(5):  # a pvvx climate packet every 10 s, 0.5 °C warmer each minute
        for tick in range(6):
            payload = bytearray(DATA1)
            payload[6:8] = round((20 + minute * 0.5) * 100).to_bytes(2, "little")
            engine.ingest(LIVING, -60, {BTHOME: bytes(payload)}, T0 + minute * 60 + tick * 10)
    lines = show(engine, T0 + 299)
    # Oldest left: the trend's columns rise from the lowest block to the highest (more columns in a
    # wider terminal, and in this one the short names leave it one more than its five).
    assert re.search(r" 22\.00 ▁[▂▃▄▅▆▇]{3,4}█ ", row(lines, "living_room")), lines
    assert lines[-1].endswith("trend: last 5 min")


def test_adverts_per_second() -> None:
    rate = AdvertRate(window=5.0)
    assert rate.update(0.0, 0) is None  # not measured yet
    assert rate.update(2.0, 10) == 5.0
    for t in range(3, 20):
        value = rate.update(float(t), 10 + (t - 2) * 2)
    assert value == pytest.approx(2.0)


def test_unknown_sensors_forget_the_ones_that_walked_away() -> None:
    engine = ScanEngine((), keep_unknown=True)
    heard(engine, "A4:C1:38:99:00:01", T0)
    assert [s.mac for s in unknown_sensors(engine, T0 + 60)] == ["A4:C1:38:99:00:01"]
    assert unknown_sensors(engine, T0 + 3600) == []


# --- the command as a process -------------------------------------------------------------------------


def run_watch_process(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("watch", "--config", str(config), env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def test_without_bluetooth_watch_exits_1_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text('devices:\n  "A4:C1:38:00:00:01": one\n')
    result = run_watch_process(config, {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"})
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ble-exporter: error: Bluetooth scan start on hci0 failed")
    assert "the system D-Bus is not running" in lines[0] and "systemctl start dbus" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no half-drawn view


def test_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("scan_mode: loud\n")
    result = run_watch_process(config)
    assert result.returncode == 2
    assert result.stderr == f"ble-exporter: error: {config}:1: scan_mode `loud` is not one of auto, passive, active\n"


def test_sigterm_stops_watch_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("devices: {}\n")
    process = start_cli("watch", "--simulate", "--config", str(config), stdin=subprocess.DEVNULL)
    try:
        time.sleep(2.0)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert err == "" and "A4:C1:38:00:00:03" in out  # the empty config's demo sensors (as `run --simulate`)


class Tmux:
    """A private tmux server (its own socket) whose one 80×24 pane runs `ble-exporter watch` from a
    shell script that then records, in the same pane, watch's exit status and the terminal's modes."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"ble-exporter-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.status, self.stty = tmp_path / "status", tmp_path / "stty"
        self.script = tmp_path / "run.sh"

    def __call__(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args], check=False, capture_output=True, text=True, timeout=10
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start_watch(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        command = shlex.join([*CLI, "watch", *args])
        # Ctrl-C reaches the whole foreground group: the shell traps it to outlive watch (a trapped
        # signal is default again in the child, so watch gets a plain SIGINT).
        self.script.write_text(
            f"trap : INT\ncd {shlex.quote(str(REPO))}\n{command}\n"
            f"echo $? > {self.status}\nstty -a > {self.stty}\nexec sleep 60\n"
        )
        options = [arg for name, value in (env or {}).items() for arg in ("-e", f"{name}={value}")]
        self("new-session", "-d", "-s", "watch", "-x", "80", "-y", "24", *options, f"sh {self.script}")

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "watch")

    def shown(self) -> str:
        return f"the screen:\n{self.screen()}"

    def wait_for(self, ready: Callable[[str], bool], timeout: float, what: str) -> str:
        def ready_screen() -> str:
            screen = self.screen()
            return screen if ready(screen) else ""

        return wait_until(what, ready_screen, timeout, details=self.shown)

    def quit_with(self, key: str, timeout: float = 8) -> tuple[int, list[str]]:
        """Press `key`; return watch's exit status and the terminal's modes once the shell has them."""
        self("send-keys", "-t", "watch", key)
        wait_until(
            f"watch quitting on {key}",
            lambda: self.stty.exists() and self.stty.read_text(),
            timeout,
            details=self.shown,
        )
        return int(self.status.read_text()), self.stty.read_text().split()


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(tmp_path)
    try:
        yield server
    finally:
        subprocess.run(["tmux", "-L", server.socket, "kill-server"], check=False, capture_output=True, timeout=10)


READING = re.compile(r"^(kitchen|cellar) +A4:C1:38:00:00:0[12] +-?\d+\.\d\d .* -\d+ +\d+s +\d+ +(BTHome|pvvx)", re.M)


@pytest.mark.parametrize(("key", "options"), [("q", ["--all"]), ("C-c", [])])
def test_watch_in_a_real_terminal_shows_readings_and_quits_cleanly(
    tmux: Tmux, tmp_path: Path, key: str, options: list[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text('devices:\n  "A4:C1:38:00:00:01": kitchen\n  "A4:C1:38:00:00:02": cellar\n')
    tmux.start_watch("--simulate", "--config", str(config), *options)

    screen = tmux.wait_for(lambda s: len(READING.findall(s)) == 2, 12, "readings from both sensors")
    assert "ble-exporter watch · simulated sensors" in screen
    assert "quit" in screen and "Traceback" not in screen
    if "--all" in options:
        screen = tmux.wait_for(lambda s: "A4:C1:38:99:00:0" in s, 5, "a neighbour in the --all list")
        assert "In range, not in the config:" in screen
    assert max(len(line) for line in screen.splitlines()) <= 80

    status, modes = tmux.quit_with(key)
    assert status == 0
    assert "icanon" in modes and "echo" in modes and "isig" in modes  # cbreak mode undone
    assert "Traceback" not in tmux.screen()


def test_watch_through_bleak_and_bluez_shows_the_mode_in_use_and_warnings_above_the_view(
    tmux: Tmux, tmp_path: Path, bluez: BluezMock
) -> None:
    """The real radio path: bleak on a mock bluetoothd (tests/bluez_mock.py) that offers no passive
    scanning, so `auto` falls back to active and says why, above the view, without breaking it."""
    config = tmp_path / "config.yaml"
    config.write_text('devices:\n  "A4:C1:38:AA:BB:CC": kitchen\n')
    tmux.start_watch("--config", str(config), env=bluez.env())
    tmux.wait_for(lambda s: "hci0 active" in s, 10, "the scan starting")
    bluez.wait_scanning()
    packets = itertools.cycle((DATA1, DATA2))
    reading = re.compile(r"^kitchen +A4:C1:38:AA:BB:CC +27\.01 +\S+ +45 +81% +2\.85 +-58 ", re.M)

    def reading_shown() -> str:
        bluez.advertise(LIVING, {BTHOME: next(packets)}, rssi=-58)
        screen = tmux.screen()
        return screen if reading.search(screen) else ""

    screen = wait_until("a reading on screen", reading_shown, 10, details=tmux.shown)
    lines = screen.splitlines()
    warning = next(i for i, line in enumerate(lines) if "passive scanning is not available" in line)
    assert warning < next(i for i, line in enumerate(lines) if line.startswith("ble-exporter watch · hci0 active"))
    status, modes = tmux.quit_with("q")
    assert status == 0 and "icanon" in modes and "echo" in modes
    assert not bluez.is_discovering()  # the scan was stopped on the way out


def test_resizing_and_scrolling_in_a_real_terminal(tmux: Tmux, tmp_path: Path) -> None:
    """30 sensors in 80x24: the arrow keys scroll; shrinking to 50x12 and growing back leaves no stale
    row above the header."""
    config = tmp_path / "config.yaml"
    config.write_text("devices:\n" + "".join(f'  "A4:C1:38:00:01:{i:02X}": room_{i:02d}\n' for i in range(30)))
    tmux.start_watch("--simulate", "--config", str(config))
    tmux.wait_for(lambda s: re.search(r"^room_00 +A4:C1:38:00:01:00 +\d", s, re.M) is not None, 12, "readings")
    tmux("send-keys", "-t", "watch", "Down", "Down", "Down")
    tmux.wait_for(lambda s: "devices 4–" in s and re.search(r"^room_03 ", s, re.M) is not None, 5, "a scroll")

    def redrawn(width: int) -> Callable[[str], bool]:
        def check(screen: str) -> bool:
            lines = screen.splitlines()
            headers = [line for line in lines if "adverts/s" in line]
            return bool(headers) and lines[0] == headers[0] == headers[-1] and max(map(len, lines)) <= width

        return check

    for width, height in ((50, 12), (80, 24)):
        tmux("resize-window", "-t", "watch", "-x", str(width), "-y", str(height))
        size = tmux("display", "-p", "-t", "watch", "#{pane_width}x#{pane_height}").strip()
        assert size == f"{width}x{height}", size
        screen = tmux.wait_for(redrawn(width), 10, f"a clean redraw at {width}x{height}")
        assert "devices 4–" in screen and re.search(r"^room_03 ", screen, re.M)  # the scroll stays
    status, _ = tmux.quit_with("q")
    assert status == 0


def test_reception_columns_show_where_the_existing_columns_and_the_whole_name_fit() -> None:
    engine = ScanEngine(DEVICES)
    for scan, packet_id in enumerate((10, 11, 12, 13)):  # living_room heard in 4 scans of 5, 10 s apart
        engine.open_window(T0 + 10 * scan)
        packet = DATA1[:2] + bytes((packet_id,)) + DATA1[3:]
        engine.ingest(LIVING, -67, {BTHOME: packet}, T0 + 10 * scan + 1)
        engine.close_window(T0 + 10 * scan + 5)
    engine.open_window(T0 + 40)
    engine.close_window(T0 + 45)
    assert "heard" not in show(engine, T0 + 46, width=80)[2]  # 80 columns: as before the new columns
    lines = show(engine, T0 + 46, width=120)
    assert re.search(r"heard +per ", lines[2])
    assert re.search(r" 80% +10s ", row(lines, "living_room"))  # 3 steps in 30 s
    assert re.search(r" 0% +– ", row(lines, "bedroom"))  # never heard: 0 of 5 scans, no period


def test_calibrated_values_carry_a_mark_visible_without_colour() -> None:
    kitchen = Device(LIVING, "living_room", calibration=Calibration(temperature=Line(offset=-0.51)))
    engine = ScanEngine((kitchen, DEVICES[1]))
    heard(engine)
    heard(engine, "A4:C1:38:00:00:02")
    lines = show(engine, T0 + 1)
    assert re.search(r" 26\.50~ .* 45  ", row(lines, LIVING))  # humidity not calibrated: no mark
    assert re.search(r" 27\.01  .* 45  ", row(lines, "bedroom"))
    assert "~ calibrated" in lines[-1] and max(len(line) for line in lines) <= 80
    assert "~" not in "\n".join(show(ScanEngine(DEVICES), T0 + 1))  # no calibration, no mark, no legend
