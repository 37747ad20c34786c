#!/usr/bin/python3
"""Draw the dashboard's main panels from a system test's Prometheus data into one PNG.

  render_dashboard.py RUN_DIR/dashboard-data.json monitoring/dashboard.png

dashboard-data.json is what the system test's step 9 saved: every query of the shipped Grafana
dashboard, its variables substituted as Grafana does, and Prometheus' answer. This draws a few of the
panels with matplotlib (Grafana itself cannot be installed here), with the panels' titles, units and
legends, so a reader sees what the dashboard shows. `make dashboard-png` runs it on the newest run.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import dashboard

TABLE = "Sensors now"
GRAPHS = (
    "Temperature",
    "Relative humidity",
    "Dew point",
    "Absolute humidity",
    "Battery voltage (30 days)",
    "Signal strength by receiver",
    "Adverts per second",
    "Rejected adverts per minute",
    "Scanner up by adapter",
)
UNITS = {"celsius": "°C", "humidity": "%RH", "percent": "%", "volt": "V", "dBm": "dBm", "s": "s"}
COLUMNS = {"B": ("Temperature", "{:.2f} °C"), "C": ("Humidity", "{:.1f} %"), "D": ("Battery", "{:.0f} %")}


def unit(panel: dict[str, Any]) -> str:
    u = str(panel.get("unit", ""))
    return u.removeprefix("suffix:").strip() if u.startswith("suffix:") else UNITS.get(u, "")


def with_gaps(values: list[list[Any]]) -> tuple[list[datetime], list[float]]:
    """The points of a range query, with a break where points are missing (Grafana draws a gap)."""
    ts = [float(t) for t, _ in values]
    steps = sorted(b - a for a, b in itertools.pairwise(ts))
    step = steps[len(steps) // 2] if steps else 0.0
    xs: list[datetime] = []
    ys: list[float] = []
    for i, (t, v) in enumerate(values):
        if i and float(t) - ts[i - 1] > 2.5 * step:
            xs.append(datetime.fromtimestamp(ts[i - 1] + step))
            ys.append(math.nan)
        xs.append(datetime.fromtimestamp(float(t)))
        ys.append(float(v))
    return xs, ys


def table_rows(panel: dict[str, Any]) -> list[list[str]]:
    values: dict[str, dict[str, float]] = {}
    for target in panel["targets"]:
        for series in target["result"]:
            values.setdefault(series["metric"]["device"], {})[target["refId"]] = float(series["value"][1])
    rows = []
    for device in sorted(values):
        v = values[device]
        row = [device] + [fmt.format(v[ref]) if ref in v else "–" for ref, (_, fmt) in COLUMNS.items()]
        row.append(f"{v['E']:.0f} s ago" if "E" in v else "–")
        row.append(f"{v['F']:.0f} dBm" if "F" in v else "–")
        rows.append(row)
    return rows


def draw(data: dict[str, Any], out: Path) -> None:
    panels = {p["title"]: p for p in data["panels"]}
    fig = plt.figure(figsize=(15, 12), dpi=72)
    grid = fig.add_gridspec(4, 3, height_ratios=[0.55, 1, 1, 1], hspace=0.42, wspace=0.22)
    start = datetime.fromtimestamp(data["start"]).strftime("%Y-%m-%d %H:%M")
    fig.suptitle(
        f"BLE thermometers (ble-exporter dashboard): system test, {start}, "
        f"{(data['end'] - data['start']) / 60:.0f} minutes; sensors {', '.join(data['variables']['device'])}",
        fontsize=13,
    )
    ax = fig.add_subplot(grid[0, :])
    ax.axis("off")
    ax.set_title(TABLE, loc="left", fontsize=11)
    header = ["Sensor", *(name for name, _ in COLUMNS.values()), "Last heard", "RSSI"]
    table = ax.table(cellText=table_rows(panels[TABLE]), colLabels=header, loc="upper center", cellLoc="center")
    table.scale(1, 1.35)
    for i, title in enumerate(GRAPHS):
        panel = panels[title]
        ax = fig.add_subplot(grid[1 + i // 3, i % 3])
        ax.set_title(title.replace(" (30 days)", " (the test's minutes)"), loc="left", fontsize=11)
        for target in panel["targets"]:
            for series in target["result"]:
                xs, ys = with_gaps(series["values"])
                ax.plot(xs, ys, linewidth=1.2, label=dashboard.legend(target["legend"], series["metric"]))
        ax.set_ylabel(unit(panel))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.savefig(out, dpi=72, bbox_inches="tight")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    draw(json.loads(Path(argv[0]).read_text(encoding="utf-8")), Path(argv[1]))
    print(f"{argv[1]}: {Path(argv[1]).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
