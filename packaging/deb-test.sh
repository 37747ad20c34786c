#!/bin/bash
# deb-test: prove the Debian package on a Debian of a given release and architecture, not on this host.
#
#   RELEASE=bookworm|trixie|forky ARCH=amd64|arm64 packaging/deb-test.sh [dist/ble-exporter.deb]
#   (run by `make deb-test [RELEASE=...] [ARCH=...]`, as root; RELEASE defaults to bookworm, and to
#   trixie for a foreign ARCH; ARCH to the host's)
#
# On the host's architecture: boots a debootstrapped tree of RELEASE with systemd as PID 1 in
# systemd-nspawn (the tree is cached per release and architecture, packaging/roots.sh;
# --volatile=overlay keeps it pristine), then:
#   1. install   apt install ./ble-exporter_*.deb; dependencies come from the archive; the
#                package's BleakScanner made on the installed bleak with warnings as errors
#   2. no-bt     no Bluetooth adapter: the service fails fast with a clear error in the journal
#                and `systemctl status`, and is restarted until the start limit
#   3. simulate  with a drop-in adding --simulate: active, user ble-exporter, no capabilities,
#                nothing in the unit's journal but the start (the hardening of this systemd),
#                watchdog pings, /healthz /status /metrics with readings, log file written
#   4. upgrade   a rebuilt higher revision keeps the locally edited conffile; purge removes
#                config and logs
# On a foreign architecture (arm64 on an amd64 host): the tree runs under qemu-user (binfmt_misc,
# set up here and put back as it was on exit), not booted: systemd cannot be PID 1 under
# qemu-user. The .deb's dependencies are installed with apt into a cached layer of the tree (an
# hour's worth of emulated dpkg otherwise on each run), then:
#   1. install   apt install ./ble-exporter_*.deb; the interpreter is an aarch64 binary
#   2. simulate  as the service user: --version, check-config, `run --simulate` serving /healthz,
#                /status, /metrics with the demo sensors' readings; `watch --simulate` in tmux
# The container shares the host's network (apt needs it), so the exporter is moved to a free
# port (the local config edit that step 4 checks). Everything started here is stopped by PID
# on exit, also on failure. Exit status 0 only if every step passed.
set -uo pipefail

DEB=${1:-dist/ble-exporter.deb}
REPO=$(cd "$(dirname "$0")/.." && pwd)
T0=$(date +%s.%N)

NSPAWN_PID=""
BUILD2_PID=""
LEADER=""
WORK=""
RESULTS=()
FAILED=0
CHECKS_PASSED=0
CHECKS_FAILED=0

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf '[deb-test %6ss] %s\n' "$(elapsed "$T0")" "$*"; }
die() {
	say "FATAL: $*"
	exit 1
}

cleanup() {
	local rc=$?
	trap '' INT TERM HUP # finish the cleanup whatever arrives now
	exec 1>&3 2>&4       # the script's own output, also when interrupted inside a check
	if [[ -n $NSPAWN_PID ]] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
		# SIGTERM makes systemd-nspawn power the container off cleanly.
		kill -TERM "$NSPAWN_PID" 2>/dev/null
		for _ in $(seq 1 50); do
			kill -0 "$NSPAWN_PID" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$NSPAWN_PID" 2>/dev/null; then
			say "container did not power off in 10 s; killing systemd-nspawn $NSPAWN_PID"
			kill -KILL "$NSPAWN_PID" 2>/dev/null
		fi
		wait "$NSPAWN_PID" 2>/dev/null
	fi
	if [[ -n $BUILD2_PID ]] && kill -0 "$BUILD2_PID" 2>/dev/null; then
		kill -TERM -- "-$BUILD2_PID" 2>/dev/null
		wait "$BUILD2_PID" 2>/dev/null
	fi
	[[ -n $WORK ]] && rm -rf "$WORK"
	declare -F roots_cleanup >/dev/null && roots_cleanup
	exit "$rc"
}
exec 3>&1 4>&2
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

[[ $(id -u) == 0 ]] || die "needs root (debootstrap, systemd-nspawn)"
for tool in debootstrap systemd-nspawn nsenter setsid dpkg-deb flock; do
	command -v "$tool" >/dev/null || die "$tool is missing; run: make build-deps"
done
[[ -f $DEB ]] || die "$DEB not found; run: make deb"
DEB=$(readlink -f "$DEB")

# ---------------------------------------------------------------------------------------------
# The cached tree

. "$REPO/packaging/roots.sh"
ARCH=${ARCH:-$(roots_host_arch)}
if [[ $ARCH == "$(roots_host_arch)" ]]; then
	MODE=booted
	RELEASE=${RELEASE:-bookworm}
else
	MODE=emulated
	RELEASE=${RELEASE:-trixie}
fi
roots_check "$RELEASE" "$ARCH"
say "$RELEASE/$ARCH ($MODE) with $(basename "$DEB")"
roots_lock "$RELEASE" "$ARCH"
if [[ $MODE == booted ]]; then
	roots_base "$RELEASE" "$ARCH"
else
	roots_binfmt_enable "$ARCH"
	# The .deb's dependencies by name (alternatives: the first), and what the checks use.
	DEPS=$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/:any//; s/[[:space:]]//g' | grep . | sort | tr '\n' ' ')
	# shellcheck disable=SC2086
	roots_layer "$RELEASE" "$ARCH" deb-deps $DEPS curl tmux
fi
TREE=$ROOTS_TREE

# ---------------------------------------------------------------------------------------------
# The packages: the one under test, and a rebuilt higher revision for the upgrade

WORK=$(mktemp -d /tmp/ble-deb-test.XXXXXX)
chmod 755 "$WORK"
mkdir "$WORK/debs"
V1=$(dpkg-deb -f "$DEB" Version)
cp "$DEB" "$WORK/debs/ble-exporter_${V1}_all.deb"
# The editor of the sudoedit check: one line of the config changed.
printf '#!/bin/sh\nsed -i "s/^scan_duration_seconds: 2$/&  # sudoedit/" "$1"\n' >"$WORK/debs/edit-config.sh"
chmod 755 "$WORK/debs/edit-config.sh"
REV2=$((${V1##*-} + 1))
if [[ $MODE == booted ]]; then
	# Rebuilt while the container boots and installs; collected before the upgrade step.
	# In its own process group, so that cleanup can stop all of it.
	setsid bash -c 't=$(date +%s.%N); DEB_REVISION=$1 DEB_OUT=$2 "$3" >"$4" 2>&1; rc=$?
		awk -v a="$t" -v b="$(date +%s.%N)" "BEGIN { printf \"%.1f\", b - a }" >"$5"; exit $rc' _ \
		"$REV2" "$WORK/v2" "$REPO/packaging/build-deb.sh" "$WORK/build-v2.log" "$WORK/build-v2.seconds" &
	BUILD2_PID=$!
	say "packages: $V1 under test; rebuilding revision $REV2 for the upgrade"
fi

# A free TCP port on the host for the exporter (the container shares the host's network).
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# ---------------------------------------------------------------------------------------------
# The container: booted (systemd as PID 1), or under qemu-user a plain process tree kept up by
# a sleep, both entered with nsenter.

t=$(date +%s.%N)
NSPAWN=(systemd-nspawn --quiet -D "$TREE" --volatile=overlay --register=no --keep-unit
	--machine="ble-deb-test-$$" --bind="$ROOTS_CACHE/archives-$RELEASE-$ARCH:/var/cache/apt/archives"
	--bind-ro="$WORK/debs:/debs")
if [[ $MODE == booted ]]; then
	# systemd 258 and later (forky's) no longer boot on cgroup v1, which systemd-nspawn hands a
	# container where the host has the hybrid layout (cgroup v1 with cgroup2 beside it, as this
	# workplace's machines); ask for a cgroup2-only container there. It gets no controllers, which
	# the unit does not use (no CPU or memory limits).
	NSPAWN_ENV=()
	SYSTEMD_VERSION=$(dpkg-query --admindir="$TREE/var/lib/dpkg" -W -f '${Version}' systemd)
	if dpkg --compare-versions "$SYSTEMD_VERSION" ge 258; then
		NSPAWN_ENV=(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1)
	fi
	env ${NSPAWN_ENV[@]+"${NSPAWN_ENV[@]}"} "${NSPAWN[@]}" -b >"$WORK/console.log" 2>&1 </dev/null &
else
	"${NSPAWN[@]}" --as-pid2 --console=pipe sleep infinity >"$WORK/console.log" 2>&1 </dev/null &
fi
NSPAWN_PID=$!
# The container's PID 1 is the child of systemd-nspawn that runs systemd, or nspawn's stub init
# that sees the bind-mounted packages (an intermediate child exists for a moment before it).
in_container() {
	if [[ $MODE == booted ]]; then
		[[ $(cat "/proc/$1/comm" 2>/dev/null) == systemd ]]
	else
		[[ -e /proc/$1/root/debs/ble-exporter_${V1}_all.deb ]]
	fi
}
for _ in $(seq 1 300); do
	for c in $(pgrep -P "$NSPAWN_PID"); do
		in_container "$c" && LEADER=$c
	done
	[[ -n $LEADER ]] && break
	kill -0 "$NSPAWN_PID" 2>/dev/null || break
	sleep 0.1
done
[[ -n $LEADER ]] || {
	cat "$WORK/console.log"
	die "systemd-nspawn did not start a container"
}

# Run a command in the container (all its namespaces), with a clean environment. Waited for in
# the background so that a signal to this script runs the cleanup at once (the command dies with
# the container).
ct() {
	nsenter -t "$LEADER" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb "$@" </dev/null &
	wait $!
}
ct_sh() { ct sh -c "$1"; }

wait_booted() {
	local state=""
	for _ in $(seq 1 300); do
		state=$(ct systemctl is-system-running 2>/dev/null)
		[[ $state == running || $state == degraded ]] && break
		sleep 0.1
	done
	[[ $state == running || $state == degraded ]] || {
		tail -n 30 "$WORK/console.log"
		die "the container did not finish booting (state: ${state:-none})"
	}
	[[ $(ct cat /proc/1/comm) == systemd ]] || die "PID 1 in the container is not systemd"
	say "boot: systemd is PID 1 in the container ($state) after $(elapsed "$t") s"
}
if [[ $MODE == booted ]]; then
	wait_booted
else
	say "container: $(ct_sh '. /etc/os-release; echo "$PRETTY_NAME $(dpkg --print-architecture)"') under qemu-user, started in $(elapsed "$t") s"
fi

# ---------------------------------------------------------------------------------------------
# Checks

STEP_OK=1
check() { # check DESCRIPTION COMMAND...: run COMMAND on the host side, record the outcome
	local what=$1
	shift
	if "$@" >"$WORK/check.out" 2>&1; then
		say "  ok   $what"
		CHECKS_PASSED=$((CHECKS_PASSED + 1))
	else
		say "  FAIL $what"
		CHECKS_FAILED=$((CHECKS_FAILED + 1))
		sed -n '1,40s/^/         | /p' "$WORK/check.out"
		STEP_OK=0
	fi
}
show() { ct systemctl show -p "$2" --value "$1"; }
wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds
	local deadline=$(($(date +%s) + $1))
	shift
	until "$@"; do
		(($(date +%s) >= deadline)) && return 1
		sleep 0.2
	done
}
step() { # step NAME FUNCTION
	local t
	t=$(date +%s.%N)
	STEP_OK=1
	say "step $1"
	"$2"
	local took
	took=$(elapsed "$t")
	if ((STEP_OK)); then
		RESULTS+=("PASS  $1 (${took} s)")
	else
		RESULTS+=("FAIL  $1 (${took} s)")
		FAILED=1
	fi
	return $((1 - STEP_OK))
}

CONF=/etc/ble-exporter/config.yaml
UNIT=ble-exporter.service
DROPIN=/run/systemd/system/$UNIT.d

step_install() {
	check "apt-get update" ct_sh "apt-get update -q >/tmp/apt-update.log 2>&1 || { cat /tmp/apt-update.log; false; }"
	check "apt install ./ble-exporter_${V1}_all.deb (dependencies from the archive)" ct_sh \
		"cd /debs && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./ble-exporter_${V1}_all.deb \
			>/tmp/apt-install.log 2>&1 || { tail -n 40 /tmp/apt-install.log; false; }"
	say "       $(ct_sh "grep -E '^(Need to get|After this operation|[0-9]+ upgraded)' /tmp/apt-install.log | tr '\n' ' '")"
	check "package installed at $V1" test "$(ct dpkg-query -W -f '${Status} ${Version}' ble-exporter)" = "install ok installed $V1"
	check "bluez installed as a dependency" ct dpkg-query -W bluez
	check "/usr/bin/ble-exporter --version" ct_sh "/usr/bin/ble-exporter --version | grep -q '^ble-exporter '"
	# bleak 3 (forky) deprecates the adapter= keyword: the scanner, as the package builds it against the
	# installed bleak, must raise no warning (made only, not started: no adapter here).
	check "the BleakScanner of the package, on bleak $(ct dpkg-query -W -f '${Version}' python3-bleak), made with warnings as errors" \
		ct python3 -W error -c 'from ble_exporter.bluez import BluezScanner; from ble_exporter.scanner import ScanMode
for mode in ScanMode.PASSIVE, ScanMode.ACTIVE: BluezScanner("hci0", mode, lambda *a: None)._new_scanner(mode)'
	check "$CONF is a conffile" ct_sh "dpkg-query -W -f '\${Conffiles}' ble-exporter | grep -q ' $CONF '"
	check "the shipped config passes check-config" ct /usr/bin/ble-exporter check-config --config "$CONF"
	check "$CONF root:ble-exporter 640 (its bindkeys readable by the service only)" config_mode "root:ble-exporter 640"
	check "system user ble-exporter in group bluetooth" ct_sh \
		"id ble-exporter && id -nG ble-exporter | tr ' ' '\n' | grep -qx bluetooth && \
		 getent passwd ble-exporter | grep -q ':/usr/sbin/nologin$'"
	check "/var/log/ble-exporter owned by ble-exporter" test "$(ct stat -c %U /var/log/ble-exporter)" = ble-exporter
	check "logrotate snippet, tmpfiles, sysusers, man page installed" ct test -f /etc/logrotate.d/ble-exporter \
		-a -f /usr/lib/tmpfiles.d/ble-exporter.conf -a -f /usr/lib/sysusers.d/ble-exporter.conf \
		-a -f /usr/share/man/man1/ble-exporter.1.gz
	check "logrotate accepts the snippet" ct logrotate --debug /etc/logrotate.d/ble-exporter
	check "unit enabled" test "$(ct systemctl is-enabled $UNIT)" = enabled
	check "systemd-analyze verify $UNIT" ct_sh "systemd-analyze verify --man=no $UNIT 2>&1 | tee /tmp/verify.log; ! test -s /tmp/verify.log"
	# The exporter shares the host's network here: move it to a free port; and scan every 6 s,
	# so the log grows quickly (step 3 rotates it). This is also the local edit of the conffile
	# that the upgrade must keep.
	ct systemctl stop $UNIT
	check "local config edit: listen_port $PORT, a scan every 6 s; check-config accepts it" ct_sh \
		"sed -i -e 's/^listen_port: .*/listen_port: $PORT  # deb-test local edit/' \
			-e 's/^scan_interval_seconds: .*/scan_interval_seconds: 6/' -e 's/^scan_duration_seconds: .*/scan_duration_seconds: 2/' $CONF \
		 && grep -q '# deb-test local edit' $CONF && ble-exporter check-config --config $CONF"
	# An administrator (the Pi's first user) edits it the way the README says.
	check "sudoedit by an administrator: edited, still root:ble-exporter 640" ct_sh \
		"apt-get install -y -q sudo >/tmp/apt-sudo.log 2>&1 && useradd -m -G sudo admin && echo 'admin ALL=(ALL) NOPASSWD: ALL' >/etc/sudoers.d/deb-test && \
		 runuser -u admin -- env SUDO_EDITOR=/debs/edit-config.sh sudoedit $CONF && \
		 grep -q '^scan_duration_seconds: 2  # sudoedit' $CONF && test \"\$(stat -c '%U:%G %a' $CONF)\" = 'root:ble-exporter 640'"
}

config_mode() { test "$(ct stat -c '%U:%G %a' $CONF)" = "$1"; }

# status_shows_error FILE: `systemctl status` (saved in FILE) says failed and shows the daemon's
# error, as a journal line or as its STATUS= text.
status_shows_error() {
	ct systemctl status --no-pager -l $UNIT >"$1"
	grep -q 'Active: failed' "$1" && grep -qiE '(error: |Status: ").*(adapter|bluetooth|bluez)' "$1" && return 0
	cat "$1"
	return 1
}

step_no_bluetooth() {
	local burst
	burst=$(show $UNIT StartLimitBurst)
	check "shipped unit: Restart=on-failure, RestartSec=$(show $UNIT RestartUSec), start limit $burst in $(show $UNIT StartLimitIntervalUSec)" \
		test "$(show $UNIT Restart)" = on-failure
	ct systemctl reset-failed $UNIT 2>/dev/null
	local since t first
	since=$(ct date '+%Y-%m-%d %H:%M:%S')
	t=$(date +%s.%N)
	check "systemctl start fails (no adapter)" ct_sh "! systemctl start $UNIT 2>/dev/null"
	first=$(elapsed "$t")
	say "       first start failed after $first s: $(show $UNIT Result), exit status $(show $UNIT ExecMainStatus)"
	check "fails fast (first start failed in < 10 s)" awk -v e="$first" 'BEGIN { exit !(e < 10) }'
	check "exit status 1 (Bluetooth failure)" test "$(show $UNIT ExecMainStatus)" = 1
	# Again with a shorter restart delay, so the start limit is reached in seconds (burst and
	# interval kept).
	ct systemctl stop $UNIT
	ct mkdir -p "$DROPIN"
	ct_sh "printf '[Service]\nRestartSec=1s\n' >$DROPIN/50-deb-test-fast-restart.conf"
	ct systemctl daemon-reload
	ct systemctl reset-failed $UNIT 2>/dev/null
	since=$(ct date '+%Y-%m-%d %H:%M:%S')
	ct systemctl start $UNIT 2>/dev/null
	# Restarted until the start limit: systemd logs "Start request repeated too quickly" and
	# leaves the unit failed. Enough time for the burst at the pace of the first failure.
	local budget
	budget=$(awk -v e="$first" -v n="$burst" 'BEGIN { b = n * (e + 3) + 20; print int(b < 240 ? b : 240) }')
	local seen=() n last=""
	wait_for "$budget" ct_sh "journalctl -u $UNIT --since '$since' --no-pager -o cat | grep -q 'Start request repeated too quickly'" &
	local waiter=$!
	while kill -0 $waiter 2>/dev/null; do
		n=$(show $UNIT NRestarts)
		if [[ $n != "$last" ]]; then
			seen+=("$n")
			last=$n
		fi
		sleep 0.3
	done
	wait $waiter
	local limit_rc=$?
	sleep 2 # no further restart after the limit
	say "       NRestarts seen: ${seen[*]}; now $(show $UNIT NRestarts), $(show $UNIT ActiveState) ($(show $UNIT Result))"
	check "restarted by systemd (NRestarts grew to $burst)" test "$(show $UNIT NRestarts)" = "$burst"
	check "stopped at the start limit (\"Start request repeated too quickly\", failed, no more restarts)" \
		test "$limit_rc/$(show $UNIT ActiveState)/$(show $UNIT NRestarts)" = "0/failed/$burst"
	ct_sh "journalctl -u $UNIT --since '$since' --no-pager -o cat" >"$WORK/journal-no-bt.log"
	local err
	err=$(grep -m 1 'ble-exporter: error:' "$WORK/journal-no-bt.log")
	say "       journal: ${err:-<no error line>}"
	check "clear error in journalctl -u ble-exporter" grep -qiE 'ble-exporter: error: .*(adapter|bluetooth|bluez)' "$WORK/journal-no-bt.log"
	# systemctl status (systemd 252) shows only journal lines newer than the unit's last exit from
	# the inactive state, which each automatic restart moves past the daemon's own lines; the reason
	# stays visible as the daemon's STATUS= text ("Status: ..."), which outlives the process.
	check "systemctl status after the start limit: failed, and still shows the error" status_shows_error "$WORK/status-limit.log"
	ct systemctl stop $UNIT
	ct rm -f "$DROPIN/50-deb-test-fast-restart.conf"
}

step_simulate() {
	ct_sh "printf '[Service]\nExecStart=\nExecStart=/usr/bin/ble-exporter run --config $CONF --simulate\nWatchdogSec=4s\n' \
		>$DROPIN/50-deb-test-simulate.conf"
	ct systemctl stop $UNIT
	ct systemctl daemon-reload
	ct systemctl reset-failed $UNIT
	local t since
	t=$(date +%s.%N)
	since=$(ct date '+%Y-%m-%d %H:%M:%S')
	check "systemctl start (--simulate drop-in) returns once READY=1" ct systemctl start $UNIT
	say "       ready after $(elapsed "$t") s"
	local pid
	pid=$(show $UNIT MainPID)
	check "active (running)" test "$(show $UNIT ActiveState)/$(show $UNIT SubState)" = active/running
	ct cat "/proc/$pid/status" >"$WORK/proc-status" 2>/dev/null
	local uid
	uid=$(ct id -u ble-exporter)
	say "       MainPID $pid: $(grep -E '^(Uid|Gid|Groups|CapEff|CapPrm|CapBnd|NoNewPrivs)' "$WORK/proc-status" | tr -s '\t' ' ' | tr '\n' ';')"
	check "runs as ble-exporter (uid $uid)" test "$(awk '/^Uid:/ { print $2 $3 $4 $5 }' "$WORK/proc-status")" = "$uid$uid$uid$uid"
	check "no capabilities (CapEff, CapPrm, CapBnd all 0)" test \
		"$(awk '/^Cap(Eff|Prm|Bnd|Amb):/ { print $2 }' "$WORK/proc-status" | sort -u)" = 0000000000000000
	check "NoNewPrivs" grep -qE '^NoNewPrivs:\s+1' "$WORK/proc-status"
	# Under the unit's hardening (syscall filter, namespaces, ...) of this release's systemd: nothing
	# in the unit's journal but systemd's own start lines, so no directive it skipped or failed and
	# no Python warning on stderr.
	check "the unit's journal since the start: no directive refused or skipped, no warning" ct_sh \
		"journalctl -u $UNIT --since '$since' --no-pager -o cat >/tmp/journal-start.log; \
		 ! grep -iE 'warn|deprecat|ignor|unknown|fail|not permitted|denied|bad system call|error' /tmp/journal-start.log \
		 || { cat /tmp/journal-start.log; false; }"
	say "       journal: $(ct_sh "tr '\n' '|' </tmp/journal-start.log")"
	check "/healthz: 200 OK" ct_sh "test \"\$(curl -fsS http://127.0.0.1:$PORT/healthz)\" = OK"
	check "/status: JSON with the spec's keys" ct_sh "curl -fsS http://127.0.0.1:$PORT/status | python3 -c \
		'import json, sys; d = json.load(sys.stdin); assert {\"scan_interval_seconds\", \"scan_duration_seconds\", \"last_scan_timestamp\", \"devices_seen\"} <= set(d), d'"
	check "/metrics has readings (within 20 s)" wait_for 20 ct_sh \
		"curl -fsS http://127.0.0.1:$PORT/metrics >/tmp/metrics && grep -qE '^ble_sensor_temperature_celsius\{' /tmp/metrics \
		 && grep -qE '^ble_sensor_humidity_percent\{' /tmp/metrics"
	say "       $(ct_sh "grep -E '^ble_sensor_temperature_celsius' /tmp/metrics | head -n 1")"
	check "/status reports devices seen" ct_sh "curl -fsS http://127.0.0.1:$PORT/status | python3 -c \
		'import json, sys; d = json.load(sys.stdin); assert d[\"devices_seen\"] > 0, d'"
	check "log file written under /var/log/ble-exporter, owned by ble-exporter" ct_sh \
		"test -s /var/log/ble-exporter/ble-exporter.log && test \"\$(stat -c %U /var/log/ble-exporter/ble-exporter.log)\" = ble-exporter"
	say "       log: $(ct tail -n 1 /var/log/ble-exporter/ble-exporter.log)"
	check "logrotate -f: the rotated log is kept, and the exporter writes to a new file" ct_sh \
		"logrotate -f /etc/logrotate.d/ble-exporter && test -s /var/log/ble-exporter/ble-exporter.log.1"
	check "the exporter reopened its log after the rotation (within 15 s)" wait_for 15 ct_sh \
		"test -s /var/log/ble-exporter/ble-exporter.log && test \"\$(stat -c %U /var/log/ble-exporter/ble-exporter.log)\" = ble-exporter"
	ct systemctl reload $UNIT
	check "systemctl reload: the config re-read by the same process (within 10 s)" wait_for 10 ct_sh \
		"test \"\$(systemctl show -p MainPID --value $UNIT)\" = $pid && \
		 grep -q 'reload: config' /var/log/ble-exporter/ble-exporter.log"
	# WatchdogSec=4s in the drop-in: still the same process 6 s after the start means it pings.
	sleep "$(awk -v e="$(elapsed "$t")" 'BEGIN { r = 6 - e; print (r > 0 ? r : 0) }')"
	check "watchdog pinged (same MainPID after 6 s with WatchdogSec=4s, no restart)" \
		test "$(show $UNIT MainPID)/$(show $UNIT NRestarts)" = "$pid/0"
}

collect_v2() {
	wait "$BUILD2_PID"
	local rc=$?
	BUILD2_PID=""
	if ((rc != 0)); then
		cat "$WORK/build-v2.log"
		return 1
	fi
	DEB2=$(ls "$WORK"/v2/ble-exporter_*-"$REV2"_all.deb) || return 1
	V2=$(dpkg-deb -f "$DEB2" Version)
	cp "$DEB2" "$WORK/debs/"
	dpkg --compare-versions "$V2" gt "$V1"
}

step_upgrade_purge() {
	check "rebuilt a higher revision than $V1" collect_v2
	say "       rebuilt ${V2:-?} in $(cat "$WORK/build-v2.seconds" 2>/dev/null) s (in the background)"
	local pid
	pid=$(show $UNIT MainPID)
	check "apt install ./$(basename "$DEB2") (upgrade)" ct_sh \
		"cd /debs && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./$(basename "$DEB2") \
			>/tmp/apt-upgrade.log 2>&1 || { tail -n 40 /tmp/apt-upgrade.log; false; }"
	check "package upgraded to $V2" test "$(ct dpkg-query -W -f '${Version}' ble-exporter)" = "$V2"
	check "local config edit kept (conffile)" ct grep -q "^listen_port: $PORT  # deb-test local edit" $CONF
	check "$CONF root:ble-exporter 640 after the upgrade" config_mode "root:ble-exporter 640"
	check "no .dpkg-new/.dpkg-dist left" ct_sh "! ls /etc/ble-exporter/*.dpkg-* 2>/dev/null"
	check "service restarted by the upgrade and active" \
		sh -c "test \"\$(nsenter -t $LEADER -a systemctl show -p ActiveState --value $UNIT)\" = active && \
		       test \"\$(nsenter -t $LEADER -a systemctl show -p MainPID --value $UNIT)\" != $pid"
	check "/healthz after the upgrade" wait_for 10 ct_sh "test \"\$(curl -fsS http://127.0.0.1:$PORT/healthz)\" = OK"
	check "a dpkg-statoverride of $CONF (root:ble-exporter 440) survives a reinstall" ct_sh \
		"dpkg-statoverride --update --add root ble-exporter 0440 $CONF && \
		 DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall /debs/$(basename "$DEB2") >/tmp/apt-reinstall.log 2>&1 && \
		 test \"\$(stat -c '%U:%G %a' $CONF)\" = 'root:ble-exporter 440' && dpkg-statoverride --remove $CONF"
	check "/healthz after the reinstall" wait_for 10 ct_sh "test \"\$(curl -fsS http://127.0.0.1:$PORT/healthz)\" = OK"
	local t
	t=$(date +%s.%N)
	check "clean stop on SIGTERM (exit status 0)" sh -c \
		"nsenter -t $LEADER -a systemctl stop $UNIT && \
		 test \"\$(nsenter -t $LEADER -a systemctl show -p Result --value $UNIT)\" = success"
	say "       stopped in $(elapsed "$t") s"
	check "apt purge ble-exporter" ct_sh \
		"DEBIAN_FRONTEND=noninteractive apt-get purge -y -q ble-exporter >/tmp/apt-purge.log 2>&1 || { tail -n 40 /tmp/apt-purge.log; false; }"
	check "package gone" ct_sh "! dpkg-query -W -f '\${Status}' ble-exporter 2>/dev/null | grep -q installed"
	check "config removed (/etc/ble-exporter)" ct test ! -e /etc/ble-exporter
	check "logs removed (/var/log/ble-exporter)" ct test ! -e /var/log/ble-exporter
	check "unit gone" test "$(show $UNIT LoadState)" = not-found
	check "no ble-exporter process left" ct_sh "! pgrep -u ble-exporter >/dev/null"
}

# --- under qemu-user (no systemd): the package and the program, as the service user ------------

as_user() { ct runuser -u ble-exporter -- env HOME=/tmp SHELL=/bin/sh "$@"; }
as_user_sh() { as_user sh -c "$1"; }
# The machine (ELF e_machine) of a file in the container: "b7 00" is aarch64, "3e 00" x86-64.
elf_machine() { ct od -An -tx1 -j18 -N2 "$1" | tr -s ' ' | sed 's/^ //'; }

step_install_emulated() {
	check "the tree is $ARCH: /usr/bin/python3 is an aarch64 ELF" test "$(elf_machine "$(ct readlink -f /usr/bin/python3)")" = "b7 00"
	check "apt install ./ble-exporter_${V1}_all.deb (its dependencies, installed with apt into the cached layer)" ct_sh \
		"cd /debs && apt-get install -y -q ./ble-exporter_${V1}_all.deb >/tmp/apt-install.log 2>&1 || { tail -n 40 /tmp/apt-install.log; false; }"
	say "       $(ct_sh "grep -E '^(Need to get|After this operation|[0-9]+ upgraded)' /tmp/apt-install.log | tr '\n' ' '")"
	check "package installed at $V1" test "$(ct dpkg-query -W -f '${Status} ${Version}' ble-exporter)" = "install ok installed $V1"
	check "unit installed under /usr/lib/systemd/system and enabled for the next boot" ct test -f /usr/lib/systemd/system/$UNIT \
		-a -L /etc/systemd/system/multi-user.target.wants/$UNIT
	check "system user ble-exporter in group bluetooth" ct_sh "id -nG ble-exporter | tr ' ' '\n' | grep -qx bluetooth"
	check "ble-exporter --version (as ble-exporter)" as_user_sh "ble-exporter --version | grep -q '^ble-exporter '"
	say "       $(as_user ble-exporter --version)"
	check "check-config of the shipped config (as ble-exporter)" as_user ble-exporter check-config --config "$CONF"
	check "$CONF root:ble-exporter 640" config_mode "root:ble-exporter 640"
	check "local config edit: listen_port $PORT; check-config accepts it" ct_sh \
		"sed -i 's/^listen_port: .*/listen_port: $PORT  # deb-test local edit/' $CONF && ble-exporter check-config --config $CONF"
}

# Under qemu-user the interpreter's /proc/self is qemu's emulation: the process_* collector reads
# what qemu shows, so those values are reported, not checked.
step_simulate_emulated() {
	local t pid python
	t=$(date +%s.%N)
	# (the PID is the exporter's own: the user's shell writes it, then becomes the exporter)
	ct_sh "runuser -u ble-exporter -- setsid sh -c 'echo \$\$ >/tmp/run.pid; exec ble-exporter run --config $CONF \
		--simulate --log-file /tmp/sim.log' >/tmp/run.out 2>&1 </dev/null &"
	check "run --simulate (as ble-exporter): /healthz 200 OK within 120 s" wait_for 120 ct_sh \
		"test \"\$(curl -fsS http://127.0.0.1:$PORT/healthz)\" = OK"
	say "       /healthz after $(elapsed "$t") s"
	pid=$(ct cat /tmp/run.pid)
	say "       exporter PID $pid: $(ct_sh "tr '\\0' ' ' </proc/$pid/cmdline")"
	check "the exporter runs as ble-exporter" test "$(ct awk '/^Uid:/ { print $2 }' "/proc/$pid/status")" = "$(ct id -u ble-exporter)"
	# (its /proc/PID/exe is qemu's own binary: the aarch64 interpreter shows among its mappings)
	python=$(ct readlink -f /usr/bin/python3)
	check "the exporter runs $python (aarch64, checked above) under qemu-user" ct grep -q " $python\$" "/proc/$pid/maps"
	check "/metrics: temperature, humidity, battery of the 3 demo sensors (within 60 s)" wait_for 60 ct_sh \
		"curl -fsS http://127.0.0.1:$PORT/metrics >/tmp/metrics && \
		 test \$(grep -cE '^ble_sensor_(temperature_celsius|humidity_percent|battery_percent)\{device=\"demo_' /tmp/metrics) = 9"
	say "       $(ct_sh "grep -E '^ble_sensor_temperature_celsius' /tmp/metrics | tr '\n' ' '")"
	check "/metrics: build_info names $(ct python3 -c 'import platform; print(platform.python_version())')" ct_sh \
		"grep -E '^ble_exporter_build_info\{' /tmp/metrics | grep -q \"python_version=\\\"\$(python3 -c 'import platform; print(platform.python_version())')\\\"\""
	check "/metrics: values are numbers in range (temperature -40..85, humidity 0..100)" ct_sh \
		"awk '/^ble_sensor_temperature_celsius/ && (\$2 < -40 || \$2 > 85) { exit 1 } /^ble_sensor_humidity_percent/ && (\$2 < 0 || \$2 > 100) { exit 1 }' /tmp/metrics"
	say "       not checked under qemu-user: $(ct_sh "grep -E '^process_(resident_memory_bytes|cpu_seconds_total|open_fds) ' /tmp/metrics | tr '\n' ' '")(qemu's emulated /proc)"
	check "/status: the spec's keys, 3 devices seen" ct_sh "curl -fsS http://127.0.0.1:$PORT/status | python3 -c \
		'import json, sys; d = json.load(sys.stdin); assert {\"scan_interval_seconds\", \"scan_duration_seconds\", \"last_scan_timestamp\", \"devices_seen\"} <= set(d) and d[\"devices_seen\"] == 3, d'"
	check "SIGTERM: clean stop (process gone within 20 s, \"stopped\" logged)" ct_sh "kill -TERM $pid; for i in \$(seq 1 100); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done; \
		! kill -0 $pid 2>/dev/null && grep -q 'stopped' /tmp/sim.log"
	# watch in tmux: the three demo sensors with a temperature, then q quits
	ct_sh "runuser -u ble-exporter -- env HOME=/tmp SHELL=/bin/sh TERM=xterm tmux new-session -d -s watch -x 100 -y 30 \
		'ble-exporter watch --simulate --config $CONF; echo exit=\$? >/tmp/watch.exit; sleep 30'"
	check "watch --simulate (as ble-exporter, tmux): 3 demo sensors with temperatures (within 90 s)" wait_for 90 ct_sh \
		"runuser -u ble-exporter -- tmux capture-pane -p -t watch >/tmp/watch.txt && \
		 test \$(grep -cE '^demo_[a-z_…]+ +A4:C1:38:00:00:0[1-3] +-?[0-9]+\.[0-9]{2}' /tmp/watch.txt) = 3"
	say "       $(ct_sh "grep -m 1 '^ble-exporter watch' /tmp/watch.txt")"
	ct_sh "runuser -u ble-exporter -- tmux send-keys -t watch q"
	check "watch: q quits with status 0" wait_for 20 ct_sh "grep -qx 'exit=0' /tmp/watch.exit"
	ct_sh "runuser -u ble-exporter -- tmux kill-server" 2>/dev/null
}

if [[ $MODE == booted ]]; then
	step "1 install" step_install || die "install failed; later steps need it"
	step "2 no Bluetooth adapter: fails fast, restarted until the start limit" step_no_bluetooth
	step "3 simulate: active, unprivileged, endpoints, log file" step_simulate
	step "4 upgrade keeps the edited conffile; purge removes config and logs" step_upgrade_purge
else
	step "1 install ($ARCH, qemu-user)" step_install_emulated || die "install failed; later steps need it"
	step "2 run and watch --simulate as the service user ($ARCH, qemu-user)" step_simulate_emulated
fi

echo
say "summary:"
for r in "${RESULTS[@]}"; do
	echo "  $r"
done
if ((FAILED)); then
	say "deb-test ($RELEASE/$ARCH): FAIL"
else
	say "deb-test ($RELEASE/$ARCH): PASS"
fi
echo "deb-test: $CHECKS_PASSED passed, $CHECKS_FAILED failed"
exit $FAILED
