#!/bin/sh
# Reproduces what the system test's "adapter powered off" fault runs into (kernel 6.1, BlueZ 5.66,
# bleak 0.20.2): a passive scan (advertisement monitor) started while the adapter is powered off
# "succeeds" in bleak, bluetoothd logs "Failed to Add Adv Patterns Monitor with status 0x03", and the
# kernel keeps that mgmt command pending: after power on every new monitor fails with 0x0a (Busy)
# and passive scans hear nothing, while bleak reports no error. Only another power off/on clears it.
# Run: systemtest/guest-run.py [--release trixie] systemtest/guest/repro-monitor-busy.sh
sh /opt/systemtest/bt-setup.sh 3 >/dev/null || exit 1
# (--flags-pattern: so that passive scans hear hci1 on BlueZ 5.82 too, see bleak-probe.py)
probe() { echo "== $1"; python3 /opt/systemtest/bleak-probe.py --mode passive --flags-pattern --rounds 1 --timeout 4 --stream-seconds 2; }
btm() { sleep 2 | timeout 20 btmgmt --index 0 "$@" >/dev/null; }
probe "powered: hears hci1"
btm power off
probe "powered off: bleak starts without error, hears nothing"
btm power on
sleep 1
probe "powered on again: still hears nothing (monitor add Busy)"
btm power off
btm power on
sleep 1
probe "after one more power off/on: hears hci1 again"
echo "== bluetoothd:"
journalctl -u bluetooth --no-pager | grep 'Adv Patterns'
