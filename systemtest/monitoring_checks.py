"""System-test steps for monitoring/ (the rules and the dashboard the .deb ships), run by
system_test.py against the real Prometheus that scrapes the exporter in the guest:

  - the files under /usr/share/ble-exporter are copied out of the guest (they are what Prometheus
    loads) and must be the repository's monitoring/ files;
  - Prometheus loaded every shipped rule, evaluates them without error, and nothing fires;
  - every recording rule has data for every live sensor (the Magnus ones wherever temperature and
    humidity are there together: a Mijia sensor's scan may hold one of them); the merged values are
    the sensors' own, and the dew point, absolute humidity and vapour pressure match the Magnus
    formula computed here; the best radio (device:ble_sensor_adapter_rssi_dbm:best) names an
    adapter that heard the sensor, with an RSSI that adapter exported;
  - the BleSensorNotHeard expression (evaluated through the query API rather than waiting out its
    `for:`) returns the sensor that stopped advertising and no other, and Prometheus holds its
    alert pending;
  - the BleExporterEncryptedAdvertsRejected expression returns reason="downgrade" while the
    encrypted sensor's address sends plaintext, and nothing before;
  - every dashboard query, its variables substituted as Grafana does (tests/dashboard.py), is valid
    PromQL and returns data; the results go to dashboard-data.json for the picture
    (systemtest/render_dashboard.py).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import dashboard
import yaml
from common import Failed, wait_for

SHARE = "/usr/share/ble-exporter"
REPO = Path(__file__).resolve().parent.parent
SHIPPED = {
    "prometheus/alerts.yml": REPO / "monitoring" / "prometheus" / "alerts.yml",
    "prometheus/recording.yml": REPO / "monitoring" / "prometheus" / "recording.yml",
    "grafana/ble-exporter.json": REPO / "monitoring" / "grafana" / "ble-exporter.json",
}
# Magnus (Alduchov & Eskridge), as monitoring/prometheus/recording.yml writes it
A, B, C, RV = 17.625, 243.04, 6.1094, 461.5


def shipped_rules(run_dir: str, name: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load(Path(run_dir, "shipped", "prometheus", name).read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_expr(run_dir: str, alert: str) -> str:
    return next(str(r["expr"]) for r in shipped_rules(run_dir, "alerts.yml") if r.get("alert") == alert)


def devices(result: list[dict]) -> set[str]:
    return {r["metric"].get("device", "") for r in result}


def copy_shipped(guest: Any, run_dir: str) -> str:
    listing = sorted(guest.sh(f"cd {SHARE} && find . -type f -printf '%P\\n'").split())
    if listing != sorted(SHIPPED):
        raise Failed(f"{SHARE} holds {listing}, expected {sorted(SHIPPED)}")
    for rel, repo_file in SHIPPED.items():
        text = guest.sh(f"cat {SHARE}/{rel}")
        dest = Path(run_dir, "shipped", rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
        if text != repo_file.read_text(encoding="utf-8"):
            raise Failed(f"{SHARE}/{rel} in the installed .deb is not the repository's {repo_file}: rebuild it")
    return f"{len(listing)} files copied out of the guest's {SHARE}, each the repository's own"


def rules_loaded(prom: Any, run_dir: str) -> str:
    want_alerts = {r["alert"] for r in shipped_rules(run_dir, "alerts.yml")}
    want_records = {r["record"] for r in shipped_rules(run_dir, "recording.yml")}

    def evaluated() -> list[dict] | None:
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r.get("health") == "ok" for r in rules) else None

    try:
        rules = wait_for("every rule evaluated with health ok", evaluated, 30, 1)
    except Failed:
        bad = [
            f"{r['name']}: {r.get('health')} {r.get('lastError', '')}"
            for g in prom.api("rules")["groups"]
            for r in g["rules"]
            if r.get("health") != "ok"
        ]
        raise Failed("rules not healthy: " + "; ".join(bad)) from None
    alerts = {r["name"] for r in rules if r["type"] == "alerting"}
    records = {r["name"] for r in rules if r["type"] == "recording"}
    if (alerts, records) != (want_alerts, want_records):
        raise Failed(f"loaded alerts {sorted(alerts)} / records {sorted(records)} != the shipped files'")
    files = {g["file"] for g in prom.api("rules")["groups"]}
    if not all(f.startswith(str(Path(run_dir, "shipped", "prometheus"))) for f in files):
        raise Failed(f"rule files {files} are not the shipped ones")
    active = prom.api("alerts")["alerts"]
    firing = [f"{a['labels']['alertname']} {a['labels']}" for a in active if a["state"] == "firing"]
    if firing:
        raise Failed("alerts firing on a healthy system: " + "; ".join(firing))
    pending = sorted(a["labels"]["alertname"] for a in active)
    return (
        f"{len(alerts)} alerting and {len(records)} recording rules from {len(files)} files, all health ok; "
        f"none firing{', pending: ' + ', '.join(pending) if pending else ', none pending'}"
    )


def _source(record: str) -> str:
    """The exporter metric a recording rule follows (the Magnus ones: humidity, with temperature)."""
    if record.endswith(":magnus"):
        return "ble_sensor_humidity_percent"
    return record.split(":")[1]


def _series(prom: Any, metric: str, window: str, at: float | None = None) -> dict[str, dict[float, float]]:
    return {
        s["metric"].get("device", ""): {float(t): float(v) for t, v in s["values"]}
        for s in prom.query(f"{metric}[{window}]", at)
    }


def recording_data(prom: Any, run_dir: str, configured: set[str], one_value_per_frame: set[str]) -> str:
    """`one_value_per_frame`: sensors (Mijia) whose scans need not hold a temperature and a humidity
    together; they get Magnus results in the evaluations where they do, the others in every one."""
    at = time.time()  # every query at one instant: the same evaluations in each window
    # the reception group's rules follow counters, not a scan's gauges: step 12 checks them
    doc = yaml.safe_load(Path(run_dir, "shipped", "prometheus", "recording.yml").read_text(encoding="utf-8"))
    records = [r["record"] for g in doc["groups"] if g["name"] != "ble-exporter-reception" for r in g["rules"]]
    t = _series(prom, "device:ble_sensor_temperature_celsius:best_rssi", "1m", at)
    h = _series(prom, "device:ble_sensor_humidity_percent:best_rssi", "1m", at)
    # rules of one group evaluate at one timestamp: temperature and humidity together there
    both = {d: sorted(set(t.get(d, {})) & set(h.get(d, {}))) for d in configured}
    together = {d for d, stamps in both.items() if stamps}
    problems, counts = [], []
    for record in records:
        source = _source(record)
        live = devices(prom.query(f"count_over_time({source}[1m])", at))
        got = devices(prom.query(f"count_over_time({record}[1m])", at))
        if source != "ble_sensor_battery_volts" and live != configured:
            problems.append(f"{source}: live sensors {sorted(live)} != configured {sorted(configured)}")
        want = together if record.endswith(":magnus") else live
        if got != want:
            problems.append(f"{record}: data for {sorted(got)}, expected {sorted(want)}")
        counts.append(len(got))
    if configured - one_value_per_frame - together:
        missing = sorted(configured - one_value_per_frame - together)
        problems.append(f"no evaluation in 1m with both temperature and humidity for {missing}")
    # one receiver: each merged value is a value the exporter exported for that sensor
    for record in records:
        if not record.endswith(":best_rssi"):
            continue
        raw = _series(prom, _source(record), "3m", at)
        for device, samples in _series(prom, record, "1m", at).items():
            foreign = {v for v in samples.values() if v not in set(raw.get(device, {}).values())}
            if foreign:
                problems.append(f"{record}{{device={device!r}}}: {sorted(foreign)[:3]} never exported")
    # Magnus: the recorded results against the formula, sample by sample (one evaluation, one timestamp)
    e = _series(prom, "device:ble_sensor_vapour_pressure_pascals:magnus", "1m", at)
    td = _series(prom, "device:ble_sensor_dew_point_celsius:magnus", "1m", at)
    ah = _series(prom, "device:ble_sensor_absolute_humidity_grams_per_cubic_meter:magnus", "1m", at)
    checked, worst = 0, 0.0
    for device, stamps in both.items():
        for ts in stamps:
            temp, rh = t[device][ts], h[device][ts]
            if rh <= 0:  # no vapour, no dew point
                continue
            if not all(ts in series.get(device, {}) for series in (e, td, ah)):
                problems.append(f"{device} at {ts}: temperature and humidity but no Magnus results")
                continue
            want_e = rh * C * math.exp(A * temp / (B + temp))
            g = math.log(want_e / (C * 100))
            want_of = {"e": want_e, "td": B * g / (A - g), "ah": 1000 * want_e / (RV * (273.15 + temp))}
            got_of = {"e": e[device][ts], "td": td[device][ts], "ah": ah[device][ts]}
            for key, value in want_of.items():
                err = abs(got_of[key] - value)
                worst = max(worst, err)
                if err > 1e-9 * max(1.0, abs(value)):
                    problems.append(f"{device} at {ts}: {key} {got_of[key]} != {value} (T {temp}, RH {rh})")
            checked += 1
    if checked < 2 * len(configured):
        problems.append(f"only {checked} evaluations with temperature, humidity and the Magnus results")
    radios = _best_radios(prom, at, problems)
    if problems:
        raise Failed("\n".join(problems[:10]))
    sample = next(iter(sorted(together)))
    last = max(td.get(sample, {0.0: 0.0}).items())
    sparse = ", ".join(
        f"{d} in {len(both[d])} of {len(t.get(d, {}))}" for d in sorted(one_value_per_frame & configured)
    )
    return (
        f"{len(records)} recording rules with data for all {len(configured)} live sensors; merged values are "
        f"the exported ones; {checked} evaluations match Magnus (worst {worst:.1e}); e.g. {sample} dew point "
        f"{last[1]:.2f} °C; temperature and humidity together (one value per frame): {sparse or 'none'}; "
        f"best radios: {radios}"
    )


def _best_radios(prom: Any, at: float, problems: list[str]) -> str:
    """device:ble_sensor_adapter_rssi_dbm:best names, by its instance and adapter labels, a radio that
    exported the sensor's per-adapter RSSI, and its values are that radio's."""
    heard = {
        (s["metric"].get("instance"), s["metric"].get("adapter"), s["metric"].get("device")): {
            float(v) for _, v in s["values"]
        }
        for s in prom.query("ble_sensor_adapter_rssi_dbm[3m]", at)
    }
    picked: dict[str, set[str]] = {}
    for s in prom.query("device:ble_sensor_adapter_rssi_dbm:best[1m]", at):
        m = s["metric"]
        radio = (m.get("instance"), m.get("adapter"), m.get("device"))
        picked.setdefault(str(m.get("device")), set()).add(str(m.get("adapter")))
        if radio not in heard:
            problems.append(f"device:ble_sensor_adapter_rssi_dbm:best picks {radio}, which exported no RSSI of it")
        elif foreign := {float(v) for _, v in s["values"]} - heard[radio]:
            problems.append(f"device:ble_sensor_adapter_rssi_dbm:best{radio}: {sorted(foreign)[:3]} never exported")
    return ", ".join(f"{d} via {'/'.join(sorted(a))}" for d, a in sorted(picked.items())) or "none"


def _pause(t: Any, hci: str, paused: bool) -> None:
    t.g.sh(f"echo '{json.dumps({'paused': [hci] if paused else []})}' > /run/systemtest/vsensors.ctl")
    wait_for(
        f"{hci} {'paused' if paused else 'advertising'}",
        lambda: t.vstate()["sensors"][hci]["advertising"] is not paused,
        15,
        0.5,
    )


def _pending(prom: Any, alert: str, **labels: str) -> bool:
    return any(
        a["labels"]["alertname"] == alert
        and a["state"] == "pending"
        and all(a["labels"].get(k) == v for k, v in labels.items())
        for a in prom.api("alerts")["alerts"]
    )


def not_heard(t: Any, hci: str, limit: float) -> str:
    prom, name = t.prom, t.names[hci]
    expr = alert_expr(t.run_dir, "BleSensorNotHeard")
    if prom.query(expr):
        raise Failed(f"before the stop the expression already returns {sorted(devices(prom.query(expr)))}")
    _pause(t, hci, True)
    t0 = time.monotonic()
    others: set[str] = set()
    evaluations = 0
    try:
        while True:
            got = devices(prom.query(expr))
            evaluations += 1
            others |= got - {name}
            if name in got:
                break
            if time.monotonic() - t0 > limit:
                raise Failed(f"{name} not returned within {limit:.0f}s of its stop ({evaluations} evaluations)")
            time.sleep(2)
        after = time.monotonic() - t0
        result = prom.query(expr)
        if devices(result) != {name} or others:
            raise Failed(f"the expression returned {sorted(devices(result) | others)}, wanted only {name}")
        mac = result[0]["metric"].get("mac")
        if mac != t.addresses[hci]:
            raise Failed(f"alert label mac={mac}, the sensor is {t.addresses[hci]}")
        wait_for(
            f"BleSensorNotHeard pending for {name}", lambda: _pending(prom, "BleSensorNotHeard", device=name), 20, 1
        )
    finally:
        _pause(t, hci, False)
    t1 = time.monotonic()
    wait_for(f"the expression to let go of {name}", lambda: not prom.query(expr), 60, 1)
    return (
        f"{name} (mac {mac}) returned {after:.0f}s after it stopped (the rule's [2m] window), no other sensor in "
        f"{evaluations} evaluations; Prometheus holds the alert pending (for: 13m); gone {time.monotonic() - t1:.0f}s "
        "after it resumed"
    )


# A BTHome v2 plaintext advert (device info 0x40: v2, not encrypted; temperature 25.00 °C)
PLAINTEXT = "FCD2:4002c409"


def rejections(t: Any, hci: str, limit: float) -> str:
    prom, name = t.prom, t.names[hci]
    expr = alert_expr(t.run_dir, "BleExporterEncryptedAdvertsRejected")
    before = prom.query(expr)
    if before:
        raise Failed(f"rejections before any bad packet: {[r['metric'] for r in before]}")
    _pause(t, hci, True)
    try:
        t.g.sh(f"python3 /opt/systemtest/vsensor.py raw --hci {hci} --service-data {PLAINTEXT}")
        t0 = time.monotonic()
        result = wait_for("the rejections expression to return something", lambda: prom.query(expr), limit, 1)
        after = time.monotonic() - t0
        reasons = [(r["metric"].get("reason"), r["metric"].get("job")) for r in result]
        if reasons != [("downgrade", "ble-exporter")]:
            raise Failed(f"expression returned {[r['metric'] for r in result]}, wanted reason downgrade only")
        count = float(result[0]["value"][1])
        wait_for(
            "BleExporterEncryptedAdvertsRejected pending",
            lambda: _pending(prom, "BleExporterEncryptedAdvertsRejected", reason="downgrade"),
            20,
            1,
        )
    finally:
        _pause(t, hci, False)
    wait_for(f"{name} heard again", lambda: name in devices(prom.query("ble_sensor_seen")), 60, 1)
    return (
        f"plaintext from {name}'s address: reason=downgrade returned {after:.0f}s later ({count:.1f} in 5m), "
        "nothing before; alert pending (for: 15m); the sensor is heard again"
    )


def dashboard_queries(prom: Any, run_dir: str, configured: set[str], scrape_interval: float) -> str:
    dash = dashboard.load(Path(run_dir, "shipped", "grafana", "ble-exporter.json"))
    end = time.time()
    start = prom.started
    span = end - start
    values: dict[str, str] = {}
    selected: dict[str, list[str]] = {}
    for var in dashboard.query_variables(dash):
        selector, label = dashboard.label_values(dashboard.variable_query(var))
        match = dashboard.substitute(selector, values)
        found = sorted(prom.api(f"label/{label}/values", **{"match[]": match, "start": start, "end": end}))
        if not found:
            raise Failed(f"variable ${var['name']}: {dashboard.variable_query(var)} found no values")
        values[var["name"]], selected[var["name"]] = dashboard.regex_of(found), found
    if set(selected["device"]) != configured:
        raise Failed(f"$device offers {selected['device']}, configured are {sorted(configured)}")
    problems: list[str] = []
    panels: dict[int, dict[str, Any]] = {}
    for q in dashboard.queries(dash):
        panel = next(p for p in dashboard.panels(dash) if p["id"] == q.panel_id)
        entry = panels.setdefault(
            q.panel_id,
            {
                "title": q.panel_title,
                "type": q.panel_type,
                "unit": panel.get("fieldConfig", {}).get("defaults", {}).get("unit", ""),
                "targets": [],
            },
        )
        # as Grafana asks it: the panel's own time range where it has one (the battery's 30 days)
        grafana_span = dashboard.seconds(q.time_from) if q.time_from else span
        builtins = dashboard.builtins(grafana_span, scrape_interval, q.min_interval)
        expr = dashboard.substitute(q.expr, values | builtins)
        try:
            if q.instant:
                result = prom.query(expr, at=end)
            else:
                step = dashboard.step_seconds(grafana_span, builtins["__interval"])
                result = prom.query_range(expr, end - grafana_span, end, step)
                if q.time_from:  # for the picture: the same query over the test's own time range
                    local = dashboard.builtins(span, scrape_interval)
                    expr = dashboard.substitute(q.expr, values | local)
                    result = prom.query_range(expr, start, end, dashboard.step_seconds(span, local["__interval"]))
        except Failed as e:
            problems.append(f"{q.panel_title} {q.ref_id}: {e}")
            continue
        if not result:
            problems.append(f"{q.panel_title} {q.ref_id}: no data for {expr}")
        entry["targets"].append({"refId": q.ref_id, "legend": q.legend, "expr": expr, "result": result})
    out = Path(run_dir, "dashboard-data.json")
    out.write_text(
        json.dumps({"start": start, "end": end, "variables": selected, "panels": list(panels.values())}),
        encoding="utf-8",
    )
    if problems:
        raise Failed("\n".join(problems))
    n = sum(len(p["targets"]) for p in panels.values())
    return (
        f"{n} queries in {len(panels)} panels valid and with data ($instance={values['instance']}, "
        f"$device={values['device']}, {span:.0f}s range); saved to {out.name}"
    )
