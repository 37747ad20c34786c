#!/bin/bash
# Build (or reuse) the system-test guest image: a Debian (bookworm, or trixie with
# SYSTEMTEST_RELEASE=trixie) with the kernel, BlueZ and its test tools, Prometheus and the runtime
# dependencies of ble-exporter.deb. It starts from a copy of the release's cached minbase tree
# (packaging/roots.sh, the one the deb-test boots), so one debootstrap serves both.
#
# Output, cached outside the repo in $SYSTEMTEST_CACHE (default /var/cache/ble-exporter-images),
# in a directory keyed by the release and a hash of packages.txt, this script and roots.sh:
#   image-<release>-<key>/rootfs.ext4   root filesystem (boot it with -drive ...,snapshot=on to keep it pristine)
#   image-<release>-<key>/vmlinuz       the guest's kernel
#   image-<release>-<key>/initrd.img    a cut-down initrd (virtio + ext4 only)
#   image-<release>-<key>/id_ed25519    ssh key for root@guest
#   image-<release>-<key>/prometheus    the guest's prometheus binary (usable on the host too)
#   image-<release>-<key>/info          what was built, when, and how long it took
# Every image also holds bookworm's btvirt in /usr/local/lib/systemtest/btvirt (see below).
# Prints the image directory on stdout. Needs root (debootstrap, chroot, file ownership).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "build-image.sh must run as root"

OUT="$(st_image_dir)"
if [ -f "$OUT/info" ] && [ -f "$OUT/rootfs.ext4" ]; then
    log "image cached: $OUT"
    echo "$OUT"
    exit 0
fi

for tool in debootstrap mkfs.ext4 ssh-keygen; do
    command -v "$tool" >/dev/null || die "$tool missing (apt-get install debootstrap e2fsprogs openssh-client)"
done

mkdir -p "$ST_CACHE"
# One build at a time; a second caller waits (bounded) and then reuses the result.
exec 9>"$ST_CACHE/.build.lock"
flock -w 1200 9 || die "another image build holds $ST_CACHE/.build.lock"
if [ -f "$OUT/info" ] && [ -f "$OUT/rootfs.ext4" ]; then
    log "image cached (built meanwhile): $OUT"
    echo "$OUT"
    exit 0
fi

T_START=$EPOCHREALTIME
WORK="$(mktemp -d "$ST_CACHE/build.XXXXXX")"
TREE="$WORK/tree"
MOUNTS=()
cleanup() {
    local m
    declare -F roots_cleanup >/dev/null && roots_cleanup
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
    # debootstrap may leave its own mounts if it failed half-way
    for m in proc sys dev/pts dev; do
        mountpoint -q "$TREE/$m" 2>/dev/null && umount -l "$TREE/$m" || true
    done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

say() { log "$@"; }
. "$ST_DIR/../packaging/roots.sh"
PKGS="$(st_packages)"
# The release's tree is locked while it is copied and while apt uses its archives directory.
roots_lock "$ST_RELEASE" amd64
roots_base "$ST_RELEASE" amd64
BASE=$ROOTS_TREE
MIRROR="$(roots_mirror)"
log "$ST_RELEASE: copy of $BASE, then apt-get install $(echo "$PKGS" | tr ',' ' ' | wc -w) packages"
cp -a --reflink=auto "$BASE" "$TREE"
rm -f "$TREE/.complete"

in_chroot() { chroot "$TREE" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

# apt (not debootstrap) resolves the rest: virtual packages, alternatives. No service starts.
printf '#!/bin/sh\nexit 101\n' >"$TREE/usr/sbin/policy-rc.d"
chmod +x "$TREE/usr/sbin/policy-rc.d"
# The kernel's postinst builds its initrd with MODULES=list (small, fast); ours is made below.
mkdir -p "$TREE/etc/initramfs-tools/conf.d"
echo 'MODULES=list' >"$TREE/etc/initramfs-tools/conf.d/systemtest"
mount -t proc proc "$TREE/proc" && MOUNTS+=("$TREE/proc")
mount -t sysfs sys "$TREE/sys" && MOUNTS+=("$TREE/sys")
mount --bind "$ROOTS_CACHE/archives-$ST_RELEASE-amd64" "$TREE/var/cache/apt/archives" && MOUNTS+=("$TREE/var/cache/apt/archives")
in_chroot apt-get update -q >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log" >&2; die "apt-get update failed"; }
# shellcheck disable=SC2046
in_chroot env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    $(echo "$PKGS" | tr ',' ' ') >>"$WORK/apt.log" 2>&1 || { tail -30 "$WORK/apt.log" >&2; die "apt-get install failed"; }
log "packages installed"
exec 7>&- # the tree's lock

# --- the virtual controllers: bookworm's btvirt on every release ------------------------------------
# btvirt 5.82 (trixie) crashes under the system test's load: a use-after-free between an advertising
# set's broadcast timer and the host disabling that set (systemtest/README.md). Every image gets
# bookworm's 5.66 (no such timer), a binary that needs only libc, in $BTVIRT_PATH; bt-setup.sh runs
# it. Pinned by version and hash, so a change here is a new image (the key hashes this script).
BTVIRT_DEB=bluez-test-tools_5.66-1+deb12u2_amd64.deb
BTVIRT_SHA256=2c0613a58a0b261f0f13cb092c65ee2b7fc2480bbead85d1a19d8e959588f29e
BTVIRT_SHA1=c0b4bdc710479eceaa5b68a51b61baf78daa5407 # snapshot.debian.org's content address
BTVIRT_PATH=/usr/local/lib/systemtest/btvirt
btvirt_deb() { # the pinned .deb: from bookworm's archives cache, else the mirror, else snapshot
    local cache="$ROOTS_CACHE/archives-bookworm-amd64" url
    if [ -f "$cache/$BTVIRT_DEB" ] && echo "$BTVIRT_SHA256  $cache/$BTVIRT_DEB" | sha256sum -c --quiet - >/dev/null 2>&1; then
        echo "$cache/$BTVIRT_DEB"
        return
    fi
    for url in "$MIRROR/pool/main/b/bluez/$BTVIRT_DEB" "https://snapshot.debian.org/file/$BTVIRT_SHA1"; do
        log "btvirt: fetching $url"
        # the tree's curl (minbase has it), not the host's
        if in_chroot curl -fsSL --max-time 120 -o "/tmp/$BTVIRT_DEB" "$url" &&
            echo "$BTVIRT_SHA256  $TREE/tmp/$BTVIRT_DEB" | sha256sum -c --quiet - >&2; then
            mkdir -p "$cache"
            mv "$TREE/tmp/$BTVIRT_DEB" "$cache/.$BTVIRT_DEB.tmp" && mv "$cache/.$BTVIRT_DEB.tmp" "$cache/$BTVIRT_DEB"
            echo "$cache/$BTVIRT_DEB"
            return
        fi
        rm -f "$TREE/tmp/$BTVIRT_DEB"
    done
    die "btvirt: $BTVIRT_DEB (sha256 $BTVIRT_SHA256) is neither in $cache nor downloadable"
}
DEB="$(btvirt_deb)"
mkdir -p "$TREE$(dirname "$BTVIRT_PATH")"
dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./usr/bin/btvirt >"$TREE$BTVIRT_PATH"
chmod 755 "$TREE$BTVIRT_PATH"
# It must run on this release's glibc with nothing but libc (the loader checks the symbol versions).
BTVIRT_LIBS="$(in_chroot ldd "$BTVIRT_PATH")" || die "ldd $BTVIRT_PATH failed in the $ST_RELEASE tree"
BTVIRT_LIBS="$(echo "$BTVIRT_LIBS" | awk '$1 !~ /^(linux-vdso\.so|libc\.so\.6|\/lib64\/ld-linux)/')"
[ -z "$BTVIRT_LIBS" ] || die "btvirt from $BTVIRT_DEB needs more than libc: $BTVIRT_LIBS"
BTVIRT_VERSION="$(in_chroot "$BTVIRT_PATH" --version)" || die "btvirt from $BTVIRT_DEB does not run on $ST_RELEASE"
log "btvirt $BTVIRT_VERSION (from $BTVIRT_DEB) in $BTVIRT_PATH; the release's own stays in /usr/bin/btvirt"

# --- configuration -----------------------------------------------------------------------------
rm -f "$TREE/etc/apt/apt.conf.d/90ble-exporter"   # the base's apt settings for its cache
echo systest >"$TREE/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 systest\n' >"$TREE/etc/hosts"
echo '/dev/vda / ext4 defaults,noatime 0 1' >"$TREE/etc/fstab"
: >"$TREE/etc/resolv.conf"   # the guest has no DNS (and no network but the host's forwards)
# apt inside the guest must never try the network: only local .debs get installed there.
echo 'Acquire::Languages "none";' >"$TREE/etc/apt/apt.conf.d/99systemtest"

# Network: static address on qemu's user network (no DHCP wait).
mkdir -p "$TREE/etc/systemd/network"
cat >"$TREE/etc/systemd/network/10-qemu.network" <<'EOF'
[Match]
Name=eth0 en*

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
in_chroot systemctl enable systemd-networkd.service >/dev/null 2>&1
in_chroot systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1

# Keep the boot short and quiet: nothing periodic, no Prometheus of the package's own
# (the test starts Prometheus with its own config), journald in memory.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer man-db.timer dpkg-db-backup.timer prometheus.service; do
    in_chroot systemctl disable "$unit" >/dev/null 2>&1 || true
done
in_chroot systemctl mask prometheus.service >/dev/null 2>&1 || true
mkdir -p "$TREE/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=64M\n' >"$TREE/etc/systemd/journald.conf.d/systemtest.conf"
mkdir -p "$TREE/etc/systemd/system.conf.d"
printf '[Manager]\nDefaultTimeoutStopSec=15s\n' >"$TREE/etc/systemd/system.conf.d/systemtest.conf"

# ssh: root with key only, fast login.
ssh-keygen -q -t ed25519 -N '' -C systemtest -f "$WORK/id_ed25519"
install -d -m 700 "$TREE/root/.ssh"
install -m 600 "$WORK/id_ed25519.pub" "$TREE/root/.ssh/authorized_keys"
cat >"$TREE/etc/ssh/sshd_config.d/systemtest.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
GSSAPIAuthentication no
EOF

# --- kernel and a cut-down initrd ----------------------------------------------------------------
KVER="$(ls "$TREE/lib/modules" | sort -V | tail -1)"
[ -n "$KVER" ] || die "no kernel in the tree"
printf 'virtio_pci\nvirtio_blk\next4\n' >"$TREE/etc/initramfs-tools/modules"
in_chroot mkinitramfs -o /boot/initrd.small "$KVER" >"$WORK/mkinitramfs.log" 2>&1 || {
    tail -20 "$WORK/mkinitramfs.log" >&2
    die "mkinitramfs failed"
}
mkdir -p "$WORK/out"
cp "$TREE/boot/vmlinuz-$KVER" "$WORK/out/vmlinuz"
mv "$TREE/boot/initrd.small" "$WORK/out/initrd.img"
rm -f "$TREE/boot/initrd.img-$KVER"   # the full-size one is never used
cp "$TREE/usr/bin/prometheus" "$WORK/out/prometheus"
rm -f "$TREE/usr/sbin/policy-rc.d"
for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[$i]}"; done
MOUNTS=()
rm -rf "$TREE/var/lib/apt/lists/"*
: >"$TREE/etc/apt/sources.list"
rm -f "$TREE/etc/apt/sources.list.d/"*

# --- root filesystem -------------------------------------------------------------------------------
USED_MB=$(du -sm --one-file-system "$TREE" | cut -f1)
SIZE_MB=$((USED_MB + 1024))
log "mkfs.ext4 -d tree ($USED_MB MB used, image $SIZE_MB MB)"
truncate -s "${SIZE_MB}M" "$WORK/out/rootfs.ext4"
mkfs.ext4 -q -L root -d "$TREE" "$WORK/out/rootfs.ext4"
mv "$WORK/id_ed25519" "$WORK/id_ed25519.pub" "$WORK/out/"
{
    echo "key=$(st_image_key)"
    echo "built=$(date -Is)"
    echo "release=$ST_RELEASE"
    echo "kernel=$KVER"
    echo "mirror=$MIRROR"
    echo "build_seconds=$(awk -v a="$EPOCHREALTIME" -v b="$T_START" 'BEGIN { printf "%.0f", a - b }')"
    echo "initrd_bytes=$(stat -c %s "$WORK/out/initrd.img")"
    echo "tree_mb=$USED_MB"
    echo "btvirt=$BTVIRT_VERSION ($BTVIRT_DEB)"
} >"$WORK/out/info"
rm -rf "$OUT"
mv "$WORK/out" "$OUT"
# Keep only this image of this release.
for old in "$ST_CACHE/image-$ST_RELEASE"-*; do
    [ "$old" = "$OUT" ] || rm -rf --one-file-system "$old"
done
log "image built in $(grep build_seconds "$OUT/info" | cut -d= -f2) s: $OUT"
echo "$OUT"
