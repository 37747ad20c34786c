"""`ble-exporter watch`: the live terminal view, drawn with rich from the same ScanEngine as the exporter.

`render` is pure (engine state and the time in, a renderable out) so the tests can look at exactly
what a user sees; `run_watch` is the thin terminal edge around it: scanner, keys, signals, redraws.
rich is imported here only, so the daemon never loads it (tests/test_layering.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ble_exporter.calibration import Calibration
from ble_exporter.config import Config
from ble_exporter.core import Core
from ble_exporter.engine import HISTORY_SECONDS, LiveState, ScanEngine
from ble_exporter.exits import Exit
from ble_exporter.formatting import format_age, format_name, format_period, format_share, format_uptime
from ble_exporter.health import RadioHealth
from ble_exporter.reception import Reception
from ble_exporter.scanner import ScanError, ScanMode

# The firmware advertises every 2.5 s by default: a sensor quiet for 30 s has missed a dozen adverts
# in a row (three, if set to advertise every 10 s to save battery), which radio noise alone rarely does.
STALE_SECONDS = 30.0
# Unconfigured sensors (--all) heard longer ago than this have walked away; they leave the list.
UNKNOWN_FORGET_SECONDS = 300.0
# The engine keeps 10 minutes of temperatures but trims the oldest quarter at a time: a trend of the
# last 5 minutes is always fully covered (a 10-minute one would lose its left end now and then).
TREND_SECONDS = 300.0
assert TREND_SECONDS <= HISTORY_SECONDS * 0.75
# The keys that scroll the list of devices: (direction, by a page rather than a row).
SCROLL_KEYS = {b"\x1b[A": (-1, False), b"\x1b[B": (1, False), b"\x1b[5~": (-1, True), b"\x1b[6~": (1, True)}
REFRESH_SECONDS = 0.25  # how often the view checks for news; it redraws only when something changed
START_WAIT_SECONDS = 3.0  # how long the view waits for the scanner before drawing anyway
RATE_WINDOW_SECONDS = 5.0  # adverts/s is averaged over this long
SPARKS = "▁▂▃▄▅▆▇█"
MIN_SPARK_RANGE = 1.0  # °C: a full-height trend means at least a degree; noise stays low


@dataclass(frozen=True)
class Header:
    """What the view shows about the process rather than the sensors."""

    started: float  # time.time() at start, for the uptime
    rate: float | None  # adverts/s from any device; None until there is a measurement
    config_path: str = "config.yaml"
    # The scan cycle's, by adapter, read as it changes.
    health: Mapping[str, RadioHealth] = field(default_factory=lambda: {"hci0": RadioHealth()})


# --- pure formatting ---------------------------------------------------------------------------------


def format_count(n: int) -> str:
    return str(n) if n < 10000 else f"{n // 1000}k"


def sparkline(history: Sequence[tuple[float, float]], now: float, width: int, span: float = TREND_SECONDS) -> str:
    """Temperatures of the last `span` seconds in `width` block characters, oldest left, newest right;
    a blank where nothing was heard. The scale is the visible min..max, at least MIN_SPARK_RANGE wide."""
    if width <= 0:
        return ""
    start = now - span
    sums = [0.0] * width
    counts = [0] * width
    for t, value in history:
        if t < start or t > now:
            continue
        i = min(width - 1, int((t - start) / span * width))
        sums[i] += value
        counts[i] += 1
    means = [s / c if c else None for s, c in zip(sums, counts, strict=True)]
    heard = [m for m in means if m is not None]
    if not heard:
        return " " * width
    low, high = min(heard), max(heard)
    if high - low < MIN_SPARK_RANGE:
        middle = (high + low) / 2
        low, high = middle - MIN_SPARK_RANGE / 2, middle + MIN_SPARK_RANGE / 2
    top = len(SPARKS) - 1
    return "".join(" " if m is None else SPARKS[round((m - low) / (high - low) * top)] for m in means)


# --- the view ----------------------------------------------------------------------------------------


def _header(engine: ScanEngine, now: float, header: Header, width: int) -> Text:
    """One line: as many of its parts as fit, the least telling left out first, so it is never cut."""
    heard = sum(1 for d in engine.devices if _fresh(engine.live[d.mac], now))
    radios = header.health.items()
    radio = ", ".join(_radio(adapter, health, len(radios) > 1) for adapter, health in radios)
    rate = "–" if header.rate is None else f"{header.rate:.1f}"
    parts = [  # (priority: lower stays longer, text)
        (2, "ble-exporter watch"),
        (0, radio),
        (3, f"up {format_uptime(now - header.started)}"),
        (1, f"{rate} adverts/s"),
    ]
    if engine.devices:
        parts.append((0, f"{heard}/{len(engine.devices)} heard"))
    for drop in (3, 2, 1):
        if len(" · ".join(text for _, text in parts)) <= width:
            break
        parts = [(p, text) for p, text in parts if p != drop]
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, (_, part) in enumerate(parts):
        text.append(" · " if i else "")
        text.append(part, style="bold" if part == "ble-exporter watch" else "")
    return text


def _radio(adapter: str, health: RadioHealth, several: bool) -> str:
    """`hci0 passive`, `hci1 failed`, `hci0 active (silent)`; one simulated radio names no adapter."""
    if health.failed:
        return f"{adapter} failed"
    alone = health.mode == ScanMode.SIMULATED and not several
    radio = "simulated sensors" if alone else f"{adapter} {health.mode}"
    return radio if health.up else f"{radio} (silent)"


def _fresh(state: LiveState, now: float) -> bool:
    last_seen = state.readings.last_seen
    return last_seen is not None and now - last_seen <= STALE_SECONDS


def _value(value: float | int | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _age(age: float) -> Text:
    """Seconds since last heard; a stale device gets a `!` (visible without colour) and red."""
    if age > STALE_SECONDS:
        return Text(format_age(age) + "!", style="bold red")
    return Text(format_age(age) + " ")


# Figures keep a steady width (a packet count reaching 1000 must not shift every column). In a narrow
# terminal whole columns give way, in DROPPED_FIRST order, and the name is cut last: it is what the user
# chose. Humidity is whole percent, as the sensor's own display shows it (the SHTC3 is accurate to
# ±2 %RH); temperature keeps the firmware's 0.01 °C.
_FIGURES: tuple[tuple[str, JustifyMethod, int], ...] = (
    ("MAC", "left", 17),
    ("°C", "right", 5),
    ("trend", "left", 5),
    ("RH%", "right", 3),
    ("bat", "right", 4),
    ("V", "right", 4),
    ("dBm", "right", 3),
    ("via", "left", 4),
    ("ago", "right", 4),
    ("pkts", "right", 4),
    ("heard", "right", 5),
    ("per", "right", 4),
    ("format", "left", 10),
)
DROPPED_FIRST = ("MAC", "trend", "pkts", "V", "dBm")
# How well a sensor is heard (the share of scans since start, its measured period) and, with several
# adapters, the one that heard it best (`via`, given up first) are shown only where the columns above
# and the whole name already fit: the 80-column view stays as it was.
EXTRAS = ("heard", "per", "via")
NAME_WIDTH = (6, 32)  # the name column's narrowest and widest
# A calibrated value carries a mark (visible without colour); its column is one wider when any has one.
CALIBRATION_MARK = "~"
MARKABLE = {"°C": "temperature", "RH%": "humidity"}


@dataclass(frozen=True)
class Layout:
    """Which figure columns a list shows, and how wide its name and trend columns are."""

    columns: tuple[str, ...]
    name: int
    trend: int
    marked: bool = False  # the °C and RH% columns have room for the calibration mark
    via: int = 4  # the width of the best adapter's name


def layout(width: int, names: Sequence[str], marked: bool = False, adapters: Sequence[str] = ()) -> Layout:
    """Columns for a terminal `width` columns wide: the trend gets what the name does not need. With
    several `adapters`, `via` names the one that heard each sensor best."""
    widths = {title: w + (marked and title in MARKABLE) for title, _, w in _FIGURES}
    widths["via"] = max((len(a) for a in adapters), default=0)
    columns = [title for title, _, _ in _FIGURES if title not in EXTRAS]

    def needed(cols: list[str]) -> int:
        return NAME_WIDTH[0] + sum(widths[c] + 1 for c in cols)  # one space between columns

    for title in DROPPED_FIRST:
        if needed(columns) <= width:
            break
        columns.remove(title)
    longest = max((len(n) for n in names), default=NAME_WIDTH[0])
    whole_name = min(NAME_WIDTH[1], max(NAME_WIDTH[0], longest))
    for title in EXTRAS if len(adapters) > 1 else EXTRAS[:-1]:
        if needed([*columns, title]) + whole_name - NAME_WIDTH[0] <= width:
            columns.append(title)
    columns = [title for title, _, _ in _FIGURES if title in columns]
    spare = max(0, width - needed(columns))
    name = min(whole_name, NAME_WIDTH[0] + spare)
    trend = widths["trend"] + spare - (name - NAME_WIDTH[0]) if "trend" in columns else 0
    return Layout(tuple(columns), name, trend, marked, widths["via"])


def _table(shape: Layout, named: bool) -> Table:
    """The column layout both lists share; the --all list has no name and no trend."""
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, header_style="bold")
    if named:
        table.add_column("name", min_width=NAME_WIDTH[0], max_width=shape.name, no_wrap=True)
    for title, justify, width in _FIGURES:
        if title not in shape.columns or (title == "trend" and not named):
            continue
        if title == "trend":
            table.add_column(title, width=shape.trend, no_wrap=True)
        elif title == "via":
            table.add_column(title, min_width=shape.via, no_wrap=True)
        else:
            marked = shape.marked and title in MARKABLE
            table.add_column(title, justify=justify, min_width=width + marked, no_wrap=True)
    return table


def _reception_cells(reception: Reception | None) -> dict[str, RenderableType]:
    if reception is None:  # an unconfigured sensor (--all): nothing is counted for it
        return {"heard": "", "per": ""}
    return {"heard": format_share(reception), "per": format_period(reception)}


def _marked(value: str, calibrated: bool, shape: Layout) -> str:
    if not shape.marked:
        return value
    return value + (CALIBRATION_MARK if calibrated else " ")


def _cells(
    state: LiveState,
    now: float,
    shape: Layout,
    named: bool,
    *,
    reception: Reception | None = None,
    calibration: Calibration | None = None,
    via: str = "",
) -> tuple[list[RenderableType], bool]:
    """The figures of one row, as `shape` has them, and whether the device is stale."""
    r = state.readings
    age = now - (r.last_seen if r.last_seen is not None else now)
    stale = age > STALE_SECONDS
    cells: dict[str, RenderableType] = {
        "MAC": state.mac,
        "°C": _marked(_value(r.temperature, ".2f"), bool(calibration and calibration.temperature), shape),
        "trend": Text(sparkline(state.history, now, shape.trend), style="" if stale else "cyan"),
        "RH%": _marked(_value(r.humidity, ".0f"), bool(calibration and calibration.humidity), shape),
        "bat": _value(r.battery, "d") + ("%" if r.battery is not None else ""),
        "V": _value(r.voltage, ".2f"),
        "dBm": _value(r.rssi, "d"),
        "via": via,
        "ago": _age(age),
        "pkts": format_count(r.packets),
        "format": format_name(r),
        **_reception_cells(reception),
    }
    return [cells[c] for c in shape.columns if named or c != "trend"], stale


_WAITING: dict[str, RenderableType] = {"MAC": "", "°C": "–", "trend": "", "RH%": "–", "bat": "–", "V": "–"}


def _devices_table(engine: ScanEngine, now: float, shape: Layout, rows: range) -> Table:
    table = _table(shape, named=True)
    best = {  # the adapter that heard each device strongest in the latest scan
        d.device.mac: max(heard, key=lambda a: heard[a] or -999)
        for d in engine.snapshot.devices
        if (heard := d.adapters)
    }
    for device in engine.devices[rows.start : rows.stop]:
        state = engine.live[device.mac]
        name = Text(device.name, no_wrap=True, overflow="ellipsis")
        if state.readings.last_seen is None:
            # Nothing known yet, the format included: the format column says why the row is empty.
            waiting = {
                **_WAITING,
                **_reception_cells(engine.reception.get(device.mac)),
                "MAC": device.mac,
                "dBm": "–",
                "via": "",
                "ago": "– ",
                "pkts": "0",
                "format": "waiting…",
            }
            table.add_row(name, *[waiting[c] for c in shape.columns], style="dim")
            continue
        reception = engine.reception.get(device.mac)
        cells, stale = _cells(
            state, now, shape, True, reception=reception, calibration=device.calibration, via=best.get(device.mac, "")
        )
        table.add_row(name, *cells, style="dim" if stale else None)
    return table


def unknown_sensors(engine: ScanEngine, now: float) -> list[LiveState]:
    """Sensors in range that are not in the config, in the order they were first heard: a list sorted
    by signal would reshuffle with every advert, as RSSI swings by several dB."""
    return [
        s
        for s in engine.live.values()
        if s.name is None and s.readings.last_seen is not None and now - s.readings.last_seen <= UNKNOWN_FORGET_SECONDS
    ]


def _signal(state: LiveState) -> int:
    rssi = state.readings.rssi
    return rssi if rssi is not None else -999


def _unknown_table(states: Sequence[LiveState], now: float, shape: Layout) -> Table:
    shape = Layout(("MAC", *(c for c in shape.columns if c not in ("MAC", "trend", "via", *EXTRAS))), shape.name, 0)
    table = _table(shape, named=False)
    for state in states:
        cells, stale = _cells(state, now, shape, named=False)
        table.add_row(*cells, style="dim" if stale else None)
    return table


def render(
    engine: ScanEngine,
    now: float,
    header: Header,
    *,
    show_all: bool = False,
    width: int = 80,
    height: int = 24,
    scroll: int = 0,
) -> RenderableType:
    """The whole view for one moment: header, configured devices, (--all) unconfigured ones, keys.

    `width` and `height` are the terminal's, and the view never needs more: columns give way in a
    narrow terminal, and when the rows do not fit, the devices from row `scroll` on are shown with a
    line saying which (the arrow keys move it) and the --all list keeps its strongest.
    """
    lines = height - 1  # a line spare for the cursor
    free = lines - 4  # the header, the footer and a blank line after each
    calibrated = any(d.calibration for d in engine.devices)
    shape = layout(width, [d.name for d in engine.devices], calibrated, engine.adapters)
    states = unknown_sensors(engine, now) if show_all else []
    # The --all section needs a blank line and its title, then one line, or the table's header, one
    # sensor, a line saying how many more, and the hint.
    all_min = 0 if not show_all else 3 if not states else 6
    body: list[RenderableType] = []
    scrolling = False
    if engine.devices:
        n = len(engine.devices)
        fit = max(1, free - all_min - 1)  # rows beside the table's header
        shown = n if n <= fit else max(1, fit - 1)  # keep a line to say which rows are shown
        scrolling = shown < n
        first = max(0, min(scroll, n - shown))
        body.append(_devices_table(engine, now, shape, range(first, first + shown)))
        if scrolling:
            body.append(Text(f"devices {first + 1}–{first + shown} of {n} · ↑↓ PgUp PgDn to scroll", style="dim"))
        free -= 1 + shown + scrolling
    else:
        hint = "" if show_all else "; --all lists the sensors in range"
        body.append(Text(f"No devices in {header.config_path}{hint}.", style="yellow"))
        free -= 1
    if show_all:
        body += [Text(), Text("In range, not in the config:", style="bold")]
        free -= 2
        if not states:
            body.append(Text("none heard yet (a sensor advertises every few seconds)", style="dim"))
        elif free >= 4:
            # The new thermometer on the desk next to the Pi is the strongest signal: a list cut to
            # fit keeps the strongest, and the hint names it.
            room = free - 2  # the table's header and the hint line
            shown_states = states
            if len(states) > room:
                keep = {id(s) for s in sorted(states, key=_signal, reverse=True)[: max(1, room - 1)]}
                shown_states = [s for s in states if id(s) in keep]
            body.append(_unknown_table(shown_states, now, shape))
            if len(shown_states) < len(states):
                body.append(Text(f"… and {len(states) - len(shown_states)} more, weaker", style="dim"))
            strongest = max(states, key=_signal)
            hint_line = Text(f"to add one, put under `devices:` in {Path(header.config_path).name}:  ", style="dim")
            hint_line.append(f'"{strongest.mac}": my_room', style="bold")
            body.append(hint_line)
        else:
            body.append(Text(f"{len(states)} sensors; make the terminal taller to list them", style="dim"))
    footer = Text(no_wrap=True, overflow="ellipsis")
    footer.append(" q ", style="bold reverse")
    footer.append(" quit")
    if scrolling:
        footer.append(" · ↑↓ scroll")
    footer.append(f" · ! not heard for {STALE_SECONDS:.0f} s")
    if any(s.readings.encrypted for s in engine.live.values()):
        footer.append(" · * encrypted")
    if calibrated:
        footer.append(f" · {CALIBRATION_MARK} calibrated")
    footer.append(f" · trend: last {TREND_SECONDS / 60:.0f} min")
    return Group(_header(engine, now, header, width), Text(), *body, Text(), footer)


# --- the terminal edge -------------------------------------------------------------------------------


class AdvertRate:
    """Adverts per second from the engine's running count, averaged over the last few seconds."""

    def __init__(self, window: float = RATE_WINDOW_SECONDS) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, now: float, count: int) -> float | None:
        samples = self._samples
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        first_time, first_count = samples[0]
        if now - first_time < 1.0:
            return None
        return (count - first_count) / (now - first_time)


@contextlib.contextmanager
def cbreak(stream: object) -> Iterator[int | None]:
    """Keys without Enter and without echo while the view runs; the terminal is restored on any exit.
    Yields the fd to read keys from, or None when stdin is not a terminal (no keys then, signals only)."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        yield None
        return
    if not os.isatty(fd):
        yield None
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)  # ISIG stays on: Ctrl-C still sends SIGINT
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _follow_terminal_size(console: Console) -> None:
    """Take the terminal's size from the terminal: rich trusts COLUMNS and LINES from the environment
    (tmux and some shells export them), which do not change when the terminal is resized."""
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except (OSError, ValueError):
        return
    if (console.width, console.height) != (size.columns, size.lines):
        console.size = (size.columns, size.lines)


def _log_to_console(console: Console) -> logging.Handler:
    """Warnings and errors print above the live view (Live keeps the display below them). Info lines
    (one per scan window) would scroll the screen for nothing; the service's log file is not touched."""

    class ConsoleHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                console.print(Text(f"{record.levelname.lower()}: {self.format(record)}", style="yellow"))
            except Exception:
                self.handleError(record)

    handler = ConsoleHandler(logging.WARNING)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    return handler


async def _watch(cfg: Config, simulate: bool, show_all: bool, console: Console) -> None:
    """Scan continuously and redraw until q, Ctrl-C, SIGTERM or SIGHUP; a ScanError propagates."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    core = Core(cfg, simulate=simulate, continuous=True, keep_unknown=show_all)
    engine = core.engine
    header = Header(time.time(), None, cfg.path, core.health)
    rate = AdvertRate()
    core.start(stop)
    cycles = core.cycles
    # A scanner that cannot start (no BlueZ, no adapter) exits with its one line and no half-drawn
    # view; a slow start still gets the view (and q) after a moment.
    await core.wait_started(START_WAIT_SECONDS)
    if cycles.done():
        return

    scroll = 0

    def view(now: float) -> RenderableType:
        size = console.size
        return render(engine, now, header, show_all=show_all, width=size.width, height=size.height, scroll=scroll)

    with cbreak(sys.stdin) as fd, Live(view(time.time()), console=console, auto_refresh=False) as live:
        if fd is not None:

            def on_key() -> None:
                nonlocal scroll
                try:
                    keys = os.read(fd, 64)
                except OSError:
                    keys = b""
                if not keys or b"q" in keys or b"Q" in keys:  # b"": the terminal went away
                    loop.remove_reader(fd)
                    stop.set()
                    return
                page = max(1, console.size.height - 8)
                for key, (direction, paged) in SCROLL_KEYS.items():
                    scroll += keys.count(key) * direction * (page if paged else 1)
                scroll = max(0, min(scroll, len(engine.devices) - 1))

            loop.add_reader(fd, on_key)
        try:
            drawn: tuple[object, ...] = ()
            while not stop.is_set() and not cycles.done():
                _follow_terminal_size(console)
                now = time.time()
                header = replace(header, rate=rate.update(now, engine.counters.adverts_received))
                # Redraw when a packet arrived, a second ticked, a key scrolled or the terminal was resized:
                # an idle view costs next to nothing on a Pi Zero, and an unchanged frame is never rewritten.
                modes = tuple((h.mode, h.up, h.failed) for h in core.health.values())
                state = (engine.counters.adverts_received, int(now), modes, console.size, scroll)
                if state != drawn:
                    if drawn and state[3] != drawn[3]:
                        # Resized: the terminal has re-wrapped what was drawn for the old size, so the
                        # cursor moves of an in-place redraw would leave stale rows; start on a clean screen.
                        console.clear()
                    live.update(view(now), refresh=True)
                    drawn = state
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), REFRESH_SECONDS)
        finally:
            if fd is not None:
                loop.remove_reader(fd)
            stop.set()
            await cycles  # stops the scanner; re-raises its ScanError


def run_watch(cfg: Config, simulate: bool = False, show_all: bool = False) -> int:
    """The `watch` command: 0 on q/Ctrl-C/SIGTERM, 1 on a Bluetooth failure (one line on stderr)."""
    console = Console()
    _log_to_console(console)
    try:
        asyncio.run(_watch(cfg, simulate, show_all, console))
    except ScanError as e:
        logging.getLogger().handlers.clear()
        logging.getLogger().addHandler(logging.NullHandler())
        print(f"ble-exporter: error: {e}", file=sys.stderr)
        return Exit.BLUETOOTH
    return Exit.OK
