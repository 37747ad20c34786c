# Guest control: boot qemu, wait for ssh, run commands, stop qemu by PID. Source it after lib.sh.
# shellcheck shell=bash
#
#   vm_boot IMAGE_DIR RUN_DIR   boots the guest in the background (qemu's PID in $VM_PID)
#   vm_wait_ssh SECONDS         waits until ssh answers (fails early if qemu died)
#   vm_ssh CMD...               runs CMD in the guest as root (one shared ssh connection)
#   vm_put LOCAL REMOTE         copies a file into the guest
#   vm_get REMOTE LOCAL         copies a file out of the guest
#   vm_stop                     poweroff is not needed (snapshot=on): kills qemu by PID, waits
# vm_stop is idempotent; callers put it in their EXIT trap.

VM_PID=""
VM_RUN=""
VM_IMAGE=""
VM_SSH_PORT=""
VM_PORTS=""       # extra forwards, "host:guest host:guest"; set before vm_boot

vm_boot() {
    VM_IMAGE="$1"
    VM_RUN="$2"
    mkdir -p "$VM_RUN"
    VM_SSH_PORT="$(st_free_port)"
    command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
    local -a args
    # shellcheck disable=SC2086
    mapfile -d '' args < <(python3 "$ST_DIR/vm.py" qemu-args "$VM_IMAGE" "$VM_RUN" "$VM_SSH_PORT" $VM_PORTS)
    log "booting guest (${args[*]:10:2}, ssh on 127.0.0.1:$VM_SSH_PORT${VM_PORTS:+, forwards $VM_PORTS})"
    "${args[@]}" </dev/null >"$VM_RUN/qemu.log" 2>&1 &
    VM_PID=$!
    echo "$VM_PID" >"$VM_RUN/qemu.pid"
    echo "$VM_SSH_PORT" >"$VM_RUN/ssh_port"
}

vm_ssh_opts() {
    echo "-i $VM_IMAGE/id_ed25519 -p $VM_SSH_PORT -o BatchMode=yes -o StrictHostKeyChecking=no" \
        "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10" \
        "-o ServerAliveInterval=5 -o ServerAliveCountMax=6" \
        "-o ControlMaster=auto -o ControlPath=$VM_RUN/ssh.ctl -o ControlPersist=600"
}

vm_alive() { [ -n "$VM_PID" ] && kill -0 "$VM_PID" 2>/dev/null; }

vm_wait_ssh() {
    local limit="${1:-120}" start=$SECONDS
    while ((SECONDS - start < limit)); do
        vm_alive || { tail -20 "$VM_RUN/qemu.log" "$VM_RUN/console.log" >&2; die "qemu exited during boot"; }
        # shellcheck disable=SC2046
        if timeout 15 ssh $(vm_ssh_opts) root@127.0.0.1 true 2>/dev/null; then
            return 0
        fi
        sleep 2
    done
    tail -30 "$VM_RUN/console.log" >&2
    die "no ssh after ${limit}s"
}

# vm_ssh [-t SECONDS] CMD...   (default timeout 300 s; the command string runs under the guest's sh)
vm_ssh() {
    local t=300
    if [ "$1" = -t ]; then t="$2"; shift 2; fi
    # shellcheck disable=SC2046
    timeout "$t" ssh $(vm_ssh_opts) root@127.0.0.1 "$@"
}

vm_put() {
    # shellcheck disable=SC2046
    timeout 120 scp -q $(vm_ssh_opts | sed 's/-p /-P /') "$1" "root@127.0.0.1:$2"
}

vm_get() {
    # shellcheck disable=SC2046
    timeout 120 scp -q $(vm_ssh_opts | sed 's/-p /-P /') "root@127.0.0.1:$1" "$2"
}

vm_stop() {
    local pid mpid
    # the shared ssh connection: ask it to exit, then make sure by PID
    if [ -n "$VM_RUN" ] && [ -S "$VM_RUN/ssh.ctl" ]; then
        # shellcheck disable=SC2046
        mpid=$(ssh $(vm_ssh_opts) -O check root@127.0.0.1 2>&1 | sed -n 's/.*pid=\([0-9]*\).*/\1/p')
        # shellcheck disable=SC2046
        ssh $(vm_ssh_opts) -O exit root@127.0.0.1 >/dev/null 2>&1 || true
        if [ -n "$mpid" ] && kill -0 "$mpid" 2>/dev/null; then kill "$mpid" 2>/dev/null || true; fi
    fi
    pid="$VM_PID"
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    wait "$pid" 2>/dev/null || true
    VM_PID=""
    log "qemu (pid $pid) stopped"
}

# vm_put_dir LOCAL_DIR REMOTE_DIR   copies a directory's contents into the guest (tar over ssh)
vm_put_dir() {
    tar -C "$1" -cf - . | vm_ssh -t 120 "mkdir -p '$2' && tar -C '$2' -xf -"
}
