#!/bin/bash
# The suite on a release's library versions pinned from PyPI (packaging/dependencies.txt: the
# runtime libraries and bleak's dbus-fast at the versions RELEASE ships; what they need themselves
# and the test tools at PyPI's newest), in a venv of the given Python:
#
#   packaging/pinned.sh RELEASE PYTHON VENV [PYTEST ARGS...]
#   packaging/pinned.sh --find-python RELEASE
#
# The first is run by `make test-pinned PINNED=noble` on the host and by `packaging/in-root.sh pinned
# forky resolute` in the forky tree (Python 3.14). The venv is made once per Python, pins and test
# tools (a stamp inside says which) and reused; pip keeps its downloads in its cache (PIP_CACHE_DIR).
# The private D-Bus of the BlueZ tests runs /usr/bin/python3 with Debian's python3-dbusmock.
# The second prints a Python of RELEASE's minor version (3.12 for noble): one on PATH, else pyenv's
# newest, else the host's /usr/bin/python3, saying so on stderr.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

if [[ ${1:-} == --find-python && $# == 2 ]]; then
	want=$(/usr/bin/python3 packaging/deps.py version "$2" python3)
	want=${want%.*}
	for py in "python$want" $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$want".*/bin/"python$want" 2>/dev/null | sort -V -r); do
		if "$py" -c 'import venv' 2>/dev/null; then
			command -v "$py"
			exit 0
		fi
	done
	echo "pinned: no Python $want here; $2's set runs on the host's $(/usr/bin/python3 --version)" >&2
	echo /usr/bin/python3
	exit 0
fi
[[ $# -ge 3 ]] || {
	echo "usage: $0 RELEASE PYTHON VENV [PYTEST ARGS...] | --find-python RELEASE" >&2
	exit 2
}
RELEASE=$1 PYTHON=$2 VENV=$3
shift 3

PINS=$(/usr/bin/python3 packaging/deps.py pip "$RELEASE")
TOOLS=$(/usr/bin/python3 packaging/deps.py pip-test)
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null ||
	{ echo "pinned: $PYTHON is no Python 3.10 or later" >&2; exit 1; }
STAMP=$(printf '%s\n' "$("$PYTHON" -VV)" "$(readlink -f "$(command -v "$PYTHON")")" "$PINS" "$TOOLS" | sha256sum | cut -c1-16)

if [[ $(cat "$VENV/.pinned" 2>/dev/null) != "$STAMP" ]]; then
	t=$SECONDS
	"$PYTHON" -m venv --clear "$VENV" # (--clear: VENV may be a mount point)
	# shellcheck disable=SC2086
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PINS $TOOLS
	echo "$STAMP" >"$VENV/.pinned"
	echo "pinned: venv $VENV made in $((SECONDS - t)) s"
fi
# What the pins did not fix (their own dependencies) is shown, not checked.
echo "pinned: $RELEASE's set on $("$VENV/bin/python" -c 'import platform; print("Python", platform.python_version())'):" \
	"$("$VENV/bin/python" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null |
		grep -iE '^(bleak|dbus.fast|aiohttp|prometheus.client|pyyaml|rich|cryptography|bcrypt|yarl|multidict)==' | tr '\n' ' ')"
"$VENV/bin/python" -m pip check --disable-pip-version-check >/dev/null ||
	{ "$VENV/bin/python" -m pip check; exit 1; }
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
