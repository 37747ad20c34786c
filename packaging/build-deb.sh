#!/bin/sh
# Build the Debian package with stdeb: dist/ble-exporter_<version>-<revision>_all.deb and a
# copy dist/ble-exporter.deb. Run by `make deb` with PATH reset to the system's, so Debian's
# python3 (not a venv or pyenv one) builds it.
#   DEB_REVISION  Debian revision (default 1); the upgrade test builds a higher one
#   DEB_OUT       output directory (default dist)
# The build happens in a temporary directory; nothing is written into the tree but $DEB_OUT.
set -eu

cd "$(dirname "$0")/.."
PY=${DEB_PYTHON:-/usr/bin/python3}
REV=${DEB_REVISION:-1}
OUT=${DEB_OUT:-dist}

for tool in "$PY" dpkg-buildpackage dh fakeroot; do
	command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing; run: make build-deps" >&2; exit 1; }
done
"$PY" -c 'import stdeb' 2>/dev/null || { echo "build-deb: python3-stdeb is missing; run: make build-deps" >&2; exit 1; }

VERSION=$("$PY" setup.py --version 2>/dev/null | tail -n 1)
# A private work directory, so that builds (e.g. the upgrade test's) can run side by side.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ble-exporter-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SRC=$WORK/ble-exporter-$VERSION
mkdir -p "$WORK/sdist" "$WORK/tree" "$OUT"
OUT=$(readlink -f "$OUT")
# setup.py sdist assembles the release in a directory beside setup.py: work from a copy, so that
# nothing is written into the tree (it may be read-only) and builds can run side by side.
tar --exclude=./.git --exclude=./.venv --exclude=./dist --exclude=./build --exclude=./logs \
	--exclude='./.*_cache' --exclude=./.hypothesis -cf - . | tar -C "$WORK/tree" -xf -
cd "$WORK/tree"

# 1. The sdist (MANIFEST.in puts debian/, stdeb.cfg and the config in it); then stdeb, run inside
#    the unpacked sdist: the Debian source tree with debian/control, rules, changelog and compat
#    generated from stdeb.cfg and setup.py, plus our files from the sdist's debian/.
"$PY" setup.py -q egg_info --egg-base "$WORK/sdist" sdist --dist-dir "$WORK/sdist" >"$WORK/sdist.log" 2>&1 || {
	cat "$WORK/sdist.log" >&2
	exit 1
}
#    setuptools names the sdist after the project (ble-exporter-0.1.0.tar.gz, bookworm) or after
#    its normalised name (ble_exporter-0.1.0.tar.gz, setuptools >= 69.3, trixie): take the one
#    tarball there, and the directory it unpacks to.
set -- "$WORK"/sdist/*.tar.gz
[ $# = 1 ] && [ -f "$1" ] || { echo "build-deb: expected one sdist in $WORK/sdist, found: $*" >&2; exit 1; }
TARBALL=$(readlink -f "$1")
UNPACKED=$(tar -tzf "$TARBALL" | head -n 1 | cut -d/ -f1)
tar -C "$WORK/sdist" -xzf "$TARBALL"
(cd "$WORK/sdist/$UNPACKED" &&
	"$PY" setup.py --command-packages=stdeb.command sdist_dsc --dist-dir "$(readlink -f ../..)" \
		--use-premade-distfile "$TARBALL" --compat 13 --debian-version "$REV") >"$WORK/stdeb.log" 2>&1 || {
	cat "$WORK/stdeb.log" >&2
	exit 1
}

# 2. What stdeb cannot be told: it writes "Homepage: None" when setup.py has no url (with
#    setuptools >= 60), cuts the synopsis at 60 characters and copies the first 20 lines of the
#    README (Markdown) as the long description. Use packaging/description.txt instead.
"$PY" - "$SRC/debian/control" packaging/description.txt <<'PYEOF'
import sys
control_path, desc_path = sys.argv[1], sys.argv[2]
lines = open(desc_path, encoding="utf-8").read().rstrip("\n").split("\n")
desc = "Description: " + lines[0] + "\n" + "".join(" " + (l if l.strip() else ".") + "\n" for l in lines[1:])
out, in_desc = [], False
for line in open(control_path, encoding="utf-8"):
    if line.startswith("Homepage: None"):
        continue
    if line.startswith("Description:"):
        in_desc = True
        out.append(desc)
        continue
    if in_desc and (line.startswith(" ") or not line.strip()):
        if not line.strip():
            in_desc = False
            out.append(line)
        continue
    in_desc = False
    out.append(line)
open(control_path, "w", encoding="utf-8").write("".join(out).rstrip("\n") + "\n")
PYEOF

# 3. The unit under /usr/lib/systemd/system on every build host. debhelper before 13.11.6
#    (bookworm's 13.11.4) installs units under /lib/systemd/system, which trixie's lintian rejects
#    (aliased-location: /lib is a symlink to /usr/lib since the /usr merge); newer debhelper uses
#    /usr/lib itself. dh_installsystemd of 13.11.4 only looks under /lib for the units to enable,
#    so move the unit right after it has written the maintainer scripts; deb-systemd-helper finds
#    units in either place, and on bookworm and trixie alike /lib/systemd/system is the same
#    directory as /usr/lib/systemd/system.
cat >>"$SRC/debian/rules" <<'RULESEOF'

# Added by packaging/build-deb.sh: the unit under /usr/lib, also with debhelper < 13.11.6.
execute_after_dh_installsystemd:
	if [ -d debian/ble-exporter/lib/systemd/system ]; then \
		mkdir -p debian/ble-exporter/usr/lib/systemd && \
		mv debian/ble-exporter/lib/systemd/system debian/ble-exporter/usr/lib/systemd/ && \
		rmdir debian/ble-exporter/lib/systemd debian/ble-exporter/lib; \
	fi
RULESEOF

# 4. Build the binary package (what stdeb's bdist_deb does).
(cd "$SRC" && dpkg-buildpackage -rfakeroot -uc -us -b) >"$WORK/build.log" 2>&1 || {
	tail -n 60 "$WORK/build.log" >&2
	exit 1
}

DEB=ble-exporter_${VERSION}-${REV}_all.deb
for name in "$DEB" ble-exporter.deb; do
	cp "$WORK/$DEB" "$OUT/.$name.$$" && mv -f "$OUT/.$name.$$" "$OUT/$name"
done
echo "built $OUT/$DEB (and $OUT/ble-exporter.deb)"
