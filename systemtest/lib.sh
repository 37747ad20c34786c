# Shared helpers for the system-test scripts. Source it; do not run it.
# shellcheck shell=bash

ST_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ST_CACHE="${SYSTEMTEST_CACHE:-/var/cache/ble-exporter-systemtest}"

log() { printf '[%s +%ss] %s\n' "$(date +%H:%M:%S)" "$(st_elapsed)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

ST_T0="${ST_T0:-$EPOCHREALTIME}"
export ST_T0
st_elapsed() { awk -v a="$EPOCHREALTIME" -v b="$ST_T0" 'BEGIN { printf "%.1f", a - b }'; }

# Hash of everything that goes into the image: the package list and the build script.
st_image_key() {
    cat "$ST_DIR/packages.txt" "$ST_DIR/build-image.sh" | sha256sum | cut -c1-16
}

st_image_dir() { echo "$ST_CACHE/image-$(st_image_key)"; }

# Packages from packages.txt, comma-separated for debootstrap.
st_packages() {
    sed -e 's/#.*//' -e 's/[[:space:]]//g' "$ST_DIR/packages.txt" | grep -v '^$' | paste -sd, -
}

# The Debian mirror this host's apt uses (so the build goes where the host is allowed to go).
st_mirror() {
    local m=""
    if [ -n "${SYSTEMTEST_MIRROR:-}" ]; then echo "$SYSTEMTEST_MIRROR"; return; fi
    if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
        m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)
    fi
    if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
        m=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
    fi
    [ -n "$m" ] || die "cannot find a Debian mirror in /etc/apt (set SYSTEMTEST_MIRROR)"
    echo "$m"
}

# A TCP port on 127.0.0.1 that is free right now.
st_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
