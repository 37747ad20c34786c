#!/bin/bash
# Phase-1 proof of the system-test infrastructure (no daemon needed):
# boot the guest, make virtual controllers, advertise from hci1 and receive it on hci0 with bleak,
# in passive mode (advertisement monitor) and in active mode. Prints a summary with timings.
#   systemtest/phase1.sh [CONTROLLERS]     (default 3)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$ST_DIR/vm.sh"
N="${1:-3}"

declare -a SUMMARY=()
step() { SUMMARY+=("$(printf '%-44s %-5s %6ss  %s' "$1" "$2" "$3" "${4:-}")"); }
since() { awk -v a="$EPOCHREALTIME" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }
RC=1
finish() {
    vm_stop
    echo
    echo "=== phase 1 summary ($(since "$ST_T0") s in all; logs in $RUN) ==="
    printf '%s\n' "${SUMMARY[@]}"
    [ "$RC" = 0 ] && echo "PHASE 1: PASS" || echo "PHASE 1: FAIL"
}
RUN="$(mktemp -d /tmp/systemtest-phase1.XXXXXX)"
trap finish EXIT

t=$EPOCHREALTIME
IMAGE="$("$ST_DIR/build-image.sh")"
step "image (build or cache)" ok "$(since "$t")" "$IMAGE"

t=$EPOCHREALTIME
vm_boot "$IMAGE" "$RUN"
vm_wait_ssh 180
step "boot to ssh" ok "$(since "$t")"

t=$EPOCHREALTIME
vm_put_dir "$ST_DIR/guest" /opt/systemtest
if vm_ssh -t 200 "sh /opt/systemtest/bt-setup.sh $N" >"$RUN/bt-setup.log" 2>&1; then
    step "btvirt -l$N, bluetoothd --experimental" ok "$(since "$t")" \
        "attempts=$(vm_ssh cat /run/systemtest/btvirt_attempts)"
else
    cat "$RUN/bt-setup.log"
    step "btvirt -l$N, bluetoothd --experimental" FAIL "$(since "$t")"
    exit 1
fi
cat "$RUN/bt-setup.log" >&2

fail=0
for mode in passive active; do
    t=$EPOCHREALTIME
    # btmon on hci0 shows which scan type the kernel really asked the controller for
    vm_ssh "systemd-run --quiet --unit=btmon-$mode --collect sh -c 'exec btmon -i hci0 >/run/systemtest/btmon-$mode.txt 2>&1'; sleep 1"
    if out=$(vm_ssh -t 200 "python3 /opt/systemtest/bleak-probe.py --mode $mode --adapter hci0 --sender hci1"); then
        res=ok
    else
        res=FAIL; fail=1
    fi
    vm_ssh "systemctl stop btmon-$mode"
    types=$(vm_ssh "grep -E '^ +Type: (Passive|Active)' /run/systemtest/btmon-$mode.txt | sort | uniq -c | tr -s ' ' | paste -sd';' -")
    want=$([ "$mode" = passive ] && echo Passive || echo Active)
    other=$([ "$mode" = passive ] && echo Active || echo Passive)
    if ! grep -q "Type: $want" <<<"$types" || grep -q "Type: $other" <<<"$types"; then
        res=FAIL; fail=1
    fi
    step "bleak $mode scan hci0 <- hci1" "$res" "$(since "$t")" "$out btmon: $types"
done
vm_ssh "journalctl -b --no-pager -u bluetooth" >"$RUN/bluetoothd.log" 2>&1 || true
[ "$fail" = 0 ] && RC=0
exit "$RC"
