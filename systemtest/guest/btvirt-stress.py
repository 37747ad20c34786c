#!/usr/bin/python3
"""Guest side: does the running btvirt survive advertising sets being replaced while it broadcasts?

What the system test does to btvirt, compressed: every sensor controller (hci1 .. hci(N-1)) replaces
its advertisement (mgmt Add Advertising of the same instance: the kernel disables the set, sets its
parameters and data, enables it again) every --period seconds, with the advertising interval
shortened to --interval-ms through debugfs, while hci0 runs LE discovery (restarted every 5 s).
Stops after --seconds, or as soon as btvirt is gone (its unit inactive, or a controller vanished).

btvirt 5.82 (Debian 13) broadcasts each enabled set from a timer of its own; disabling the set
removes that timer. Its main loop (src/shared/mainloop.c) handles up to 10 epoll events per wake-up
and calls each one's callback through a pointer taken before the batch: when the host's disable
(read from the controller's vhci fd) comes first in a batch that also holds that set's timer
expiry, the timer's data was freed a moment before and btvirt calls through freed memory (a
general protection fault at a random, non-canonical ip: glibc's tcache key). btvirt 5.66 (Debian
12) sends an advertising report only when a set is enabled or a scan starts: no timer to race.

Prints one JSON line: {"btvirt", "version", "crashed", "seconds", "updates", "dmesg"}.
Needs bt-setup.sh N run first (BTVIRT=... chooses the binary).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vsensor

MGMT_OP_START_DISCOVERY = 0x0023
MGMT_OP_STOP_DISCOVERY = 0x0024
LE_DISCOVERY = bytes([0x06])  # LE public + LE random


def btvirt_alive(n: int) -> bool:
    if subprocess.run(["systemctl", "is-active", "--quiet", "btvirt"], check=False).returncode != 0:
        return False
    return all(os.path.exists(f"/sys/class/bluetooth/hci{k}") for k in range(n))


def crash_line() -> str:
    out = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout
    lines = [ln for ln in out.splitlines() if "btvirt[" in ln and ("segfault" in ln or "general protection" in ln)]
    return lines[-1].strip() if lines else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--controllers", type=int, default=7, help="btvirt's controllers (hci0 scans, the rest advertise)")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--period", type=float, default=0.05, help="seconds between rounds of replacements")
    ap.add_argument("--interval-ms", type=float, default=100, help="advertising interval (debugfs, 0.625 ms units)")
    args = ap.parse_args()

    n = args.controllers
    units = max(0x20, round(args.interval_ms / 0.625))
    for k in range(1, n):
        base = f"/sys/kernel/debug/bluetooth/hci{k}"
        with open(f"{base}/adv_max_interval") as f:
            current_max = int(f.read())
        # the kernel refuses min > max: min first when shortening, max first when lengthening
        names = ("adv_min_interval", "adv_max_interval")
        for name in names if units <= current_max else reversed(names):
            with open(f"{base}/{name}", "w") as f:
                f.write(str(units))

    unit = subprocess.run(
        ["systemctl", "show", "btvirt", "-p", "ExecStart", "--value"], capture_output=True, text=True, check=False
    ).stdout
    binary = unit.split("path=", 1)[1].split(" ;", 1)[0] if "path=" in unit else "?"
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout.strip()

    mgmt = vsensor.Mgmt()
    t0 = time.monotonic()
    last_discovery = -10.0
    last_check = t0
    updates = 0
    crashed = False
    while time.monotonic() - t0 < args.seconds:
        now = time.monotonic()
        if now - last_discovery >= 5:
            for op in (MGMT_OP_STOP_DISCOVERY, MGMT_OP_START_DISCOVERY):
                # fails when not discovering (stop), or during bluetoothd's own discovery (start)
                with contextlib.suppress(vsensor.MgmtError):
                    mgmt.command(op, 0, LE_DISCOVERY)
            last_discovery = now
        failed = False
        for k in range(1, n):
            ad = vsensor.FLAGS_AD + bytes([6, 0x16, 0xD2, 0xFC, 0x40, updates & 0xFF, k])
            try:
                mgmt.advertise(k, ad)
                updates += 1
            except (vsensor.MgmtError, OSError):
                failed = True
                break
        if failed or now - last_check >= 1:
            last_check = now
            if not btvirt_alive(n):
                crashed = True
                break
        time.sleep(args.period)
    elapsed = time.monotonic() - t0
    time.sleep(0.5)  # let the kernel log the fault
    result = {
        "btvirt": binary,
        "version": version,
        "crashed": crashed,
        "seconds": round(elapsed, 1),
        "updates": updates,
        "dmesg": crash_line(),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
