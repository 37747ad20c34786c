"""monitoring/: the Prometheus rules (checked and unit-tested by Debian's real promtool), the Grafana
dashboard's structure and queries, and how both are packaged and documented.

promtool comes with Debian's `prometheus` package (`make test` installs it); without it these tests
fail, they never skip. That the rules and every dashboard query work against a real Prometheus
scraping the real exporter is the system test's part (systemtest/system_test.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dashboard
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
ALERTS = MONITORING / "prometheus" / "alerts.yml"
RECORDING = MONITORING / "prometheus" / "recording.yml"
UNIT_TESTS = (MONITORING / "tests" / "alerts_test.yml", MONITORING / "tests" / "recording_test.yml")
README = ROOT / "README.md"
# Where the .deb puts the files (debian/ble-exporter.install) and the README tells users to look.
INSTALLED = {
    "monitoring/prometheus/alerts.yml": "usr/share/ble-exporter/prometheus",
    "monitoring/prometheus/recording.yml": "usr/share/ble-exporter/prometheus",
    "monitoring/grafana/ble-exporter.json": "usr/share/ble-exporter/grafana",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: apt-get install prometheus (make test-deps does)", pytrace=False)
    return path


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)


def rules(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [dict(rule, group=group["name"]) for group in doc["groups"] for rule in group["rules"]]


ALERT_RULES = rules(ALERTS)
RECORD_RULES = rules(RECORDING)


def unit_test_groups(path: Path) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
    return groups


# --- the rules -----------------------------------------------------------------------------------


def test_promtool_checks_the_rules_and_counts_every_rule(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(ALERTS), str(RECORDING))
    assert result.returncode == 0, result.stdout + result.stderr
    found = [int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", result.stdout)]
    assert found == [len(ALERT_RULES), len(RECORD_RULES)], result.stdout
    assert len(ALERT_RULES) == 14 and len(RECORD_RULES) == 15


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS), result.stdout


def test_the_unit_tests_catch_a_changed_window_and_a_changed_constant(promtool: str, tmp_path: Path) -> None:
    """The unit tests can fail: a sensor alert that waits 3 minutes instead of 13 and a Magnus constant
    from another table (Sonntag's b = 243.12) both break them."""
    copy = tmp_path / "monitoring"
    shutil.copytree(MONITORING, copy)
    alerts = copy / "prometheus" / "alerts.yml"
    alerts.write_text(alerts.read_text().replace("\n        for: 13m\n", "\n        for: 3m\n"))
    recording = copy / "prometheus" / "recording.yml"
    recording.write_text(recording.read_text().replace("243.04", "243.12"))
    result = run(promtool, "test", "rules", *(str(copy / "tests" / t.name) for t in UNIT_TESTS))
    report = result.stdout + result.stderr
    assert result.returncode != 0
    assert "alertname: BleSensorNotHeard" in report
    assert "device:ble_sensor_dew_point_celsius:magnus" in report


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = [case for group in unit_test_groups(UNIT_TESTS[0]) for case in group.get("alert_rule_test", [])]
    for rule in ALERT_RULES:
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        firing = [case for case in mine if case.get("exp_alerts")]
        assert firing, f"{rule['alert']}: no unit test where it fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{rule['alert']}: no unit test where it must not fire"
        for case in firing:
            for alert in case["exp_alerts"]:
                assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
                assert set(alert["exp_annotations"]) == {"summary", "description"}, rule["alert"]


def test_every_recording_rule_is_checked_by_a_unit_test() -> None:
    exprs = " ".join(
        case["expr"] for group in unit_test_groups(UNIT_TESTS[1]) for case in group.get("promql_expr_test", [])
    )
    for rule in RECORD_RULES:
        assert re.search(re.escape(rule["record"]) + r"(?![\w:])", exprs), f"{rule['record']} is not tested"


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda r: r["alert"])
def test_alert_has_a_severity_and_annotations_that_name_what_and_say_what_to_do(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("critical", "warning")
    summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
    # per-sensor alerts name the sensor, receiver alerts the receiver
    subject = "$labels.device" if rule["group"] == "ble-exporter-sensors" else "$labels.instance"
    assert subject in summary and subject in description
    # something to do: a command in backticks, a file to change, a battery to replace
    assert "`" in description or "/etc/ble-exporter" in description or "replace" in description
    if rule.get("for"):
        assert re.fullmatch(r"\d+m", rule["for"])


def test_every_alert_is_preceded_by_the_reasoning_for_its_threshold() -> None:
    lines = ALERTS.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- alert:"):
            above = [ln.strip() for ln in lines[max(0, i - 12) : i]]
            comments = [ln for ln in above if ln.startswith("#")]
            assert lines[i - 1].strip().startswith("#") and len(comments) >= 3, line


def test_the_job_name_is_in_one_rule_and_matches_the_readme_scrape_config() -> None:
    jobs = {name for rule in ALERT_RULES for name in re.findall(r'job="([^"]+)"', rule["expr"])}
    assert jobs == {"ble-exporter"}
    assert [rule["alert"] for rule in ALERT_RULES if "job=" in rule["expr"]] == ["BleExporterDown"]
    config = yaml.safe_load(readme_block("prometheus.yml"))
    assert [job["job_name"] for job in config["scrape_configs"]] == ["ble-exporter"]
    assert config["rule_files"] == ["/usr/share/ble-exporter/prometheus/*.yml"]


def test_alerts_use_only_metrics_the_exporter_has() -> None:
    for rule in ALERT_RULES:
        unknown = metric_names(rule["expr"]) - exporter_metrics() - {"up"}
        assert not unknown, f"{rule['alert']}: {unknown}"


# --- packaging and documentation ---------------------------------------------------------------


def test_the_deb_installs_the_rules_and_the_dashboard() -> None:
    install = (ROOT / "debian" / "ble-exporter.install").read_text(encoding="utf-8").splitlines()
    entries = {line.split()[0]: line.split()[1].strip("/") for line in install if line.strip()}
    for source, target in INSTALLED.items():
        assert entries.get(source) == target, f"debian/ble-exporter.install: {source} -> {target}"
    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8")
    assert "recursive-include monitoring/prometheus *.yml" in manifest
    assert "recursive-include monitoring/grafana *.json" in manifest


def test_the_readme_and_the_man_page_name_the_installed_files() -> None:
    readme = README.read_text(encoding="utf-8")
    man = (ROOT / "debian" / "ble-exporter.1").read_text(encoding="utf-8").replace("\\-", "-")
    for source, target in INSTALLED.items():
        path = "/" + target + "/" + Path(source).name
        assert path in readme, path
        assert path in man, path
    assert "](monitoring/dashboard.png)" in readme
    png = MONITORING / "dashboard.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 300_000


# --- the dashboard -----------------------------------------------------------------------------

DASH = dashboard.load()
QUERIES = dashboard.queries(DASH)


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def test_dashboard_is_importable_json_with_no_fixed_id_and_a_current_schema() -> None:
    assert DASH["id"] is None and DASH["uid"] == "ble-exporter" and DASH["title"]
    assert DASH["schemaVersion"] >= 36  # the "datasource as {type, uid}" model of Grafana 9 and later
    assert "__inputs" not in DASH  # the datasource variable does the job of an import input


def test_every_datasource_reference_is_the_datasource_variable() -> None:
    refs = [value for key, value in walk(DASH) if key == "datasource"]
    assert len(refs) >= len(QUERIES)
    assert all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs), refs
    uids = [value for key, value in walk(DASH) if key == "uid"]
    assert set(uids) == {"ble-exporter", "${datasource}"}  # the dashboard's own uid, nothing hard-coded
    (variable,) = [v for v in DASH["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("datasource", "prometheus")
    for panel in dashboard.panels(DASH):
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_instance_and_device_variables_select_all_values_as_a_regex() -> None:
    variables = {v["name"]: v for v in dashboard.query_variables(DASH)}
    assert list(variables) == ["instance", "device"]
    for v in variables.values():
        assert v["multi"] and v["includeAll"] and not v.get("allValue"), v["name"]
        assert v["current"]["value"] == ["$__all"]
    assert dashboard.label_values(dashboard.variable_query(variables["instance"])) == (
        "ble_exporter_build_info",
        "instance",
    )
    assert dashboard.label_values(dashboard.variable_query(variables["device"])) == (
        'ble_exporter_device_info{instance=~"$instance"}',
        "device",
    )


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    all_panels = list(dashboard.panels(DASH))
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    cells: dict[tuple[int, int], str] = {}
    for p in all_panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_every_panel_has_queries_with_unique_ref_ids() -> None:
    for panel in dashboard.panels(DASH):
        if panel["type"] == "row":
            continue
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_the_panels_the_issue_asks_for() -> None:
    by_title = {p["title"]: p for p in dashboard.panels(DASH)}
    (table,) = [p for p in by_title.values() if p["type"] == "table"]
    organize = next(t for t in table["transformations"] if t["id"] == "organize")["options"]
    shown = {k: v for k, v in organize["renameByName"].items() if not organize["excludeByName"].get(k)}
    assert sorted(shown.values()) == sorted(["Sensor", "Temperature", "Humidity", "Battery", "Last heard", "RSSI"])
    for title in ("Temperature", "Relative humidity", "Dew point", "Battery (30 days)", "Scans per minute"):
        assert by_title[title]["type"] == "timeseries"
    assert dashboard.seconds(by_title["Battery (30 days)"]["timeFrom"]) >= 14 * 86400  # weeks
    exprs = " ".join(q.expr for q in QUERIES)
    for metric in (
        "ble_exporter_scans_total",
        "ble_exporter_advertisements_received_total",
        "ble_exporter_advertisements_decoded_total",
        "ble_exporter_advertisements_rejected_total",
        "ble_exporter_scanner_up",
        "ble_exporter_scanner_restarts_total",
        "device:ble_sensor_scans_heard:ratio_1h",
        "device:ble_sensor_frames_heard_per_sent:ratio_1h",
        "device:ble_sensor_frame_period_seconds:rate_15m",
        "ble_sensor_restarts_total",
        "ble_exporter_adapter_resets_total",
        "ble_sensor_adapter_rssi_dbm",
        "instance_adapter_device:ble_sensor_adapter_scans_heard:ratio_1h",
    ):
        assert metric in exprs, metric
    for title in ("Scanner up by adapter", "Signal strength by receiver", "Share of scans heard by receiver (1 h)"):
        assert by_title[title]["type"] == "timeseries"


# Series with an `adapter` label (an exporter can scan with several adapters: README "Several adapters").
PER_ADAPTER = (
    "ble_exporter_scanner_up",
    "ble_exporter_scanner_restarts_total",
    "ble_exporter_adapter_resets_total",
    "ble_sensor_adapter_rssi_dbm",
    "ble_sensor_adapter_scans_heard_total",
    "instance_adapter_device:ble_sensor_adapter_scans_heard:ratio_1h",
)


def test_per_adapter_series_are_told_apart_by_their_adapter_on_the_dashboard() -> None:
    """A query that keeps the per-adapter series names the adapter in its legend (else two adapters of one
    receiver would draw two lines of the same name); one that aggregates them says how, by instance."""
    per_adapter = [q for q in QUERIES if metric_names(q.expr) & set(PER_ADAPTER)]
    assert {n for q in per_adapter for n in metric_names(q.expr)} >= set(PER_ADAPTER) - {
        "ble_sensor_adapter_scans_heard_total"  # read through its recording rule
    }
    for q in per_adapter:
        if re.search(r"\b(max|min|sum|avg|count|topk)\b", q.expr):
            assert "by (" in q.expr and "adapter" not in q.legend, q
        else:
            assert "{{adapter}}" in q.legend and "{{instance}}" in q.legend, (q.panel_title, q.legend)


def test_dashboard_queries_use_the_recording_rules_and_known_metrics_only() -> None:
    recorded = {rule["record"] for rule in RECORD_RULES}
    used = set()
    for q in QUERIES:
        names = metric_names(q.expr)
        assert names, q
        unknown = names - recorded - exporter_metrics() - {"up"}
        assert not unknown, f"{q.panel_title} {q.ref_id}: {unknown}"
        used |= names & recorded
    assert "device:ble_sensor_temperature_celsius:best_rssi" in used
    assert "device:ble_sensor_dew_point_celsius:magnus" in used


def test_every_dashboard_query_is_valid_promql_once_substituted(promtool: str, tmp_path: Path) -> None:
    """promtool parses each query (as the expression of a recording rule) after Grafana's substitution."""
    values = {"instance": dashboard.regex_of(["pi1:8000", "pi2:8000"]), "device": dashboard.regex_of(["kitchen"])}
    group = []
    for i, q in enumerate(QUERIES):
        expr = dashboard.substitute(q.expr, values | dashboard.builtins(86400, 30, q.min_interval))
        assert "$" not in expr and "[[" not in expr, expr
        group.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": group}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(QUERIES)} rules found" in result.stdout


def test_grafana_substitution() -> None:
    assert dashboard.regex_of(["living_room", "a.b"]) == "(a\\\\.b|living_room)"
    assert dashboard.regex_of(["kitchen"]) == "kitchen"
    assert dashboard.substitute(
        'x{d=~"$device"}[$__rate_interval] ${device} [[device]]', {"device": "k", "__rate_interval": "1m"}
    ) == ('x{d=~"k"}[1m] k k')
    with pytest.raises(KeyError):
        dashboard.substitute("$nope", {})
    # 1 day at ~1000 points: 87 s; $__rate_interval at least 4 scrapes
    assert dashboard.builtins(86400, 15)["__interval"] == "87s"
    assert dashboard.builtins(86400, 15)["__rate_interval"] == "102s"
    assert dashboard.builtins(600, 15)["__rate_interval"] == "60s"
    assert dashboard.builtins(600, 15, "10m")["__interval"] == "600s"


# --- helpers -------------------------------------------------------------------------------------

_KEYWORDS = {"and", "or", "unless", "bool", "offset"}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers that are no function (not followed by '('),
    keyword, label name (in by/on/... lists or matchers) or part of a number."""
    text = re.sub(r'"[^"]*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    found = re.findall(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:]*\s*\()", text)
    return set(found) - _KEYWORDS


def exporter_metrics() -> set[str]:
    """The metrics of the README's metrics table (the names are fixed), with process_start_time_seconds."""
    names = set()
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `ble_"):
            names.update(re.findall(r"`(ble_[a-z_]+)`", line.split("|")[1]))
    return names | {"process_start_time_seconds"}


def readme_block(after: str) -> str:
    """The first ```yaml block of the README's "Alerts and dashboards" section after a line naming `after`."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Alerts and dashboards") :]
    start = section.index(after)
    block = re.search(r"```yaml\n(.*?)```", section[start:], re.DOTALL)
    assert block, f"no yaml block after {after!r} in the README"
    return block.group(1)
