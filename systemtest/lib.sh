# Shared helpers for the system-test scripts. Source it; do not run it.
# shellcheck shell=bash

ST_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ST_CACHE="${SYSTEMTEST_CACHE:-/var/cache/ble-exporter-images}"

log() { printf '[%s +%ss] %s\n' "$(date +%H:%M:%S)" "$(st_elapsed)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

ST_T0="${ST_T0:-$EPOCHREALTIME}"
export ST_T0
st_elapsed() { awk -v a="$EPOCHREALTIME" -v b="$ST_T0" 'BEGIN { printf "%.1f", a - b }'; }

# The guest's Debian release: bookworm (default) or trixie (`make system-test RELEASE=trixie`).
ST_RELEASE="${SYSTEMTEST_RELEASE:-bookworm}"
export SYSTEMTEST_RELEASE="$ST_RELEASE"

# Hash of everything that goes into the image: the release, the package list, the build script
# and what the shared tree it starts from is made of (packaging/roots.sh: its packages, its format).
st_image_key() {
    {
        echo "$ST_RELEASE"
        cat "$ST_DIR/packages.txt" "$ST_DIR/build-image.sh"
        grep -E '^ROOTS_(BASE_PKGS|FORMAT)=' "$ST_DIR/../packaging/roots.sh"
    } | sha256sum | cut -c1-16
}

st_image_dir() { echo "$ST_CACHE/image-$ST_RELEASE-$(st_image_key)"; }

# Packages from packages.txt, comma-separated for debootstrap.
st_packages() {
    sed -e 's/#.*//' -e 's/[[:space:]]//g' "$ST_DIR/packages.txt" | grep -v '^$' | paste -sd, -
}

# A TCP port on 127.0.0.1 that is free right now.
st_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
