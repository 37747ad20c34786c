# Debian trees of a given release and architecture, cached under /var/cache, shared by every
# script that needs one: deb-test.sh (booted bookworm/trixie, arm64 under qemu-user),
# in-root.sh (the suite and lintian of another release), systemtest/build-image.sh (the guest).
# Source it from bash; do not run it.
# shellcheck shell=bash
#
#   roots_check RELEASE ARCH      die unless a release/architecture this project supports
#   roots_mirror                  the Debian mirror of the host's apt sources
#   roots_sources RELEASE FILE    the host's apt sources (main, updates, security), for RELEASE
#   roots_lock RELEASE ARCH       take the tree's lock (on fd 7) until the caller exits or closes fd 7
#   roots_base RELEASE ARCH       the cached minbase tree (debootstrap, once), in ROOTS_TREE
#   roots_layer RELEASE ARCH NAME PKGS...
#                                 the base plus PKGS installed with apt (a cached copy), in ROOTS_TREE
#   roots_run RELEASE ARCH TREE CMD...
#                                 CMD in TREE (systemd-nspawn, not booted, host network,
#                                 --volatile=overlay: TREE stays as it is); NSPAWN_ARGS adds options
#   roots_binfmt_enable ARCH      qemu-user for a foreign ARCH, through binfmt-support (bookworm) or
#                                 /usr/lib/binfmt.d (trixie); roots_cleanup puts it back
#   roots_cleanup                 for the caller's EXIT trap: stops a debootstrap or apt still
#                                 running, puts binfmt back as it was
#
# The cache ($ROOTS_CACHE, default /var/cache/ble-exporter-roots) holds, per release and
# architecture: base-REL-ARCH-KEY (KEY: release, arch, packages, mirror, format), layers
# NAME-REL-ARCH-KEY, the downloaded .debs (archives-REL-ARCH) and lock-REL-ARCH. A new base or
# layer replaces only older ones of the same release, architecture and name. (The deb-test's
# single bookworm tree of before, in /var/cache/ble-exporter-deb-test, is left alone: scripts of
# that layout delete every tree there but their own.)
# Callers need: die MESSAGE, say MESSAGE.

ROOTS_RELEASES="bookworm trixie forky"
# Releases still in testing: their Release files carry a Valid-Until a week ahead, and this
# workplace's Debian mirror serves a snapshot whose Valid-Until has passed, so apt in their trees
# does not check it. debootstrap releases older than the release have no script named after it:
# the sid script serves testing.
ROOTS_TESTING="forky"
ROOTS_ARCHES="amd64 arm64"
ROOTS_CACHE=${ROOTS_CACHE:-/var/cache/ble-exporter-roots}
ROOTS_BASE_PKGS=systemd,systemd-sysv,dbus,curl,logrotate,ca-certificates
ROOTS_FORMAT=2 # bump to force new trees when the set-up below changes

roots_check() {
	[[ " $ROOTS_RELEASES " == *" $1 "* ]] || die "RELEASE=$1 is not supported; use one of: $ROOTS_RELEASES"
	[[ " $ROOTS_ARCHES " == *" $2 "* ]] || die "ARCH=$2 is not supported; use one of: $ROOTS_ARCHES"
}

roots_host_arch() { dpkg --print-architecture; }
roots_host_release() { (. /etc/os-release && echo "${VERSION_CODENAME:-}"); }

roots_mirror() {
	local uri=""
	if [[ -n ${ROOTS_MIRROR:-} ]]; then
		echo "$ROOTS_MIRROR"
		return
	fi
	if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
		uri=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/*.sources)
	fi
	if [[ -z $uri && -f /etc/apt/sources.list ]]; then
		uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list)
	fi
	[[ -n $uri ]] || die "cannot find a Debian mirror in /etc/apt; set ROOTS_MIRROR=http://..."
	echo "$uri"
}

# The host's Debian sources with the host's codename replaced by RELEASE (bookworm-updates becomes
# trixie-updates and so on), so a tree resolves packages from the same archive as the host.
roots_sources() {
	local release=$1 out=$2 host
	host=$(roots_host_release)
	[[ -n $host ]] || die "cannot tell the host's Debian release (no VERSION_CODENAME in /etc/os-release)"
	if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null &&
		grep -qh '^Suites:' /etc/apt/sources.list.d/*.sources; then
		mkdir -p "$(dirname "$out")/sources.list.d"
		sed -E "/^Suites:/ s/\<$host(-[a-z]+)?\>/$release\1/g" /etc/apt/sources.list.d/*.sources \
			>"$(dirname "$out")/sources.list.d/debian.sources"
		: >"$out"
	else
		grep -E '^deb ' /etc/apt/sources.list | sed -E "s/ $host(-[a-z]+)? / $release\1 /" >"$out"
	fi
}

roots_lock() {
	local release=$1 arch=$2
	mkdir -p "$ROOTS_CACHE"
	exec 7>"$ROOTS_CACHE/lock-$release-$arch"
	flock -w 1800 7 || die "another run holds $ROOTS_CACHE/lock-$release-$arch for over 30 min; wait or stop it"
}

_roots_key() { printf '%s\n' "$@" | sha256sum | cut -c1-12; }

# Replace older trees of the same kind: PREFIX (e.g. base-trixie-amd64) and the one to keep.
_roots_prune() {
	local old
	for old in "$ROOTS_CACHE/$1"-*; do
		[[ -e $old && $old != "$2" && $old != *.tmp ]] || continue
		rm -rf --one-file-system "$old"
	done
}

# A long command (debootstrap, apt) in its own process group, waited for so that a signal to the
# caller runs its trap at once; roots_cleanup stops it.
ROOTS_CHILD=""
_roots_long() {
	local log=$1 rc=0
	shift
	setsid "$@" >>"$log" 2>&1 </dev/null &
	ROOTS_CHILD=$!
	wait "$ROOTS_CHILD" || rc=$?
	ROOTS_CHILD=""
	return "$rc"
}

# Sets ROOTS_TREE to the cached minbase tree of RELEASE/ARCH (made once). A foreign ARCH gets no
# --include: debootstrap's dependency resolution is perl over the whole Packages file, and under
# qemu-user that takes many minutes a package; apt in roots_layer does it natively fast enough.
roots_base() {
	local release=$1 arch=$2 mirror key base log t script include=--include=$ROOTS_BASE_PKGS foreign=()
	roots_check "$release" "$arch"
	mirror=$(roots_mirror)
	if [[ $arch != "$(roots_host_arch)" ]]; then
		foreign=(--foreign)
		include=""
	fi
	key=$(_roots_key "$release" "$arch" "$include" "$mirror" "$ROOTS_FORMAT")
	base=$ROOTS_CACHE/base-$release-$arch-$key
	ROOTS_TREE=$base
	if [[ -e $base/.complete ]]; then
		say "base: cached $base"
		return
	fi
	command -v debootstrap >/dev/null || die "debootstrap is missing; run: make build-deps"
	t=$SECONDS
	log=$ROOTS_CACHE/debootstrap-$release-$arch.log
	say "base: debootstrap $release/$arch ${include#--include=} into $base (first run only)"
	rm -rf --one-file-system "$base.tmp"
	mkdir -p "$ROOTS_CACHE/archives-$release-$arch/partial"
	: >"$log"
	script=/usr/share/debootstrap/scripts/$release
	[[ -e $script ]] || script=/usr/share/debootstrap/scripts/sid
	_roots_long "$log" debootstrap --variant=minbase --arch="$arch" "${foreign[@]}" ${include:+"$include"} \
		--cache-dir="$ROOTS_CACHE/archives-$release-$arch" "$release" "$base.tmp" "$mirror" "$script" || {
		tail -n 30 "$log" >&2
		die "debootstrap $release/$arch failed (log: $log)"
	}
	if ((${#foreign[@]})); then
		say "base: debootstrap second stage under qemu-user (minutes)"
		_roots_long "$log" chroot "$base.tmp" /debootstrap/debootstrap --second-stage || {
			tail -n 30 "$log" >&2
			die "debootstrap --second-stage $release/$arch failed (log: $log)"
		}
	fi
	rm -f "$base.tmp/etc/apt/sources.list.d/"*
	roots_sources "$release" "$base.tmp/etc/apt/sources.list"
	echo ble-deb-test >"$base.tmp/etc/hostname"
	rm -f "$base.tmp/etc/machine-id" && touch "$base.tmp/etc/machine-id"
	# Keep what apt downloads (the archives directory is bind-mounted over apt's cache), and wait
	# for dpkg's lock rather than fail.
	printf '%s\n' 'Binary::apt::APT::Keep-Downloaded-Packages "true";' 'DPkg::Lock::Timeout "600";' \
		>"$base.tmp/etc/apt/apt.conf.d/90ble-exporter"
	if [[ " $ROOTS_TESTING " == *" $release "* ]]; then
		echo 'Acquire::Check-Valid-Until "false";' >>"$base.tmp/etc/apt/apt.conf.d/90ble-exporter"
	fi
	touch "$base.tmp/.complete"
	mv "$base.tmp" "$base"
	_roots_prune "base-$release-$arch" "$base"
	say "base: ready in $((SECONDS - t)) s, $(du -sh "$base" | cut -f1)"
}

# systemd-nspawn in TREE, not booted, on the host's network, with the tree's apt archives
# directory: _roots_nspawn_cmd sets ROOTS_NSPAWN to that command line, _roots_nspawn runs it.
_roots_nspawn_cmd() {
	ROOTS_NSPAWN=(systemd-nspawn --quiet --register=no --keep-unit --as-pid2 --console=pipe -D "$3"
		--bind="$ROOTS_CACHE/archives-$1-$2:/var/cache/apt/archives"
		--setenv=DEBIAN_FRONTEND=noninteractive --setenv=LANG=C.UTF-8)
}
_roots_nspawn() {
	_roots_nspawn_cmd "$1" "$2" "$3"
	shift 3
	# (where /run is no tmpfs, as on a host without systemd, nspawn says so when it cleans up)
	"${ROOTS_NSPAWN[@]}" "$@" \
		2> >(grep --line-buffered -v '^Attempted to remove disk file system under "/run/systemd/nspawn/' >&2)
}

roots_run() {
	local release=$1 arch=$2 tree=$3
	shift 3
	_roots_nspawn "$release" "$arch" "$tree" --volatile=overlay ${NSPAWN_ARGS[@]+"${NSPAWN_ARGS[@]}"} "$@"
}

# Sets ROOTS_TREE to the base of RELEASE/ARCH plus PKGS installed with apt (a cached copy).
roots_layer() {
	local release=$1 arch=$2 name=$3 base key layer log t
	shift 3
	roots_base "$release" "$arch"
	base=$ROOTS_TREE
	key=$(_roots_key "$(basename "$base")" "$name" "$*")
	layer=$ROOTS_CACHE/$name-$release-$arch-$key
	ROOTS_TREE=$layer
	if [[ -e $layer/.complete ]]; then
		say "$name: cached $layer"
		return
	fi
	t=$SECONDS
	log=$ROOTS_CACHE/$name-$release-$arch.log
	say "$name: $release/$arch base + apt install $*"
	rm -rf --one-file-system "$layer.tmp"
	cp -a --reflink=auto "$base" "$layer.tmp"
	rm -f "$layer.tmp/.complete"
	: >"$log"
	_roots_nspawn_cmd "$release" "$arch" "$layer.tmp"
	_roots_long "$log" "${ROOTS_NSPAWN[@]}" sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $*" || {
		tail -n 30 "$log" >&2
		die "apt-get install in the $release/$arch tree failed (log: $log)"
	}
	touch "$layer.tmp/.complete"
	mv "$layer.tmp" "$layer"
	_roots_prune "$name-$release-$arch" "$layer"
	say "$name: ready in $((SECONDS - t)) s, $(du -sh "$layer" | cut -f1)"
}

# For the callers' EXIT trap: stop a debootstrap or apt still running, put binfmt back.
roots_cleanup() {
	if [[ -n $ROOTS_CHILD ]] && kill -0 "$ROOTS_CHILD" 2>/dev/null; then
		kill -TERM -- "-$ROOTS_CHILD" 2>/dev/null
		wait "$ROOTS_CHILD" 2>/dev/null
	fi
	ROOTS_CHILD=""
	roots_binfmt_restore
}

# --- qemu-user for a foreign architecture -------------------------------------------------------
# bookworm's qemu-user-static registers its formats with binfmt-support (update-binfmts); trixie's
# (a transitional package for qemu-user and qemu-user-binfmt) ships systemd-binfmt files in
# /usr/lib/binfmt.d instead. Either way the entry needs the F flag (the interpreter opened at
# registration), so that it runs inside a tree.
ROOTS_BINFMT_MOUNTED=""
ROOTS_BINFMT_UNDO="" # what restores the entry: "disable NAME", "update-binfmts NAME", "unregister NAME"

roots_binfmt_enable() {
	local arch=$1 qarch entry conf
	case $arch in
	arm64) qarch=aarch64 ;;
	*) die "no qemu-user mapping for ARCH=$arch" ;;
	esac
	entry=/proc/sys/fs/binfmt_misc/qemu-$qarch
	conf=/usr/lib/binfmt.d/qemu-$qarch.conf
	if [[ ! -e /usr/bin/qemu-$qarch-static && ! -e /usr/bin/qemu-$qarch ]]; then
		die "qemu-user-static is missing (no /usr/bin/qemu-$qarch-static); run: make build-deps"
	fi
	if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
		mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
			die "cannot mount binfmt_misc (the kernel needs CONFIG_BINFMT_MISC); ARCH=$arch cannot run here"
		ROOTS_BINFMT_MOUNTED=1
	fi
	if [[ -e $entry ]]; then
		if ! grep -qx enabled "$entry"; then
			echo 1 >"$entry" || die "cannot enable $entry; check update-binfmts --display qemu-$qarch"
			ROOTS_BINFMT_UNDO="disable $entry"
		fi
	elif [[ -f /usr/share/binfmts/qemu-$qarch ]] && command -v update-binfmts >/dev/null; then
		update-binfmts --enable "qemu-$qarch" ||
			die "update-binfmts --enable qemu-$qarch failed; check update-binfmts --display qemu-$qarch"
		ROOTS_BINFMT_UNDO="update-binfmts qemu-$qarch"
	elif [[ -f $conf ]]; then
		grep -v '^#' "$conf" | grep . >/proc/sys/fs/binfmt_misc/register ||
			die "cannot register $conf with binfmt_misc; check dmesg"
		ROOTS_BINFMT_UNDO="unregister $entry"
	else
		die "no binfmt entry for qemu-$qarch (neither binfmt-support's nor $conf); run: make build-deps"
	fi
	grep -q '^flags: .*F' "$entry" ||
		die "$entry has no F flag, so it cannot run inside a tree; re-register it with the F flag"
}

# Undo what roots_binfmt_enable did (nothing that was there before).
roots_binfmt_restore() {
	local what=${ROOTS_BINFMT_UNDO%% *} target=${ROOTS_BINFMT_UNDO#* }
	case $what in
	disable) echo 0 >"$target" ;;
	update-binfmts) update-binfmts --disable "$target" >/dev/null ;;
	unregister) echo -1 >"$target" ;;
	esac || echo "warning: could not undo the binfmt set-up ($ROOTS_BINFMT_UNDO)" >&2
	ROOTS_BINFMT_UNDO=""
	if [[ -n $ROOTS_BINFMT_MOUNTED ]]; then
		umount /proc/sys/fs/binfmt_misc 2>/dev/null || echo "warning: could not unmount binfmt_misc" >&2
		ROOTS_BINFMT_MOUNTED=""
	fi
}
