"""The Grafana dashboard (monitoring/grafana/ble-exporter.json) as data: its panels, its queries, and
the queries with their variables substituted the way Grafana's Prometheus data source does it.

Used by tests/test_monitoring.py (structure; every query valid PromQL, checked by promtool) and by
systemtest/system_test.py (every query returns data from a real Prometheus), so both substitute alike.

Grafana's rules, as far as these queries need them:
  - a query variable `label_values(SELECTOR, LABEL)` takes the values of LABEL among the series that
    SELECTOR matches, SELECTOR itself substituted first (so `$device` can follow `$instance`);
  - a multi-value or include-all variable is written into a query as a regex: each value escaped
    for a PromQL regex inside a string, joined with `|`, in parentheses when there are several
    ("All" with no custom all-value is every value);
  - `$__interval` is the time range over the panel's data points, at least the panel's minimum
    interval (its `interval`, else the data source's scrape interval); `$__rate_interval` is
    max($__interval + scrape interval, 4 * scrape interval); `$__range` is the time range.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "monitoring" / "grafana" / "ble-exporter.json"
# Grafana's default: a panel's query asks for about one point per pixel of a ~1000 px wide panel.
MAX_DATA_POINTS = 1000

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)\s*$", re.DOTALL)
# What Grafana's prometheusSpecialRegexEscape escapes; the backslash is doubled again because the
# regex sits inside a PromQL string literal.
_REGEX_SPECIAL = set("\\^$*+?.()|[]{}'")

Dashboard = dict[str, Any]
Panel = dict[str, Any]


@dataclass(frozen=True)
class Query:
    panel_id: int
    panel_title: str
    panel_type: str
    ref_id: str
    expr: str
    instant: bool
    min_interval: str  # the panel's `interval` ("" when the data source's scrape interval applies)
    time_from: str  # the panel's own time range (`timeFrom`, e.g. "30d"), "" for the dashboard's
    legend: str
    hidden: bool


def load(path: Path = DASHBOARD) -> Dashboard:
    doc: Dashboard = json.loads(Path(path).read_text(encoding="utf-8"))
    return doc


def panels(dash: Dashboard) -> Iterator[Panel]:
    """Every panel, rows and the panels inside collapsed rows included."""
    for panel in dash.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(dash: Dashboard) -> list[Query]:
    out = []
    for panel in panels(dash):
        for target in panel.get("targets", []):
            out.append(
                Query(
                    panel_id=panel["id"],
                    panel_title=panel.get("title", ""),
                    panel_type=panel.get("type", ""),
                    ref_id=target.get("refId", ""),
                    expr=target.get("expr", ""),
                    instant=bool(target.get("instant")) and not target.get("range"),
                    min_interval=panel.get("interval", ""),
                    time_from=panel.get("timeFrom", ""),
                    legend=target.get("legendFormat", ""),
                    hidden=bool(target.get("hide")),
                )
            )
    return out


def query_variables(dash: Dashboard) -> list[dict[str, Any]]:
    """The dashboard's query variables, in the order Grafana resolves them (their order in the list)."""
    return [v for v in dash.get("templating", {}).get("list", []) if v.get("type") == "query"]


def variable_query(variable: Mapping[str, Any]) -> str:
    query = variable.get("query")
    return str(query.get("query", "") if isinstance(query, Mapping) else query or variable.get("definition", ""))


def label_values(definition: str) -> tuple[str, str]:
    """(selector or "", label) of a `label_values(...)` variable query."""
    m = _LABEL_VALUES.match(definition)
    if not m:
        raise ValueError(f"not a label_values() query: {definition!r}")
    return (m.group(1) or "").strip(), m.group(2)


def regex_escape(value: str) -> str:
    """A value as Grafana escapes it for a regex inside a PromQL string: every special character
    gets an (escaped) backslash before it; a backslash becomes four."""
    backslash = "\\"
    return "".join(
        (backslash * 4 if ch == backslash else backslash * 2 + ch) if ch in _REGEX_SPECIAL else ch for ch in value
    )


def regex_of(values: list[str]) -> str:
    """A multi-value variable with these values selected, as Grafana writes it into a query."""
    escaped = [regex_escape(v) for v in sorted(values)]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", duration.strip())
    if not m:
        raise ValueError(f"not a duration: {duration!r}")
    return float(m.group(1)) * units[m.group(2)]


def builtins(range_seconds: float, scrape_interval_seconds: float, min_interval: str = "") -> dict[str, str]:
    """Grafana's built-in interval variables for a panel over a time range of `range_seconds`."""
    floor = seconds(min_interval) if min_interval else scrape_interval_seconds
    interval = max(math.ceil(range_seconds / MAX_DATA_POINTS), floor)
    rate_interval = max(interval + scrape_interval_seconds, 4 * scrape_interval_seconds)
    return {
        "__interval": f"{interval:.0f}s",
        "__interval_ms": f"{interval * 1000:.0f}",
        "__rate_interval": f"{rate_interval:.0f}s",
        "__range": f"{range_seconds:.0f}s",
        "__range_s": f"{range_seconds:.0f}",
        "__range_ms": f"{range_seconds * 1000:.0f}",
    }


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace $var, ${var} and [[var]] by `values[var]`; an unknown variable raises KeyError."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(f"variable ${name} is not defined (query: {expr})")
        return values[name]

    return _VARIABLE.sub(one, expr)


def step_seconds(range_seconds: float, interval: str) -> float:
    """The step Grafana asks a range query for: the panel's $__interval."""
    return max(seconds(interval), range_seconds / MAX_DATA_POINTS)


def legend(fmt: str, labels: Mapping[str, str]) -> str:
    """A series' name from a legendFormat such as "{{device}} @ {{instance}}"."""
    if not fmt or fmt == "__auto":
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
