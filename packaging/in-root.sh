#!/bin/bash
# The suite and lintian of a Debian release, whatever the host runs: in a cached tree of that
# release (packaging/roots.sh: the same debootstrap the deb-test boots, plus the "tools" packages).
#
#   packaging/in-root.sh suite RELEASE [PYTEST ARGS...]   pytest under RELEASE's /usr/bin/python3
#                                                         and its Debian packages (make test-debian)
#   packaging/in-root.sh pinned RELEASE SET [PYTEST ARGS...]
#                                                         pytest under RELEASE's /usr/bin/python3 in a
#                                                         venv of SET's libraries pinned from PyPI
#                                                         (packaging/pinned.sh; make test-pinned)
#   packaging/in-root.sh lintian RELEASE DEB              RELEASE's lintian on DEB (make lint-deb);
#                                                         the host's own when the host is RELEASE
#   packaging/in-root.sh deb RELEASE OUTDIR               `make deb` as on a RELEASE host, the
#                                                         repository read-only (make deb-in-tree)
# As root (debootstrap, systemd-nspawn). The tree is used with --volatile=overlay, so it stays as
# it was built; the repository is bind-mounted at /src.
set -eu -o pipefail

T0=$SECONDS
say() { printf '[in-root %4ss] %s\n' "$((SECONDS - T0))" "$*"; }
die() {
	say "FATAL: $*" >&2
	exit 1
}
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/packaging/roots.sh"

# What the .deb depends on (its Python packages: the suite needs no bluetoothd), the suite's own
# tools (a private D-Bus with python-dbusmock, promtool, tmux), lintian and what `make deb` needs:
# one layer serves every command. The first part comes from packaging/dependencies.txt.
TOOLS_PKGS="$(/usr/bin/python3 "$REPO/packaging/deps.py" debs python3 runtime-python test) lintian
	make python3-stdeb python3-all python3-setuptools dh-python debhelper build-essential fakeroot man-db"

usage() { die "usage: $0 suite RELEASE [PYTEST ARGS...] | pinned RELEASE SET [PYTEST ARGS...] | lintian RELEASE DEB | deb RELEASE OUTDIR"; }
[[ $# -ge 2 ]] || usage
CMD=$1 RELEASE=$2
shift 2
ARCH=$(roots_host_arch)
roots_check "$RELEASE" "$ARCH"
if [[ $RELEASE == forky ]]; then
	# Debian testing has no python3-stdeb (so no `deb` there); python3-venv for the pinned Ubuntu
	# 26.04 set on its Python 3.14 (`pinned`).
	TOOLS_PKGS="${TOOLS_PKGS/python3-stdeb /} python3-venv"
fi

# Sets TREE: the release's tree with TOOLS_PKGS, locked until this script exits.
tools_tree() {
	[[ $(id -u) == 0 ]] || die "needs root (debootstrap, systemd-nspawn); run it with sudo"
	command -v systemd-nspawn >/dev/null || die "systemd-nspawn is missing; run: make build-deps"
	roots_lock "$RELEASE" "$ARCH"
	# shellcheck disable=SC2086
	roots_layer "$RELEASE" "$ARCH" tools $TOOLS_PKGS
	TREE=$ROOTS_TREE
}
trap roots_cleanup EXIT

case $CMD in
suite)
	tools_tree
	NSPAWN_ARGS=(--bind="$REPO:/src" --chdir=/src --setenv=PYTHONDONTWRITEBYTECODE=1)
	say "suite: $(roots_run "$RELEASE" "$ARCH" "$TREE" sh -c \
		'. /etc/os-release; echo "$PRETTY_NAME, $(python3 --version), bleak $(dpkg-query -W -f "\${Version}" python3-bleak)"')"
	roots_run "$RELEASE" "$ARCH" "$TREE" /usr/bin/python3 "/src/packaging/deps.py" check-archive "$RELEASE"
	roots_run "$RELEASE" "$ARCH" "$TREE" /usr/bin/python3 -m pytest -p no:cacheprovider "$@"
	;;
pinned)
	[[ $# -ge 1 ]] || usage
	SET=$1
	shift
	tools_tree
	# The venv (made once, under the tree's lock) and pip's downloads are kept in the cache; pip
	# trusts the host's certificate authorities (a proxy to PyPI that the host trusts, too).
	VENV=$ROOTS_CACHE/venv-$SET-$RELEASE-$ARCH
	mkdir -p "$VENV" "$ROOTS_CACHE/pip"
	NSPAWN_ARGS=(--bind="$REPO:/src" --chdir=/src --setenv=PYTHONDONTWRITEBYTECODE=1 --bind="$VENV:/venv"
		--bind="$ROOTS_CACHE/pip:/pip-cache" --setenv=PIP_CACHE_DIR=/pip-cache
		--bind-ro=/etc/ssl/certs/ca-certificates.crt:/run/host-ca-certificates.crt
		--setenv=PIP_CERT=/run/host-ca-certificates.crt)
	roots_run "$RELEASE" "$ARCH" "$TREE" /src/packaging/pinned.sh "$SET" /usr/bin/python3 /venv "$@"
	;;
lintian)
	[[ $# == 1 ]] || usage
	DEB=$(readlink -f "$1")
	[[ -f $DEB ]] || die "$1 not found; run: make deb"
	if [[ $(roots_host_release) == "$RELEASE" ]]; then
		command -v lintian >/dev/null || die "lintian is missing; run: make build-deps"
		say "lintian $(lintian --version | awk '{ print $2 }') of the host ($RELEASE) on $(basename "$DEB")"
		lintian --fail-on error,warning --display-info "$DEB"
	else
		tools_tree
		NSPAWN_ARGS=(--bind-ro="$(dirname "$DEB"):/debs")
		say "lintian $(roots_run "$RELEASE" "$ARCH" "$TREE" lintian --version | awk '{ print $2 }') of $RELEASE (tree $TREE) on $(basename "$DEB")"
		roots_run "$RELEASE" "$ARCH" "$TREE" lintian --fail-on error,warning --display-info "/debs/$(basename "$DEB")"
	fi
	say "lintian ($RELEASE): clean"
	;;
deb)
	[[ $# == 1 ]] || usage
	mkdir -p "$1"
	OUT=$(readlink -f "$1")
	tools_tree
	NSPAWN_ARGS=(--bind-ro="$REPO:/src" --bind="$OUT:/out" --setenv=DEB_OUT=/out)
	say "make deb on $RELEASE ($(roots_run "$RELEASE" "$ARCH" "$TREE" sh -c \
		'echo debhelper $(dpkg-query -W -f "\${Version}" debhelper), setuptools $(dpkg-query -W -f "\${Version}" python3-setuptools)'))"
	roots_run "$RELEASE" "$ARCH" "$TREE" make -C /src deb
	say "built $(ls "$OUT"/ble-exporter_*.deb) on $RELEASE; unit: $(dpkg-deb -c "$OUT/ble-exporter.deb" | grep -o '[^ ]*systemd/system/ble-exporter.service')"
	;;
*) usage ;;
esac
