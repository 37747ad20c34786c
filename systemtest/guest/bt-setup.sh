#!/bin/sh
# Guest side: BlueZ in experimental mode and N virtual controllers on one virtual radio.
#   bt-setup.sh N     -> hci0 .. hci(N-1), all powered in bluetoothd
# The btvirt is bookworm's (BlueZ 5.66), on every release: build-image.sh puts it in
# /usr/local/lib/systemtest/btvirt, because trixie's 5.82 crashes (systemtest/README.md).
# BTVIRT=/usr/bin/btvirt runs the release's own instead (guest/btvirt-stress.sh compares them).
# btvirt also opens its server sockets (-s, /tmp/bt-server-*): guest/vhci-relay.py makes more controllers of
# the same radio through them, which can be removed one at a time (adapters_checks.py).
# Writes /run/systemtest/controllers (one "hciK ADDRESS" a line). Bounded: up to 4 btvirt attempts.
# Under TCG the kernel's reset of a new virtual controller sometimes times out
# ("Opcode 0x0c03 failed: -110") and that controller never shows up: btvirt is restarted then.
set -eu
N="${1:-2}"
BTVIRT="${BTVIRT:-/usr/local/lib/systemtest/btvirt}"
[ -x "$BTVIRT" ] || { echo "[bt-setup] FAILED: no $BTVIRT (an image from before build-image.sh put it there?)"; exit 1; }
OUT=/run/systemtest
mkdir -p "$OUT"
t0=$(date +%s.%N)
el() { awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }'; }
say() { echo "[bt-setup +$(el)s] $*"; }

mkdir -p /etc/systemd/system/bluetooth.service.d
cat >/etc/systemd/system/bluetooth.service.d/systemtest.conf <<'EOF'
# system test: the advertisement monitor API (passive scanning) needs --experimental
[Service]
ExecStart=
ExecStart=/usr/libexec/bluetooth/bluetoothd --experimental
EOF
systemctl daemon-reload
modprobe hci_vhci
systemctl restart bluetooth.service

powered() { # powered hciK -> 0 when bluetoothd says the adapter is powered
    busctl get-property org.bluez "/org/bluez/$1" org.bluez.Adapter1 Powered 2>/dev/null | grep -q true
}

ok=0
attempt=1
while [ "$attempt" -le 4 ]; do
    systemctl stop btvirt.service 2>/dev/null || true
    systemctl reset-failed btvirt.service 2>/dev/null || true
    # wait (bounded) for the old controllers to go away
    i=0
    while [ "$i" -lt 50 ] && ls /sys/class/bluetooth/ 2>/dev/null | grep -q '^hci'; do sleep 0.2; i=$((i + 1)); done
    systemd-run --quiet --unit=btvirt --collect "$BTVIRT" -s "-l$N"
    say "attempt $attempt: $BTVIRT -s -l$N started (version $("$BTVIRT" --version))"
    i=0
    while [ "$i" -lt 60 ]; do           # up to ~30 s
        all=1
        k=0
        while [ "$k" -lt "$N" ]; do
            powered "hci$k" || { all=0; break; }
            k=$((k + 1))
        done
        [ "$all" = 1 ] && { ok=1; break; }
        sleep 0.5
        i=$((i + 1))
    done
    [ "$ok" = 1 ] && break
    say "attempt $attempt: not all $N controllers powered; dmesg:"
    dmesg | grep -i -E 'bluetooth|hci' | tail -5 || true
    attempt=$((attempt + 1))
done
[ "$ok" = 1 ] || { say "FAILED: controllers not powered after 4 attempts"; exit 1; }

: >"$OUT/controllers.tmp"
k=0
while [ "$k" -lt "$N" ]; do
    addr=$(busctl get-property org.bluez "/org/bluez/hci$k" org.bluez.Adapter1 Address | cut -d'"' -f2)
    echo "hci$k $addr" >>"$OUT/controllers.tmp"
    k=$((k + 1))
done
mv "$OUT/controllers.tmp" "$OUT/controllers"
echo "$attempt" >"$OUT/btvirt_attempts"
if busctl introspect org.bluez /org/bluez/hci0 2>/dev/null | grep -q AdvertisementMonitorManager1; then
    say "advertisement monitor API present (experimental mode on)"
else
    say "WARNING: no AdvertisementMonitorManager1 on hci0: passive scanning will not work"
fi
say "$N controllers powered after $attempt attempt(s):"
cat "$OUT/controllers"
