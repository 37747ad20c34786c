"""The live page at /: the sensors at a glance from a phone or a desktop, without Prometheus.

Rendered on the server from the same `View` as /metrics and /status, so the three cannot disagree, and
readable without JavaScript: a <noscript> meta refresh reloads it every scan interval. With script, the
few lines of SCRIPT fetch the page itself just after the next scan should have ended and swap in its
<main>: one renderer (this module), no JSON to keep in step with it. The script and the style are
constants, allowed by their sha256 in the Content-Security-Policy (HEADERS), which therefore holds for
every rendering and every cached copy; nothing else runs or loads: no external assets (the Pi may be
offline), no inline event handlers or style attributes. Every text from outside (sensor names, error
messages, the host name) is escaped.

`live_page: false` in the config serves the links page of documents.py instead (`front_page`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import socket
import time
from dataclasses import dataclass, replace

from ble_exporter import __version__
from ble_exporter.devices import Device
from ble_exporter.documents import View, landing_page
from ble_exporter.engine import NOTHING_HEARD, Readings
from ble_exporter.formatting import FORMAT_NAMES, format_share, format_uptime
from ble_exporter.reception import Reception

# The script fetches the page this long after the next scan's expected end: the scan cycle publishes a
# few milliseconds after it, and the HTTP cache holds a rendering for up to a second.
REFRESH_MARGIN_SECONDS = 1.5
MIN_REFRESH_SECONDS = 2  # however late a scan is, the script asks no more often than this

# The sensors table: its column headers, and the label each cell gets where the table is laid out as
# cards (narrow screens), in the same order.
COLUMNS = ("Sensor", "Temperature", "Humidity", "Battery", "Signal", "Last heard", "Format", "Scans heard")
NARROW = "40rem"  # below this width each sensor is a card: a phone held upright (360-430 px)

# (light, dark): text, muted text, warnings and the background; each text colour has at least 4.5:1
# contrast on the background and on the table header's (WCAG AA, tests/test_page.py computes it).
PALETTE = {
    "fg": ("#1b1b1b", "#e6e6e6"),
    "mute": ("#5c5c5c", "#a6a6a6"),
    "warn": ("#9a3c00", "#ffb066"),
    "bg": ("#ffffff", "#141414"),
    "head": ("#eeeeee", "#242424"),
    "line": ("#c8c8c8", "#3c3c3c"),
}


def _style() -> str:
    light = ";".join(f"--{name}:{colours[0]}" for name, colours in PALETTE.items())
    dark = ";".join(f"--{name}:{colours[1]}" for name, colours in PALETTE.items())
    labels = "".join(  # the row's <th> is its first child: the cells count from 2
        f'#sensors td:nth-child({i + 1})::before{{content:"{title}"}}' for i, title in enumerate(COLUMNS) if i > 0
    )
    return (
        f":root{{color-scheme:light dark;{light}}}"
        f"@media (prefers-color-scheme:dark){{:root{{{dark}}}}}"
        "body{margin:0 auto;max-width:72rem;padding:.75rem;font:16px/1.4 system-ui,sans-serif;"
        "color:var(--fg);background:var(--bg)}"
        "h1{font-size:1.35rem;margin:0}h2{font-size:1.1rem;margin:1.5rem 0 .4rem}p{margin:.3rem 0}"
        "a{color:inherit}.mute,small{color:var(--mute)}.flag{color:var(--warn);font-weight:600}"
        "table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}"
        "th,td{padding:.4rem .5rem;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}"
        "thead th{background:var(--head)}:is(th,td):is(:first-child,:nth-child(6),:nth-child(7)){text-align:left}"
        "tbody th{font-weight:600}th small{display:block;font-weight:400;font-size:.8rem}"
        "td small{display:block}tr.quiet>*{color:var(--mute)}"
        "dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}dd{margin:0}"
        "footer{margin-top:1.5rem}"
        f"@media (max-width:{NARROW}){{"
        "thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}"
        "table,tbody,tr,th,td{display:block}"
        "tr{display:grid;grid-template-columns:repeat(3,1fr);gap:.3rem .5rem;padding:.5rem 0;"
        "border-bottom:1px solid var(--line)}"
        "th,td{border:0;padding:0;text-align:left;white-space:normal}tbody th{grid-column:1/-1}"
        "td::before{display:block;font-size:.8rem;color:var(--mute)}"
        f"{labels}#sensors td:nth-child(2){{font-size:1.25rem}}}}"
    )


STYLE = _style()

# Waits until data-next seconds after each load, fetches the page and swaps in its <main> (which
# carries the next wait); a page without one (live_page turned off) is loaded whole.
SCRIPT = (
    "(()=>{const main=()=>document.getElementById('page');"
    "const wait=()=>setTimeout(load,1000*(+main().dataset.next||30));"
    "const load=()=>fetch(location.href,{cache:'no-store'}).then(r=>r.ok?r.text():Promise.reject(r.status))"
    ".then(t=>{const d=new DOMParser().parseFromString(t,'text/html'),n=d.getElementById('page');"
    "if(!n){location.reload();return}main().replaceWith(n);document.title=d.title}).catch(()=>{}).finally(wait);"
    "wait()})();"
)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; connect-src 'self'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
"""The headers of / (either page): the links page has no script or style, so the policy fits it too."""


@dataclass(frozen=True)
class Row:
    """One configured sensor as the table shows it."""

    device: Device
    readings: Readings  # the latest scan's values; a value it lacks, and a sensor it missed, as last known
    heard: bool  # in the latest scan, or since it ended (in the scan now running): not marked as missed
    reception: Reception
    calibrated: tuple[str, ...] = ()  # the quantities the config calibrates (marked by their values)


def rows(view: View) -> list[Row]:
    """Every configured device (or demo sensor), in config order, heard or not."""
    latest = {d.device.mac: d.readings for d in view.snapshot.devices}
    ended = view.snapshot.ended
    out = []
    for device in view.devices:
        state = view.live.get(device.mac)
        known = state.readings if state is not None else NOTHING_HEARD
        scan = latest.get(device.mac)
        readings = known if scan is None else _overlay(scan, known)
        since = known.last_seen is not None and (ended is None or known.last_seen > ended)
        reception = view.reception.get(device.mac) or Reception()
        calibrated = device.calibration.quantities() if device.calibration else ()
        out.append(Row(device, readings, scan is not None or since, reception, calibrated))
    return out


def _overlay(scan: Readings, known: Readings) -> Readings:
    """The latest scan's readings, a value it did not hear taken from before (an encrypted Mijia sensor
    sends one value per measurement, so a short scan may hold only its humidity)."""
    fields = ("temperature", "humidity", "battery", "voltage", "rssi")
    return replace(scan, **{f: getattr(known, f) for f in fields if getattr(scan, f) is None})


# --- rendering -----------------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _clock(t: float, now: float) -> str:
    """The local time of `t`, with the date when it is not today's; the exact instant in the markup."""
    local = time.localtime(t)
    today = time.localtime(now)[:3] == local[:3]
    shown = time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M", local)
    return f'<time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))}">{shown}</time>'


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _value(value: float | None, spec: str, unit: str) -> str:
    return "–" if value is None else f"{format(value, spec)}{unit}"


def _calibrated(row: Row, quantity: str) -> str:
    """The mark of a calibrated value (the watch view's `~`, in words)."""
    known = getattr(row.readings, quantity) is not None
    return " <small>calibrated</small>" if known and quantity in row.calibrated else ""


def _row(row: Row, now: float) -> str:
    r = row.readings
    temperature = _value(r.temperature, ".2f", " °C") + _calibrated(row, "temperature")
    humidity = _value(r.humidity, ".0f", " %") + _calibrated(row, "humidity")
    battery = [f"{r.battery} %"] if r.battery is not None else []
    if r.voltage is not None:  # where the format sends it
        battery.append(f"{r.voltage:.2f} V")
    if r.last_seen is None:
        last = '<span class="flag">not heard yet</span>'
    else:
        last = _clock(r.last_seen, now)
        if not row.heard:
            last += ' <small class="flag">not in the latest scan</small>'
    fmt = "–" if r.format is None else _e(FORMAT_NAMES.get(r.format, r.format))
    if r.encrypted:
        fmt += " <small>encrypted</small>"
    cells = (
        temperature,
        humidity,
        " · ".join(battery) or "–",
        _value(r.rssi, "d", " dBm"),
        last,
        fmt,
        _e(format_share(row.reception)),
    )
    quiet = "" if row.heard else ' class="quiet"'
    name = f"{_e(row.device.name)}<small>{_e(row.device.mac)}</small>"
    return f'<tr{quiet}><th scope="row">{name}</th>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n"


def _summary(view: View, shown: list[Row], now: float) -> str:
    cfg, ended = view.cfg, view.snapshot.ended
    timing = f"a {cfg.scan_duration_seconds:g} s scan every {cfg.scan_interval_seconds:g} s"
    if ended is None:
        return f"No scan has ended yet ({timing})."
    scan = f"latest scan ended {_clock(ended, now)} ({timing})."
    if not shown:
        return f"The {scan}"
    return f"{sum(row.heard for row in shown)} of {len(shown)} sensors heard; the {scan}"


def _sensors(view: View, shown: list[Row], now: float) -> str:
    if not shown:
        return (
            f"<p>No sensors in {_e(view.cfg.path)} yet: add them under <code>devices:</code> "
            "(<code>ble-exporter watch --all</code> lists the sensors in range).</p>\n"
        )
    head = "".join(f'<th scope="col">{title}</th>' for title in COLUMNS)
    demo = "<p class=mute>Simulated demo sensors: the config has none.</p>\n" if view.demo else ""
    body = "".join(_row(row, now) for row in shown)
    return f'{demo}<table id="sensors">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n'


def _scanner(view: View, now: float) -> str:
    cfg = view.cfg
    several = len(view.health) > 1
    facts = [("Scanning", f"{_e(view.mode)}, {_count(view.counters.scans, 'scan')} so far")]
    for adapter, health in view.health.items():
        if health.failed:
            state = '<span class="flag">failed; retried at scan starts</span>'
        elif health.up:
            state = "hearing advertisements"
        else:
            silent = _count(health.silent_scans, "scan")
            state = f'<span class="flag">silent: no advertisement in the last {silent}</span>'
        if several:
            counts = f"{_count(health.restarts, 'scanner restart')}, {_count(health.resets, 'reset')}"
            facts.append((_e(adapter), f"{_e(health.mode)}, {state}; {counts}"))
        else:
            facts += [
                ("State", state),
                ("Scanner restarts", str(health.restarts)),
                ("Adapter resets", str(health.resets)),
            ]
        if health.last_error is not None:
            when = f"{_clock(health.last_error_time, now)}: " if health.last_error_time is not None else ""
            facts.append(("Latest error" + (f" ({_e(adapter)})" if several else ""), when + _e(health.last_error)))
    if view.config is not None and not view.config.last_reload_successful:
        problems = "<br>".join(_e(p) for p in view.config.problems)
        facts.append(
            ("Config", f'<span class="flag">the last reload was rejected; running on as before</span><br>{problems}')
        )
    items = "".join(f"<dt>{term}</dt><dd>{value}</dd>" for term, value in facts)
    adapter = "simulated sensors" if view.simulated else cfg.adapters_shown
    return f"<h2>Scanner{'s' if several else ''}: {_e(adapter)}</h2>\n<dl>{items}</dl>\n"


def next_refresh(view: View, now: float) -> int:
    """Seconds until the page should be fetched again: just after the next scan's end."""
    cfg, ended = view.cfg, view.snapshot.ended
    # The first scan starts when the exporter does; the next one starts an interval after the latest.
    due = (cfg.scan_duration_seconds - view.uptime) if ended is None else (ended + cfg.scan_interval_seconds - now)
    due += REFRESH_MARGIN_SECONDS
    return max(MIN_REFRESH_SECONDS, min(math.ceil(due), math.ceil(cfg.scan_interval_seconds + REFRESH_MARGIN_SECONDS)))


def live_page(view: View, now: float) -> str:
    """The whole page for the moment `now` (Unix time)."""
    shown = rows(view)
    host = _e(socket.gethostname())
    heard = sum(row.heard for row in shown)
    title = f"{heard}/{len(shown)} heard · ble-exporter on {host}" if shown else f"ble-exporter on {host}"
    refresh = max(1, math.ceil(view.cfg.scan_interval_seconds))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        '<link rel="icon" href="data:,">\n'  # no request for /favicon.ico
        f"<title>{title}</title>\n"
        f'<noscript><meta http-equiv="refresh" content="{refresh}"></noscript>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n"
        f'<main id="page" data-next="{next_refresh(view, now)}">\n'
        f'<h1>ble-exporter <span class="mute">on {host}</span></h1>\n'
        f"<p>{_summary(view, shown, now)}</p>\n"
        f"{_sensors(view, shown, now)}"
        f"{_scanner(view, now)}"
        f"<footer><p>ble-exporter {_e(__version__)} · up {format_uptime(view.uptime)} · "
        '<a href="metrics">/metrics</a> · <a href="status">/status</a> (JSON) · <a href="healthz">/healthz</a>'
        "</p></footer>\n</main>\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def front_page(view: View, now: float) -> str:
    """What / serves: the live page, or with `live_page: false` the links page."""
    return live_page(view, now) if view.cfg.live_page else landing_page(view)
