"""The live page at /: its rendering from a View (escaping, marks, size, colours, the policy's hashes),
and, in Debian's chromium (`make test-browser`, marked `browser`), the page of a running
`ble-exporter run --simulate`: every sensor's name and temperature, refreshed in place by its script
after each scan, and by its meta refresh without script; screenshots at 390x844 and 1280x800."""

from __future__ import annotations

import asyncio
import base64
import calendar
import gzip
import hashlib
import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from chromium import Chromium, Tab
from support import REPO, Exporter, ExporterFactory

from ble_exporter.config import Config
from ble_exporter.core import ConfigStatus
from ble_exporter.devices import Device
from ble_exporter.documents import View
from ble_exporter.engine import ScanEngine
from ble_exporter.health import RadioHealth
from ble_exporter.page import (
    COLUMNS,
    CONTENT_SECURITY_POLICY,
    HEADERS,
    MIN_REFRESH_SECONDS,
    PALETTE,
    SCRIPT,
    STYLE,
    front_page,
    live_page,
    next_refresh,
    rows,
)
from ble_exporter.parser import uuid128

BTHOME = uuid128(0xFCD2)
KITCHEN = Device("A4:C1:38:AA:BB:CC", "kitchen")
ATTIC = Device("A4:C1:38:00:00:01", "attic")
# pvvx issue #740: data1 and data2 of one measurement (packet id 176): 27.01 °C, 44.93 %, 81 %; 2.848 V.
DATA1 = bytes.fromhex("4000b00151028d0a038d11")
DATA2 = bytes.fromhex("4000b00c200b10001101")
T0 = 1_800_000_000.0


def scan(engine: ScanEngine, *packets: bytes, start: float = T0, mac: str = KITCHEN.mac) -> None:
    engine.open_window(start)
    for i, packet in enumerate(packets):
        engine.ingest(mac, -67, {BTHOME: packet}, start + 1.0 + i)
    engine.close_window(start + 5.0)


def view(engine: ScanEngine, **kw: object) -> View:
    return View.of_engine(engine, uptime=3725.0, **kw)  # type: ignore[arg-type]


def body_rows(page: str) -> dict[str, str]:
    """Each sensor's table row by its name as shown (escaped)."""
    return {m.group(1): m.group(0) for m in re.finditer(r'<tr[^>]*><th scope="row">(.*?)<small>.*?</tr>', page)}


# ---- rendering -------------------------------------------------------------------------------------------


def test_every_configured_sensor_has_a_row_with_its_readings() -> None:
    engine = ScanEngine((KITCHEN, ATTIC))
    scan(engine, DATA1, DATA2)
    page = live_page(view(engine), T0 + 6)
    kitchen = body_rows(page)["kitchen"]
    for text in ("27.01 °C", "45 %", "81 % · 2.85 V", "-67 dBm", "BTHome v2", "100%", KITCHEN.mac):
        assert text in kitchen, text
    assert "class=" not in kitchen.split(">")[0]  # heard in the latest scan: no mark
    attic = body_rows(page)["attic"]
    assert 'class="quiet"' in attic and "not heard yet" in attic and "0%" in attic
    assert "1 of 2 sensors heard; the latest scan ended <time" in page
    assert [f'<th scope="col">{c}</th>' in page for c in COLUMNS] == [True] * len(COLUMNS)


def test_a_sensor_missed_by_the_latest_scan_keeps_its_last_readings_marked() -> None:
    engine = ScanEngine((KITCHEN,))
    scan(engine, DATA1)
    scan(engine, start=T0 + 30)  # not heard
    page = live_page(view(engine), T0 + 36)
    kitchen = body_rows(page)["kitchen"]
    assert 'class="quiet"' in kitchen and "not in the latest scan" in kitchen
    assert "27.01 °C" in kitchen and "50%" in kitchen  # heard in one of the two scans
    heard_at = time.strftime("%H:%M:%S", time.localtime(T0 + 1))
    assert f'<time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 1))}">{heard_at}</time>' in kitchen


def test_a_sensor_heard_in_the_scan_now_running_is_not_marked() -> None:
    engine = ScanEngine((KITCHEN,))
    scan(engine, start=T0)  # missed
    engine.open_window(T0 + 30)
    engine.ingest(KITCHEN.mac, -60, {BTHOME: DATA1}, T0 + 31)  # heard in the next scan, still open
    kitchen = body_rows(live_page(view(engine), T0 + 32))["kitchen"]
    assert "quiet" not in kitchen and "not in the latest scan" not in kitchen and "27.01 °C" in kitchen


def test_a_value_the_latest_scan_lacks_is_the_last_known() -> None:
    engine = ScanEngine((KITCHEN,))
    scan(engine, DATA1)
    scan(engine, DATA2, start=T0 + 30)  # voltage only: temperature and humidity from the scan before
    (row,) = rows(view(engine))
    assert row.heard and row.readings.voltage == 2.848 and row.readings.temperature == 27.01
    assert row.readings.last_seen == T0 + 31


def test_names_and_error_texts_are_escaped() -> None:
    evil = Device("A4:C1:38:00:00:02", "<script>alert(\"x\")</script> & 'quoted'")
    engine = ScanEngine((evil,))
    health = RadioHealth(last_error="<img src=x onerror=alert(1)>", last_error_time=T0)
    config = ConfigStatus(last_reload_successful=False, problems=('c.yaml:3: `<b>"x"</b>` is not a MAC address',))
    page = live_page(view(engine, health={"hci0": health}, config=config), T0)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quoted&#x27;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;b&gt;&quot;x&quot;&lt;/b&gt;" in page
    assert page.count("<script") == 1 and "<img" not in page and "<b>" not in page


def test_encrypted_and_calibrated_marks() -> None:
    from ble_exporter.calibration import Calibration, Line
    from ble_exporter.encoder import encode
    from ble_exporter.parser import Format, Reading

    key = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
    cellar = Device("A4:C1:38:00:00:03", "cellar", bindkey=key, calibration=Calibration(temperature=Line(offset=-0.5)))
    engine = ScanEngine((cellar, KITCHEN))
    reading = Reading(format=Format.BTHOME_V2, encrypted=True, temperature=12.5, humidity=80.0)
    uuid16, payload = encode(reading, cellar.mac, key, 9)
    engine.open_window(T0)
    engine.ingest(cellar.mac, -80, {uuid128(uuid16): payload}, T0 + 1)
    engine.ingest(KITCHEN.mac, -60, {BTHOME: DATA1}, T0 + 2)
    engine.close_window(T0 + 5)
    assert [row.calibrated for row in rows(view(engine))] == [("temperature",), ()]
    shown = body_rows(live_page(view(engine), T0 + 6))
    assert "<td>12.00 °C <small>calibrated</small></td><td>80 %</td>" in shown["cellar"]  # humidity as sent
    assert "BTHome v2 <small>encrypted</small>" in shown["cellar"]
    assert "calibrated" not in shown["kitchen"] and "encrypted" not in shown["kitchen"]


def test_the_scanner_state_version_uptime_and_links() -> None:
    engine = ScanEngine((KITCHEN,))
    health = RadioHealth(mode="passive", up=False, silent_scans=4, restarts=2, resets=1)
    page = live_page(view(engine, health={"hci1": health}, cfg=Config(adapter=("hci1",))), T0)
    assert "<h2>Scanner: hci1</h2>" in page and "passive, 0 scans so far" in page
    assert "silent: no advertisement in the last 4 scans" in page
    assert "<dt>Scanner restarts</dt><dd>2</dd>" in page and "<dt>Adapter resets</dt><dd>1</dd>" in page
    assert "up 1:02:05" in page and "ble-exporter 0.1.0" in page
    assert all(f'href="{p}"' in page for p in ("metrics", "status", "healthz"))
    simulated = live_page(view(engine, simulated=True), T0)
    assert "<h2>Scanner: simulated sensors</h2>" in simulated


def test_several_adapters_each_say_how_they_are() -> None:
    engine = ScanEngine((KITCHEN,), adapters=("hci0", "00:1A:7D:DA:71:13"))
    dongle = RadioHealth(mode="passive", up=False, failed=True, last_error="<gone>", last_error_time=T0)
    health = {"hci0": RadioHealth(mode="passive", restarts=1), "00:1A:7D:DA:71:13": dongle}
    cfg = Config(adapter=tuple(health))
    page = live_page(view(engine, health=health, cfg=cfg), T0)
    assert "<h2>Scanners: hci0, 00:1A:7D:DA:71:13</h2>" in page
    assert "<dt>hci0</dt><dd>passive, hearing advertisements; 1 scanner restart, 0 resets</dd>" in page
    assert '<dt>00:1A:7D:DA:71:13</dt><dd>passive, <span class="flag">failed; retried at scan starts</span>' in page
    assert "<dt>Latest error (00:1A:7D:DA:71:13)</dt>" in page and "&lt;gone&gt;" in page


def test_no_devices_says_where_to_add_them_and_demo_sensors_say_so() -> None:
    engine = ScanEngine(())
    scan(engine)
    page = live_page(view(engine, cfg=Config(path="/etc/ble-exporter/config.yaml")), T0 + 6)
    assert "No sensors in /etc/ble-exporter/config.yaml yet" in page and "<table" not in page
    ended = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 5))
    assert f'<p>The latest scan ended <time datetime="{ended}">' in page and "0 of 0" not in page
    demo = live_page(view(ScanEngine((KITCHEN,)), demo=True), T0)
    assert "Simulated demo sensors" in demo


def test_the_page_is_accessible_markup() -> None:
    engine = ScanEngine((KITCHEN, ATTIC))
    scan(engine, DATA1)
    page = live_page(view(engine), T0 + 6)
    assert '<html lang="en">' in page and '<meta name="viewport" content="width=device-width' in page
    assert '<meta name="color-scheme" content="light dark">' in page
    assert page.count('<th scope="row">') == 2 and page.count('<th scope="col">') == len(COLUMNS)
    assert "<title>1/2 heard · ble-exporter on " in page
    assert not re.search(r"\sstyle=|\son[a-z]+=", page)  # no inline style or handler the policy would block
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing external


def relative_luminance(colour: str) -> float:
    def linear(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def contrast(a: str, b: str) -> float:
    high, low = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", [0, 1], ids=["light", "dark"])
def test_text_has_aa_contrast_in_both_schemes(scheme: int) -> None:
    for text in ("fg", "mute", "warn"):
        for background in ("bg", "head"):
            ratio = contrast(PALETTE[text][scheme], PALETTE[background][scheme])
            assert ratio >= 4.5, (text, background, ratio)
    assert contrast("#777777", "#ffffff") < 4.5  # the check can fail: a grey too light for text on white
    assert "@media (prefers-color-scheme:dark){:root{--fg:#e6e6e6" in STYLE


def test_thirty_sensors_stay_under_30_kb() -> None:
    devices = tuple(Device(f"A4:C1:38:00:01:{i:02X}", f"sensor_number_{i:02d}_upstairs_room") for i in range(30))
    engine = ScanEngine(devices)
    engine.open_window(T0)
    for i, device in enumerate(devices):
        engine.ingest(device.mac, -60 - i, {BTHOME: DATA1}, T0 + 1)
        engine.ingest(device.mac, -60 - i, {BTHOME: DATA2}, T0 + 2)
    engine.close_window(T0 + 5)
    page = live_page(view(engine), T0 + 6).encode()
    assert len(body_rows(page.decode())) == 30
    assert len(page) < 30 * 1024, len(page)
    print(f"page of 30 sensors: {len(page)} bytes, gzipped {len(gzip.compress(page))}")


def test_the_policy_allows_exactly_the_pages_script_and_style_by_their_hashes() -> None:
    def sha256(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    engine = ScanEngine((KITCHEN,))
    page = live_page(view(engine), T0)
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert (script, style) == (SCRIPT, STYLE)
    policy = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == f"'sha256-{sha256(script)}'" and policy["style-src"] == f"'sha256-{sha256(style)}'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert HEADERS["X-Content-Type-Options"] == "nosniff" and HEADERS["Referrer-Policy"] == "no-referrer"


def test_the_script_asks_again_just_after_the_next_scan() -> None:
    engine = ScanEngine((KITCHEN,))
    cfg = Config(scan_interval_seconds=30, scan_duration_seconds=5)
    scan(engine, DATA1)  # ended at T0 + 5: the next ends at T0 + 35
    assert next_refresh(view(engine, cfg=cfg), T0 + 6) == 31  # 29 s, and a margin
    assert next_refresh(view(engine, cfg=cfg), T0 + 34.9) == MIN_REFRESH_SECONDS
    assert next_refresh(view(engine, cfg=cfg), T0 + 600) == MIN_REFRESH_SECONDS  # a late scan: asked often
    first = View.of_engine(ScanEngine((KITCHEN,)), cfg=cfg, uptime=1.0)  # the first scan ends 5 s after the start
    assert next_refresh(first, T0) == 6
    page = live_page(view(engine, cfg=cfg), T0 + 6)
    assert '<main id="page" data-next="31">' in page
    assert '<noscript><meta http-equiv="refresh" content="30"></noscript>' in page  # without script


def test_live_page_false_serves_the_links_page() -> None:
    engine = ScanEngine((KITCHEN,))
    links = front_page(view(engine, cfg=Config(live_page=False)), T0)
    assert "<table" not in links and 'href="metrics"' in links and "<script" not in links
    assert "<table" in front_page(view(engine), T0)


def test_live_page_false_and_a_reload_turning_it_on(exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(
        "live_page: false\nscan_interval_seconds: 1\nscan_duration_seconds: 0.5\n", "--simulate"
    )
    exporter.wait_healthy()
    with urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/", timeout=5) as response:
        links = response.read().decode()
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert 'href="metrics"' in links and "<table" not in links and "<script" not in links
    head = "".join(line + "\n" for line in exporter.config.read_text().splitlines()[:3])  # port, address, log
    exporter.config.write_text(head + "scan_interval_seconds: 1\nscan_duration_seconds: 0.5\n")
    exporter.process.send_signal(signal.SIGHUP)
    exporter.wait_until("the live page after the reload", lambda: '<table id="sensors">' in exporter.get("/")[1])
    assert "demo_living_room" in exporter.get("/")[1]
    assert exporter.stop() == 0
    assert "live_page False -> True" in exporter.log_file.read_text()


# ---- in a real browser: Debian's chromium -----------------------------------------------------------------

SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR", REPO / "build" / "screenshots"))
INTERVAL = 3  # seconds between scans: the page must move on within a few
NAMES = {  # MAC -> name: ordinary names, and names that are markup
    "A4:C1:38:00:10:01": "living_room",
    "A4:C1:38:00:10:02": 'Kid\'s room <b>&</b> "den"',
    "A4:C1:38:00:10:03": "<script>window.pwned=1</script>",
    "A4:C1:38:00:10:04": "bedroom",
    "A4:C1:38:00:10:05": "<img src=x onerror=window.pwned=2>",
}
KEY = "231d39c1d7cc1ab1aee224cd096db932"

# The table as the browser has it: the scan time, and per row the name (without the MAC) and the cells.
READ_PAGE = """(() => ({
  scan: document.querySelector('main > p time')?.getAttribute('datetime') ?? null,
  rows: [...document.querySelectorAll('#sensors tbody tr')].map(tr => ({
    name: tr.querySelector('th').firstChild.textContent,
    cells: [...tr.querySelectorAll('td')].map(td => td.textContent)})),
}))()"""


def devices_yaml() -> str:
    lines = ["devices:"]
    for mac, name in NAMES.items():
        if name == "bedroom":
            lines.append(f'  "{mac}": {{name: bedroom, bindkey: "{KEY}"}}')
        elif name == "living_room":
            lines.append(f'  "{mac}": {{name: living_room, temperature_offset: -0.3}}')
        else:
            lines.append(f'  "{mac}": {json.dumps(name)}')
    return "\n".join(lines) + "\n"


def scrape(exporter: Exporter) -> tuple[int, dict[str, float]]:
    """The latest scan's end (whole seconds) and each device's temperature, from /metrics."""
    got = exporter.samples()
    temperatures = {device: v for (name, device), v in got.items() if name == "ble_sensor_temperature_celsius"}
    return int(got.get(("ble_exporter_last_scan_timestamp_seconds", ""), -1)), temperatures


def epoch(iso: str) -> int:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.25)


def start(exporter_factory: ExporterFactory, body: str) -> Exporter:
    exporter = exporter_factory(f"scan_interval_seconds: {INTERVAL}\nscan_duration_seconds: 1\n" + body, "--simulate")
    exporter.wait_healthy()
    return exporter


@pytest.mark.browser
def test_in_chromium_every_sensor_shows_and_the_script_refreshes_the_page_after_each_scan(
    exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    exporter = start(exporter_factory, devices_yaml())
    url = f"http://127.0.0.1:{exporter.port}/"

    async def go() -> None:
        async with Chromium.launch(tmp_path / "profile") as browser:
            tab = await browser.new_tab(1280, 800)
            await tab.goto(url)
            await tab.evaluate("window.sameDocument = true")
            page = await tab.evaluate(READ_PAGE)
            assert [r["name"] for r in page["rows"]] == list(NAMES.values())  # markup in names shows as text
            assert await tab.evaluate("[document.scripts.length, typeof window.pwned]") == [1, "undefined"]
            # Every sensor's temperature is /metrics' of the same scan (retried while a scan ends between).
            # (A scan that missed a sensor's temperature is waited out: the test needs all of them.)
            for _ in range(80):
                page = await tab.evaluate(READ_PAGE)
                ended, temperatures = scrape(exporter)
                if page["scan"] and epoch(page["scan"]) == ended and set(temperatures) == set(NAMES.values()):
                    break
                await asyncio.sleep(0.25)
            else:
                raise AssertionError(f"the page never showed /metrics' scan: {page['scan']} vs {ended}, {temperatures}")
            shown = {r["name"]: r["cells"][0] for r in page["rows"]}
            calibrated = {"living_room": " calibrated"}  # its offset applied, as /metrics has it, and marked
            assert shown == {name: f"{t:.2f} °C{calibrated.get(name, '')}" for name, t in temperatures.items()}
            first = page["scan"]
            # The page moves on after a scan, in place: the script swapped in the new <main>.
            await until("a newer scan on the page", lambda: _scan_changed(tab, first), 4 * INTERVAL + 10)
            assert await tab.evaluate("window.sameDocument") is True
            later = await tab.evaluate(READ_PAGE)
            assert [r["name"] for r in later["rows"]] == list(NAMES.values())
            # The style and the script ran: both allowed by their hashes (the browser logs any refusal).
            assert await tab.evaluate("getComputedStyle(document.body).maxWidth") == "1152px"
            assert not [line for line in tab.console() if "Content Security Policy" in line], tab.console()
            # ... and the policy holds: a script put in by anything else does not run.
            await tab.evaluate(
                "(() => {const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
                " document.body.append(s)})()"
            )
            assert await tab.evaluate("typeof window.injected") == "undefined"
            assert any("Content Security Policy" in line for line in tab.console()), tab.console()

    asyncio.run(go())


async def _scan_changed(tab: Tab, first: str) -> bool:
    try:
        page = await tab.evaluate(READ_PAGE)
    except AssertionError:  # asked while the page was being loaded again
        return False
    return bool(page["scan"] and page["scan"] != first)


@pytest.mark.browser
def test_in_chromium_without_script_on_a_phone_and_a_desktop_in_both_schemes(
    exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    exporter = start(exporter_factory, "")  # no devices: the demo sensors, as `make demo` shows them
    url = f"http://127.0.0.1:{exporter.port}/"

    async def go() -> None:
        async with Chromium.launch(tmp_path / "profile") as browser:
            # Without script the meta refresh loads the page again every scan interval.
            tab = await browser.new_tab(390, 844, mobile=True, scripts=False)
            await tab.goto(url)
            first = (await tab.evaluate(READ_PAGE))["scan"]
            await until("a newer scan after the meta refresh", lambda: _scan_changed(tab, first), 4 * INTERVAL + 10)
            # With script, on a phone: no sideways scrolling at 390 or 360 px, each sensor a card with its labels.
            tab = await browser.new_tab(390, 844, mobile=True)
            await tab.goto(url)
            await until("every demo sensor heard", lambda: _all_heard(tab), 4 * INTERVAL + 10)
            for width in (390, 360):
                await tab.resize(width, 844, mobile=True)
                assert await tab.evaluate("document.documentElement.scrollWidth") <= width
            await tab.resize(390, 844, mobile=True)
            assert await tab.evaluate("getComputedStyle(document.querySelector('#sensors tr')).display") == "grid"
            # ... and still a table to a screen reader: the browser's accessibility tree keeps its roles.
            await browser.send("Accessibility.enable", tab.session)
            nodes = (await browser.send("Accessibility.getFullAXTree", tab.session))["nodes"]
            roles = [n.get("role", {}).get("value") for n in nodes]
            sensors = len((await tab.evaluate(READ_PAGE))["rows"])
            assert (roles.count("table"), roles.count("columnheader")) == (1, len(COLUMNS))
            assert (roles.count("rowheader"), roles.count("cell")) == (sensors, sensors * (len(COLUMNS) - 1))
            label = "getComputedStyle(document.querySelector('#sensors td'), '::before').content"
            assert await tab.evaluate(label) == '"Temperature"'
            # The system's scheme: light and dark backgrounds.
            background = "getComputedStyle(document.body).backgroundColor"
            assert await tab.evaluate(background) == "rgb(255, 255, 255)"
            await tab.screenshot(SCREENSHOTS / "page-390x844.png")
            await tab.colour_scheme("dark")
            assert await tab.evaluate(background) == "rgb(20, 20, 20)"
            await tab.screenshot(SCREENSHOTS / "page-390x844-dark.png")
            # A desktop: the table as a table.
            await tab.colour_scheme("light")
            await tab.resize(1280, 800)
            assert await tab.evaluate("getComputedStyle(document.querySelector('#sensors tr')).display") == "table-row"
            assert await tab.evaluate("document.documentElement.scrollWidth") <= 1280
            png = await tab.screenshot(SCREENSHOTS / "page-1280x800.png")
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1280

    asyncio.run(go())


async def _all_heard(tab: Tab) -> bool:
    page = await tab.evaluate(READ_PAGE)
    return bool(page["rows"]) and all(r["cells"][0].endswith("°C") for r in page["rows"])
