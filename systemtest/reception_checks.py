"""The reception counters (ble_sensor_{scans_heard,frames,frames_sent,restarts}_total, /status
`sensors`) against what the virtual sensors sent, and the reception recording rules in the real
Prometheus, with the system test's nearly continuous scans (5 s of every 6) and the default duty
cycle (5 s of every 30).

The virtual sensors (guest/vsensor.py) count what they send: measurements begun (frames sent), the
ones they kept silent for (--skip, or paused), their counter restarts (asked through the control file). Between
two reads of /status, a sensor's counters must have moved as the sensor did, within the stated
tolerances: a frame on either edge of the window may fall on either side of the read.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

from common import Failed, wait_for
from monitoring_checks import shipped_rules

EDGE = 2  # frames that may fall on either side of a read, at each end of a window
SCANS_CONTINUOUS = 12  # scans between the two reads of the continuous phase (72 s at 6 s)
SCANS_DUTY_CYCLED = 5  # scans at the default duty cycle (2.5 minutes)
DEFAULT_INTERVAL, DEFAULT_DURATION = 30, 5
FRAME_SECONDS = 10.0  # 4 adverts of 2.5 s


def status(t: Any) -> dict[str, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{t.exporter_port}/status", timeout=10) as r:
        return {s["name"]: s for s in json.load(r)["sensors"]}


def sent_period(history: list[dict]) -> float:
    """The virtual sensor's own period over its last measurements since it last restarted."""
    since = [m for m in history if m["n"] >= 1]
    for i in range(len(since) - 1, 0, -1):
        if since[i]["n"] < since[i - 1]["n"]:
            since = since[i:]
            break
    recent = since[-20:]
    return (recent[-1]["t"] - recent[0]["t"]) / (recent[-1]["n"] - recent[0]["n"])


def _wait_scans(t: Any, name: str, start: int, scans: int, limit: float) -> dict[str, dict]:
    def done() -> dict[str, dict] | None:
        now = status(t)
        return now if now[name]["scans"] >= start + scans else None

    return wait_for(f"{scans} scans after the first read", done, limit, 1)


def _rule(run_dir: str, record: str, window: str) -> str:
    """A shipped recording rule's expression over another window than its own."""
    expr = next(str(r["expr"]) for r in shipped_rules(run_dir, "recording.yml") if r.get("record") == record)
    return re.sub(r"\[\d+[smh]\]", f"[{window}]", expr)


def _by_device(prom: Any, expr: str) -> dict[str, float]:
    return {r["metric"].get("device", ""): float(r["value"][1]) for r in prom.query(expr)}


def continuous(t: Any, skipper: str, restarter: str, control: Any) -> str:
    """5 s of every 6: every frame spans 7.5 s, so each is heard; a skipped one is not."""
    names = t.names
    first = next(iter(names.values()))
    a, va = status(t), t.vstate()["sensors"]
    time.sleep(20)
    control(restarter)  # its counters start again at its next measurement
    b = _wait_scans(t, first, a[first]["scans"], SCANS_CONTINUOUS, SCANS_CONTINUOUS * 6 * 2 + 60)
    vb = t.vstate()["sensors"]
    problems, parts = [], []
    for hci, name in names.items():
        d = {k: b[name][k] - a[name][k] for k in ("scans", "scans_heard", "frames", "frames_sent", "restarts")}
        sent = vb[hci]["frames_sent"] - va[hci]["frames_sent"]
        silent = vb[hci]["silent"] - va[hci]["silent"]
        restarts = vb[hci]["restarts"] - va[hci]["restarts"]
        if hci == restarter and restarts != 1:
            problems.append(f"{name}: the virtual sensor restarted {restarts} times, not once")
        if d["restarts"] != restarts:
            problems.append(f"{name}: {d['restarts']} restarts counted, the sensor restarted {restarts} times")
        # the step across a restart adds nothing: one frame sent less
        if abs(d["frames_sent"] - (sent - restarts)) > EDGE:
            problems.append(f"{name}: frames_sent +{d['frames_sent']}, the sensor sent {sent} ({restarts} restarts)")
        if abs(d["frames"] - (sent - silent)) > EDGE:
            problems.append(f"{name}: frames +{d['frames']}, the sensor advertised {sent - silent} of {sent}")
        least = d["scans"] // 2 if hci == skipper else d["scans"] - 1
        if d["scans_heard"] < least:
            problems.append(f"{name}: heard in {d['scans_heard']} of {d['scans']} scans, expected >= {least}")
        period, want = b[name]["period_seconds"], sent_period(t.vstate()["sensors"][hci]["history"])
        if period is None or abs(period - want) > 0.15 * want:
            problems.append(f"{name}: period {period} s, the sensor's {want:.2f} s")
        parts.append(
            f"{name}{' (no Flags)' if not vb[hci]['flags'] else ''} {d['scans_heard']}/{d['scans']} scans, "
            f"frames {d['frames']} of {d['frames_sent']} (sent {sent}, silent {silent}), "
            f"restarts {d['restarts']}, period {period} s"
        )
    if problems:
        raise Failed("\n".join(problems))
    return f"over {b[first]['scans'] - a[first]['scans']} scans: " + "; ".join(parts)


def rules_continuous(t: Any, skipper: str, paused: str) -> str:
    """The recording rules since the exporter started (5 s of every 6): the ratios as Prometheus
    recorded them (two rates of one window: the hour before the start cancels out), the period by its
    rule's expression over the minutes since the start (over 15 minutes it would read too long)."""
    prom, names = t.prom, t.names
    share = _by_device(prom, "device:ble_sensor_scans_heard:ratio_1h")
    ratio = _by_device(prom, "device:ble_sensor_frames_heard_per_sent:ratio_1h")
    since = f"{int(time.time() - t.service_started) - 10}s"
    period = _by_device(prom, _rule(t.run_dir, "device:ble_sensor_frame_period_seconds:rate_15m", since))
    problems = []
    for hci, name in names.items():
        # 2/3 of the frames sent; all of them; `paused` was silent for a few scans in step 5 (it went on
        # counting, as a sensor out of range does)
        lo, hi = (0.55, 0.8) if hci == skipper else (0.7, 1.2) if hci == paused else (0.85, 1.2)
        if not lo <= ratio.get(name, -1) <= hi:
            problems.append(f"{name}: frames heard per sent {ratio.get(name)}, expected {lo}-{hi}")
        least = 0.5 if hci == skipper else 0.7 if hci == paused else 0.9
        if share.get(name, -1) < least:
            problems.append(f"{name}: share of scans heard {share.get(name)}, expected at least {least}")
        if abs(period.get(name, 0) - FRAME_SECONDS) > 0.2 * FRAME_SECONDS:
            problems.append(f"{name}: period {period.get(name)} s, the sensors' is about {FRAME_SECONDS} s")
    if problems:
        raise Failed("\n".join(problems))
    return "; ".join(
        f"{n} share {share[n]:.2f}, frames/sent {ratio[n]:.2f}, period {period[n]:.1f} s" for n in names.values()
    )


def duty_cycled(t: Any, skipper: str, reload: Any) -> str:
    """The defaults, 5 s of every 30: a scan hears the frames starting from 7.5 s before it until it
    ends, 1 or 2 of the 3 sent (5/12 on average over the phases; the virtual sensors' ticks and the
    scans keep one phase for minutes, so any value from 1/3 to 2/3 is right here)."""
    names = t.names
    first = next(iter(names.values()))
    reload(DEFAULT_INTERVAL, DEFAULT_DURATION)
    try:
        # A reload takes effect at the next scan start, and that first scan still starts one old
        # interval (6 s) after the one before: it may hear no new frame. The window begins after it.
        a = _wait_scans(t, first, status(t)[first]["scans"], 2, DEFAULT_INTERVAL * 4)
        started = time.time()
        b = _wait_scans(t, first, a[first]["scans"], SCANS_DUTY_CYCLED, DEFAULT_INTERVAL * (SCANS_DUTY_CYCLED + 3))
        window = f"{int(time.time() - started)}s"
        ratio = _by_device(t.prom, _rule(t.run_dir, "device:ble_sensor_frames_heard_per_sent:ratio_1h", window))
        share = _by_device(t.prom, _rule(t.run_dir, "device:ble_sensor_scans_heard:ratio_1h", window))
    finally:
        reload(None, None)
    problems, parts = [], []
    for hci, name in names.items():
        scans = b[name]["scans"] - a[name]["scans"]
        frames = b[name]["frames"] - a[name]["frames"]
        if hci != skipper:
            if not scans <= frames <= 2 * scans:
                problems.append(f"{name}: {frames} frames in {scans} scans, expected 1 or 2 a scan")
            if not 1 / 3 - 0.1 <= ratio.get(name, -1) <= 2 / 3 + 0.1:
                problems.append(f"{name}: frames heard per sent {ratio.get(name)} over {window}, expected 1/3-2/3")
            if share.get(name, -1) < 0.9:
                problems.append(f"{name}: share of scans heard {share.get(name)} over {window}")
        parts.append(f"{name} {frames} frames in {scans} scans, per sent {ratio.get(name, float('nan')):.2f}")
    if problems:
        raise Failed("\n".join(problems))
    return f"{DEFAULT_DURATION} s of every {DEFAULT_INTERVAL}, over {window}: " + "; ".join(parts)
