"""The system-test guest from Python: boot qemu, ssh into it, stop it by PID.

Also the single source of qemu's command line: `python3 vm.py qemu-args IMAGE RUN SSH_PORT [H:G ...]`
prints it NUL-separated for the shell helpers (vm.sh).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

KERNEL_CMDLINE = (
    "root=/dev/vda rw console=ttyS0,115200 quiet loglevel=4 mitigations=off net.ifnames=0 "
    "systemd.show_status=0 tsc=reliable"
)


def accel() -> str:
    """KVM only where the CPU really offers vmx/svm (a PVM-only /dev/kvm hangs a stock kernel)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if os.access("/dev/kvm", os.W_OK) and re.search(r"\b(vmx|svm)\b", flags):
        return "kvm"
    return "tcg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def qemu_args(image: str, run: str, ssh_port: int, forwards: list[tuple[int, int]], mem: int = 1024) -> list[str]:
    fwd = f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22"
    for host, guest in forwards:
        fwd += f",hostfwd=tcp:127.0.0.1:{host}-:{guest}"
    return [
        "qemu-system-x86_64",
        "-name",
        "ble-exporter-systemtest",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-accel",
        accel(),
        "-smp",
        "1",
        "-m",
        str(mem),
        "-kernel",
        f"{image}/vmlinuz",
        "-initrd",
        f"{image}/initrd.img",
        "-append",
        KERNEL_CMDLINE,
        "-drive",
        f"file={image}/rootfs.ext4,if=virtio,format=raw,snapshot=on",
        "-netdev",
        f"user,id=n0,restrict=on,{fwd}",
        "-device",
        "virtio-net-pci,netdev=n0",
        "-device",
        "virtio-rng-pci",
        "-serial",
        f"file:{run}/console.log",
        "-monitor",
        "none",
    ]


class GuestError(RuntimeError):
    pass


class VM:
    def __init__(self, image: str, run: str, forwards: list[tuple[int, int]] | None = None) -> None:
        self.image = image
        self.run = run
        self.forwards = forwards or []
        self.ssh_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        Path(run).mkdir(parents=True, exist_ok=True)

    # --- lifecycle ---
    def boot(self) -> None:
        args = qemu_args(
            self.image, self.run, self.ssh_port, self.forwards, int(os.environ.get("SYSTEMTEST_MEM", "1024"))
        )
        with open(f"{self.run}/qemu.log", "wb") as out:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        Path(f"{self.run}/qemu.pid").write_text(f"{self.proc.pid}\n")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ssh(self, limit: float = 180) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            if not self.alive():
                raise GuestError(f"qemu exited during boot (see {self.run}/qemu.log, console.log)")
            r = subprocess.run(
                self.ssh_cmd("true"), stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=30
            )
            if r.returncode == 0:
                return time.monotonic() - t0
            time.sleep(2)
        raise GuestError(f"no ssh after {limit:.0f}s (see {self.run}/console.log)")

    def stop(self) -> None:
        self._stop_ssh_master()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def _stop_ssh_master(self) -> None:
        ctl = Path(f"{self.run}/ssh.ctl")
        if not ctl.exists():
            return
        check = subprocess.run(
            [*self.ssh_base(), "-O", "check", "root@127.0.0.1"],
            capture_output=True,
            check=False,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
        m = re.search(r"pid=(\d+)", check.stderr + check.stdout)
        subprocess.run(
            [*self.ssh_base(), "-O", "exit", "root@127.0.0.1"],
            capture_output=True,
            check=False,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
        if m:
            pid = int(m.group(1))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    # --- ssh ---
    def ssh_base(self) -> list[str]:
        return [
            "ssh",
            "-i",
            f"{self.image}/id_ed25519",
            "-p",
            str(self.ssh_port),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=6",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self.run}/ssh.ctl",
            "-o",
            "ControlPersist=600",
        ]

    def ssh_cmd(self, command: str) -> list[str]:
        return [*self.ssh_base(), "root@127.0.0.1", command]

    def sh(self, command: str, timeout: float = 120, check: bool = True, input: bytes | None = None) -> str:
        """Run a shell command in the guest as root; return stdout (text)."""
        try:
            r = subprocess.run(
                self.ssh_cmd(command),
                input=input,
                capture_output=True,
                check=False,
                timeout=timeout,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise GuestError(f"guest command timed out after {timeout}s: {command}") from None
        out = r.stdout.decode(errors="replace")
        if check and r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip()
            raise GuestError(f"guest command failed ({r.returncode}): {command}\n{out.strip()}\n{err}".strip())
        return out

    def rc(self, command: str, timeout: float = 120) -> int:
        r = subprocess.run(
            self.ssh_cmd(command), capture_output=True, check=False, timeout=timeout, stdin=subprocess.DEVNULL
        )
        return r.returncode

    def put(self, local: str, remote: str) -> None:
        self.sh(f"cat > {shlex.quote(remote)}", input=Path(local).read_bytes())

    def put_dir(self, local: str, remote: str) -> None:
        tar = subprocess.run(["tar", "-C", local, "-cf", "-", "."], capture_output=True, check=True)
        self.sh(f"mkdir -p {shlex.quote(remote)} && tar -C {shlex.quote(remote)} -xf -", input=tar.stdout)


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "qemu-args":
        image, run, port = argv[1], argv[2], int(argv[3])
        forwards = [(int(p.split(":")[0]), int(p.split(":")[1])) for p in argv[4:]]
        sys.stdout.write(
            "\0".join(qemu_args(image, run, port, forwards, int(os.environ.get("SYSTEMTEST_MEM", "1024"))))
        )
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
