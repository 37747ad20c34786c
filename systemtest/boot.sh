#!/bin/bash
# Boot the system-test guest, run a command in it over ssh, stop it.
#   systemtest/boot.sh                  boot, show the guest's state, stop
#   systemtest/boot.sh 'CMD'            boot, run CMD as root in the guest, stop
#   systemtest/boot.sh --hold MINUTES   boot and keep it up (ssh line printed) until Enter or MINUTES
# The image is built first if needed (build-image.sh). Everything started here is stopped by PID.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$ST_DIR/vm.sh"

HOLD=""
if [ "${1:-}" = --hold ]; then HOLD="${2:-30}"; shift 2; fi
CMD="${1:-uname -r; systemctl is-system-running; ls /sys/class/bluetooth 2>/dev/null | wc -l}"

IMAGE="$("$ST_DIR/build-image.sh")"
RUN="$(mktemp -d /tmp/systemtest-boot.XXXXXX)"
trap 'vm_stop; log "logs in $RUN"' EXIT
T=$EPOCHREALTIME
vm_boot "$IMAGE" "$RUN"
vm_wait_ssh 180
log "ssh up after $(awk -v a="$EPOCHREALTIME" -v b="$T" 'BEGIN { printf "%.1f", a - b }') s"
if [ -n "$HOLD" ]; then
    echo "ssh $(vm_ssh_opts) root@127.0.0.1"
    read -r -t "$((HOLD * 60))" _ || true
else
    vm_ssh "$CMD"
fi
