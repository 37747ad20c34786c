"""Several adapters in one exporter (issue 22) on the real stack: the packaged service scanning with
hci0 and one more controller of btvirt's radio, both hearing the sensors; that second adapter powered
off, then removed, while the scrapes go on; and an adapter named by its address after the
controllers are renumbered.

btvirt serves its `-l` controllers from one process, so none of them can be removed alone. The
second adapter is a controller that guest/vhci-relay.py makes in the kernel (/dev/vhci) and relays
to btvirt's server socket: a controller of the same virtual radio, which goes away as an unplugged
dongle does when the relay stops, and comes back with the same address when it starts again.
Renumbering: a relay started while another holds btvirt's slot gets the next hciN and another
address; the first relay started again then gets its address back on a higher hciN.

While the adapter is failed, the test polls /metrics every second: every configured sensor must stay
in ble_sensor_seen (heard by hci0), missing from no more than one scan in a row.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time
import urllib.request
from typing import Any

from common import Failed, log, wait_for

RELAY = "python3 /opt/systemtest/vhci-relay.py"
RELAY_A, RELAY_P, HOLDER = "relay-a", "relay-p", "relay-hold"  # the second adapter, the one renumbering, a slot
FAILED_SCANS = 2  # scans the adapter stays failed (powered off, removed) before it is restored
RETRY_MAX_SCANS = 10  # a restored adapter is back within this many scans (ble_exporter/core.py)
POLL_SECONDS = 1.0

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a Prometheus text exposition: (name, labels, value)."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and not line.startswith("#"):
            out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def scrape(t: Any, path: str = "/metrics", timeout: float = 5) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{t.exporter_port}{path}", timeout=timeout) as r:
        return bytes(r.read())


def metrics(t: Any) -> list[tuple[str, dict[str, str], float]]:
    return parse(scrape(t).decode())


def by(samples: list, name: str, key: str, **labels: str) -> dict[str, float]:
    """One metric's values by one label, of the samples with the other labels given."""
    return {
        lab.get(key, ""): v
        for n, lab, v in samples
        if n == name and all(lab.get(k) == want for k, want in labels.items())
    }


def heard(samples: list, adapter: str) -> dict[str, float]:
    return by(samples, "ble_sensor_adapter_scans_heard_total", "device", adapter=adapter)


def scans(samples: list) -> float:
    for n, _, v in samples:
        if n == "ble_exporter_scans_total":
            return float(v)
    raise KeyError("no ble_exporter_scans_total in /metrics")


def up(samples: list) -> dict[str, float]:
    return by(samples, "ble_exporter_scanner_up", "adapter")


def adapters_status(t: Any) -> dict[str, dict]:
    return {a["adapter"]: a for a in json.loads(scrape(t, "/status"))["adapters"]}


class Poller(threading.Thread):
    """Scrapes /metrics every POLL_SECONDS: which sensors had ble_sensor_seen, at which scan count."""

    def __init__(self, t: Any) -> None:
        super().__init__(daemon=True)
        self.t = t
        self.halt = threading.Event()
        self.polls: list[tuple[float, float, set[str]]] = []  # (time, scans_total, devices seen)
        self.ups: list[tuple[float, dict[str, float]]] = []  # (time, ble_exporter_scanner_up by adapter)
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.halt.is_set():
            began = time.monotonic()
            try:
                samples = metrics(self.t)
                seen = set(by(samples, "ble_sensor_seen", "device"))
                self.polls.append((time.time(), scans(samples), seen))
                self.ups.append((self.polls[-1][0], up(samples)))
            except (OSError, ValueError, KeyError) as e:
                self.errors.append(f"{time.strftime('%H:%M:%S')} {e}")
            self.halt.wait(max(0.0, POLL_SECONDS - (time.monotonic() - began)))

    def stop(self) -> None:
        self.halt.set()
        self.join(10)

    def first_up(self, adapter: str, value: float, after: float) -> float:
        """Seconds from `after` to the first scrape with ble_exporter_scanner_up{adapter} == value."""
        return next((when - after for when, ups in self.ups if when >= after and ups.get(adapter) == value), -1.0)

    def missing(self, names: list[str]) -> dict[str, tuple[int, float]]:
        """Per sensor: the most scans in a row whose result lacked it, and the longest time between two
        scrapes that had it (or the start or end of the polls)."""
        out = {}
        for name in names:
            run = most = 0
            last_scan = None
            present_at = self.polls[0][0] if self.polls else 0.0
            longest = 0.0
            for when, scan, seen in self.polls:
                if name in seen:
                    longest = max(longest, when - present_at)
                    present_at, run = when, 0
                elif scan != last_scan:
                    run += 1
                    most = max(most, run)
                last_scan = scan
            if self.polls:
                longest = max(longest, self.polls[-1][0] - present_at)
            out[name] = (most, longest)
        return out


def continuity(poller: Poller, names: list[str]) -> tuple[list[str], str]:
    """The problems (a sensor missing from more than one scan in a row, a failed scrape) and a summary."""
    missing = poller.missing(names)
    problems = [
        f"{name} missing from {most} scans in a row ({longest:.1f} s between scrapes with it)"
        for name, (most, longest) in missing.items()
        if most > 1
    ]
    if poller.errors:
        problems.append(
            f"{len(poller.errors)} of {len(poller.polls) + len(poller.errors)} scrapes failed: {poller.errors[:3]}"
        )
    longest = max(longest for _, longest in missing.values()) if missing else 0.0
    summary = (
        f"{len(poller.polls)} scrapes 1 s apart, scans in a row without a sensor: "
        + ", ".join(f"{name} {most}" for name, (most, _) in missing.items())
        + f" (longest between scrapes with a sensor {longest:.1f} s)"
    )
    return problems, summary


class Rig:
    """The second adapter (a relayed controller), its faults and restores, and the exporter's config
    for several adapters; the system test's steps 13 call it."""

    def __init__(self, t: Any, interval: float, duration: float, config_text: Any, exporter_log: str) -> None:
        self.t = t
        self.interval = interval
        self.duration = duration
        self.exporter_log = exporter_log
        self.config_text = config_text  # config_text(adapter=...) -> the config with that `adapter:` line
        self.second = ""  # hciN of RELAY_A
        self.address = ""  # its address

    # --- the guest's controllers

    def relay(self, unit: str) -> tuple[str, str]:
        """Start a relay as a transient unit: its (hciN, address) once bluetoothd has it powered."""
        g = self.t.g
        g.sh(
            f"rm -f /run/systemtest/{unit}; systemd-run --quiet --unit={unit} --collect "
            f"{RELAY} --index-file /run/systemtest/{unit}"
        )
        hci = wait_for(
            f"{unit}'s controller", lambda: g.sh(f"cat /run/systemtest/{unit} 2>/dev/null || true").strip(), 20, 0.3
        )

        def powered() -> bool:
            return (
                g.rc(f"busctl get-property org.bluez /org/bluez/{hci} org.bluez.Adapter1 Powered | grep -q true") == 0
            )

        wait_for(f"bluetoothd to power {hci} ({unit})", powered, 30, 0.5)
        return hci, g.sh(f"python3 /opt/systemtest/vsensor.py address --hci {hci}").strip()

    def hold_slot(self) -> None:
        g = self.t.g
        g.sh(f"systemd-run --quiet --unit={HOLDER} --collect {RELAY} --hold")
        wait_for(
            "the slot holder connected to btvirt",
            lambda: "holding" in g.sh(f"journalctl -u {HOLDER} -o cat --no-pager", check=False),
            20,
            0.3,
        )

    def stop(self, unit: str, hci: str = "") -> None:
        g = self.t.g
        g.sh(f"systemctl stop {unit} 2>/dev/null || true")
        if hci:
            wait_for(f"{hci} removed", lambda: g.rc(f"test -e /sys/class/bluetooth/{hci}") != 0, 20, 0.3)

    def power(self, hci: str, on: bool) -> None:
        # btmgmt exits before the kernel answers when stdin is at EOF: keep stdin open a moment
        self.t.g.sh(f"sleep 3 | timeout 20 btmgmt --index {hci[3:]} power {'on' if on else 'off'}", timeout=60)

    def configure(self, adapters: list[str], how: str) -> None:
        text = self.config_text(adapter="[" + ", ".join(f'"{a}"' for a in adapters) + "]")
        self.t.g.sh("cat > /etc/ble-exporter/config.yaml", input=text.encode())
        self.t.g.sh(f"systemctl {how} ble-exporter", timeout=150)

    def log_lines(self, pattern: str) -> list[str]:
        return self.t.g.sh(f"grep -h -E {shlex.quote(pattern)} {self.exporter_log} || true").strip().splitlines()

    def mid_window(self) -> None:
        """Sleep until the middle of the next scan window. A fault is made there: a power-off that
        lands on a scan start, while BlueZ adds the adapter's advertisement monitors, leaves the kernel
        refusing every monitor after power-on (status 0x0a Busy, README: Known findings), and the
        adapter deaf until the watchdog power-cycles it, 6 scans later."""
        at = scans(metrics(self.t))
        wait_for("a scan to end", lambda: scans(metrics(self.t)) > at, self.interval + 10, 0.2)
        time.sleep(self.interval - self.duration + self.duration / 2)

    # --- what the exporter says

    def wait_heard(self, adapter: str, since: dict[str, float], what: str, scans_limit: int = 4) -> dict[str, float]:
        """Until every configured sensor's scans-heard counter on `adapter` grew past `since`."""
        names = list(self.t.names.values())

        def grown() -> dict[str, float] | None:
            now = heard(metrics(self.t), adapter)
            return now if all(now.get(n, 0) > since.get(n, 0) for n in names) else None

        return wait_for(f"every sensor heard on {adapter} {what}", grown, scans_limit * self.interval + 10, 1)

    def wait_up(self, adapter: str, value: float, what: str, limit: float) -> float:
        t0 = time.monotonic()
        wait_for(
            f"ble_exporter_scanner_up{{adapter={adapter!r}}} {value:g} {what}",
            lambda: up(metrics(self.t)).get(adapter) == value,
            limit,
            0.5,
        )
        return time.monotonic() - t0

    def failed_state(self, adapter: str, error_says: str) -> str:
        """While `adapter` is failed (FAILED_SCANS scans, so a retry at a scan start failed too):
        scanner_up 0 (and hci0's 1), /status says why, its scans-heard frozen and no per-adapter RSSI
        from it in the scans after the one it failed in. (That hci0's readings go on is the Poller's.)
        The first error is the 1-second check's (a removal can read as a power-off there: the kernel
        powers a controller down before it removes it); the retry's says what the adapter is now."""
        first_error = self.status_while_failed(adapter)
        failed_at = scans(metrics(self.t))

        def scan_ended(n: int) -> list | None:
            samples = metrics(self.t)
            return samples if scans(samples) >= failed_at + n else None

        limit = (FAILED_SCANS + 1) * self.interval + 10
        first = wait_for("the scan under way at the failure to end", lambda: scan_ended(1), limit, 0.5)
        later = wait_for(f"{FAILED_SCANS} scans after the failure", lambda: scan_ended(FAILED_SCANS), limit, 0.5)
        rssi = by(later, "ble_sensor_adapter_rssi_dbm", "device", adapter=adapter)
        if rssi:
            raise Failed(f"ble_sensor_adapter_rssi_dbm from the failed {adapter} in a scan after it failed: {rssi}")
        if heard(later, adapter) != heard(first, adapter):
            raise Failed(
                f"{adapter} failed, but its scans-heard moved: {heard(first, adapter)} -> {heard(later, adapter)}"
            )
        if up(later).get(adapter) != 0 or up(later).get("hci0") != 1:
            raise Failed(f"ble_exporter_scanner_up while {adapter} is failed: {up(later)}")
        retried = self.status_while_failed(adapter)
        if error_says not in retried:
            raise Failed(f"/status adapters[{adapter}] after a retry: {retried!r}, wanted {error_says!r}")
        return f"{first_error!r}, then {retried!r}"

    def status_while_failed(self, adapter: str) -> str:
        status = adapters_status(self.t)
        a = status.get(adapter)
        if a is None or a["up"] is not False or not a["last_error"] or a["address"] != self.address:
            raise Failed(f"/status adapters[{adapter}] while failed: {a} (wanted up false, its address, an error)")
        if status["hci0"]["up"] is not True:
            raise Failed(f"/status adapters[hci0] while {adapter} is failed: {status['hci0']}")
        return str(a["last_error"])

    def comes_back(self, adapter: str, scans_at_restore: float) -> str:
        """After the restore: scanner_up 1 within RETRY_MAX_SCANS scans, and it hears again."""

        def back() -> float | None:
            samples = metrics(self.t)
            return scans(samples) if up(samples).get(adapter) == 1 else None

        scans_back = wait_for(
            f"{adapter} back (scanner_up 1) within {RETRY_MAX_SCANS} scans",
            back,
            (RETRY_MAX_SCANS + 2) * self.interval + 10,
            0.5,
        )
        if scans_back - scans_at_restore > RETRY_MAX_SCANS:
            raise Failed(f"{adapter} back after {scans_back - scans_at_restore:g} scans, more than {RETRY_MAX_SCANS}")
        self.wait_heard(adapter, heard(metrics(self.t), adapter), "after it came back", 3)
        return f"{scans_back - scans_at_restore:g} scans ended in between"

    # --- the steps

    def two_adapters(self) -> str:
        """hci0 and a relayed controller: both hear every sensor; the relayed one powered off, powered on,
        removed, made again; hci0's readings go on, and it comes back by itself each time."""
        t = self.t
        t0 = time.monotonic()
        for unit in (RELAY_A, RELAY_P, HOLDER):
            self.stop(unit)
        self.second, self.address = self.relay(RELAY_A)
        b = self.second
        self.configure(["hci0", b], "restart")
        ready = wait_for("'ready' with both adapters", lambda: [ln for ln in self.log_lines("ready:") if b in ln], 60)
        if "hci0 (passive)" not in ready[-1] or f"{b} (passive)" not in ready[-1]:
            raise Failed(f"not scanning passively on both: {ready[-1]}")
        self.wait_heard("hci0", {}, "after the start", 5)
        self.wait_heard(b, {}, "after the start", 5)
        first = metrics(t)
        self.wait_heard("hci0", heard(first, "hci0"), "again", 3)
        self.wait_heard(b, heard(first, b), "again", 3)
        samples = metrics(t)
        if up(samples) != {"hci0": 1, b: 1}:
            raise Failed(f"ble_exporter_scanner_up with both adapters hearing: {up(samples)}")
        status = adapters_status(t)
        if [status[a]["address"] for a in ("hci0", b)] != [t.addresses["hci0"], self.address]:
            raise Failed(f"/status adapters: {status}")
        unit = t.unit("MainPID", "NRestarts")
        both = f"hci0 and {b} ({self.address}) each heard every sensor in {min(heard(samples, b).values()):g}+ scans"

        poller = Poller(t)
        poller.start()
        try:
            # powered off
            self.mid_window()
            off_at = time.time()
            self.power(b, False)
            self.wait_up(b, 0, "after the power-off", 3 * self.interval)
            error = self.failed_state(b, f"adapter {b} is powered off")
            on_at, at = time.time(), scans(metrics(t))
            self.power(b, True)
            back_on = self.comes_back(b, at)
            # removed (the relay serving it stopped): the kernel drops the controller, bluetoothd the adapter
            self.mid_window()
            removed_at = time.time()
            self.stop(RELAY_A, b)
            self.wait_up(b, 0, "after the removal", 3 * self.interval)
            error2 = self.failed_state(b, f"adapter {b} not found")
            made_at, at = time.time(), scans(metrics(t))
            again = self.relay(RELAY_A)
            if again != (b, self.address):
                raise Failed(f"test equipment: the relay came back as {again}, not {b} {self.address}")
            back_made = self.comes_back(b, at)
        finally:
            poller.stop()
        off = (
            f"{b} powered off: scanner_up 0 {poller.first_up(b, 0, off_at):.1f} s after, "
            f"back {poller.first_up(b, 1, on_at):.1f} s after power on ({back_on})"
        )
        gone = (
            f"{b} removed: scanner_up 0 {poller.first_up(b, 0, removed_at):.1f} s after, "
            f"back {poller.first_up(b, 1, made_at):.1f} s after it was made again ({back_made})"
        )
        problems, polled = continuity(poller, list(t.names.values()))
        logged = self.log_lines(f"scanning on with hci0, retrying {b} at scan starts")
        if len(logged) != 2:
            problems.append(f"{len(logged)} 'retrying {b}' lines in the log, wanted one per failure: {logged}")
        if len(self.log_lines(f"adapter {b} works again")) != 2:
            problems.append(f"not two 'adapter {b} works again' lines: {self.log_lines('works again')}")
        now = t.unit("MainPID", "NRestarts", "ActiveState")
        if (now["MainPID"], now["NRestarts"]) != (unit["MainPID"], unit["NRestarts"]) or now["ActiveState"] != "active":
            problems.append(f"the service restarted or stopped: {unit} -> {now}")
        if problems:
            raise Failed("\n".join(problems))
        log(f"adapters: /status while {b} was powered off: {error}; while it was removed: {error2}")
        return (
            f"{both}; {off}; {gone}; {polled}; same pid {unit['MainPID']}, NRestarts {unit['NRestarts']}; "
            f"{time.monotonic() - t0:.0f} s"
        )

    def by_address(self) -> str:
        """`adapter:` naming the relayed controller by its address (a reload), then the controllers
        renumbered under the running exporter: the address's controller moves from hciN to hciN+1 and
        another one takes hciN (powered off, so scanning there would fail); the exporter finds it by
        its address at its next retry and hears every sensor on it."""
        t = self.t
        t0 = time.monotonic()
        try:
            if not self.second or t.g.rc(f"test -e /sys/class/bluetooth/{self.second}") != 0:
                self.stop(RELAY_A)
                self.second, self.address = self.relay(RELAY_A)
            elif t.g.sh(f"python3 /opt/systemtest/vsensor.py powered --hci {self.second}").strip() != "on":
                self.power(self.second, True)  # the step before failed with it off
            a, old = self.address, self.second
            pid = t.unit("MainPID")["MainPID"]
            self.configure(["hci0", a], "reload")
            self.wait_heard(a, {}, "after the reload", 5)
            resolved = self.log_lines(f"adapter {a} is ")
            if not resolved or not resolved[-1].endswith(f"is {old}"):
                raise Failed(f"no 'adapter {a} is {old}' in the log: {resolved[-1:]}")
            # renumber: a slot held in btvirt, so the next relay is another controller on the freed hciN
            poller = Poller(t)
            poller.start()
            try:
                self.mid_window()
                self.stop(RELAY_A, old)
                self.hold_slot()
                other = self.relay(RELAY_P)
                self.power(other[0], False)
                self.stop(HOLDER)
                new = self.relay(RELAY_A)
                if other[0] != old or other[1] == a or new[1] != a or new[0] == old:
                    raise Failed(f"test equipment: not renumbered: {a} was {old}, now {new}; {other} took {old}")
                self.second = new[0]
                renumbered, at = time.time(), scans(metrics(t))
                back = self.comes_back(a, at)
            finally:
                poller.stop()
            back = f"back {poller.first_up(a, 1, renumbered):.1f} s after ({back})"
            problems, polled = continuity(poller, list(t.names.values()))
            if problems:
                raise Failed("\n".join(problems))
            resolved = self.log_lines(f"adapter {a} is ")
            if not resolved[-1].endswith(f"is {new[0]}"):
                raise Failed(f"the exporter's last word on {a}: {resolved[-1]} (it is {new[0]} now)")
            status = adapters_status(t)[a]
            if status["address"] != a or status["up"] is not True:
                raise Failed(f"/status adapters[{a}]: {status}")
            u = t.unit("MainPID", "ActiveState")
            if u["MainPID"] != pid or u["ActiveState"] != "active":
                raise Failed(f"the exporter restarted: pid {pid} -> {u}")
            return (
                f"{a} was {old} (a reload named it), then {new[0]} with {other[1]} on {old} (powered off): "
                f"{back}, heard every sensor on it; {polled}; same pid {pid}; {time.monotonic() - t0:.0f} s"
            )
        finally:
            self.restore()

    def restore(self) -> None:
        """hci0 alone again (a reload), the relays stopped: the later steps as before."""
        t = self.t
        t.g.sh("cat > /etc/ble-exporter/config.yaml", input=self.config_text().encode())
        t.g.sh("systemctl reload ble-exporter", timeout=60, check=False)
        try:
            wait_for("hci0 alone after the reload", lambda: list(adapters_status(t)) == ["hci0"], 3 * self.interval, 1)
        except Failed as e:
            log(f"adapters: restore: {e}")
        for unit in (RELAY_A, RELAY_P, HOLDER):
            self.stop(unit)
