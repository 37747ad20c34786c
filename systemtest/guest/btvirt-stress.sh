#!/bin/sh
# Does btvirt survive its advertising sets being replaced while it broadcasts? guest/btvirt-stress.py
# (which says why 5.82 does not) against each btvirt in the guest: the release's own
# (/usr/bin/btvirt, bluez-test-tools of the release) and bookworm's, which the system test runs on
# every release (/usr/local/lib/systemtest/btvirt, put there by build-image.sh).
# ROUNDS rounds (default 3) of SECONDS seconds (default 120) each, a fresh btvirt -l7 per round.
# Run: systemtest/guest-run.py --release trixie --timeout 1800 systemtest/guest/btvirt-stress.sh
set -eu
ROUNDS="${ROUNDS:-3}"
SECONDS_PER_ROUND="${SECONDS_PER_ROUND:-120}"
. /etc/os-release
echo "$PRETTY_NAME, kernel $(uname -r), glibc $(dpkg-query -W -f '${Version}' libc6)"
for bin in /usr/bin/btvirt /usr/local/lib/systemtest/btvirt; do
    crashes=0
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        dmesg -C
        BTVIRT="$bin" sh /opt/systemtest/bt-setup.sh 7 >/tmp/bt-setup.log 2>&1 || {
            echo "$bin round $r: bt-setup failed:"; tail -5 /tmp/bt-setup.log; exit 1
        }
        line=$(python3 /opt/systemtest/btvirt-stress.py --controllers 7 --seconds "$SECONDS_PER_ROUND")
        echo "$bin round $r: $line"
        case "$line" in *'"crashed": true'*) crashes=$((crashes + 1)) ;; esac
        r=$((r + 1))
    done
    echo "$bin: $crashes crash(es) in $ROUNDS rounds of up to ${SECONDS_PER_ROUND} s"
done
systemctl stop btvirt.service 2>/dev/null || true
