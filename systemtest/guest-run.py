#!/usr/bin/python3
"""Boot the system-test guest, copy guest/ to /opt/systemtest and a script of yours to /tmp/x.sh,
run it as root (sh), print its output, stop the guest (by PID, on failure too).

  systemtest/guest-run.py SCRIPT [--release bookworm|trixie|forky] [--deb dist/ble-exporter.deb] [--timeout 500]

With --deb the package is copied to /tmp/ble-exporter.deb first (the script installs it if it wants).
Example: systemtest/guest-run.py systemtest/guest/repro-monitor-busy.sh
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from vm import VM  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("script")
    ap.add_argument(
        "--release", default=os.environ.get("SYSTEMTEST_RELEASE", "bookworm"), choices=["bookworm", "trixie", "forky"]
    )
    ap.add_argument("--deb")
    ap.add_argument("--timeout", type=float, default=500)
    args = ap.parse_args()
    image = subprocess.run(
        [str(HERE / "build-image.sh")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SYSTEMTEST_RELEASE": args.release},
    ).stdout.split()[-1]
    vm = VM(image, tempfile.mkdtemp(prefix="systemtest-guest-run."))
    try:
        vm.boot()
        print(f"# ssh up after {vm.wait_ssh(240):.1f}s; logs in {vm.run}", file=sys.stderr)
        vm.put_dir(str(HERE / "guest"), "/opt/systemtest")
        vm.put(args.script, "/tmp/x.sh")
        if args.deb:
            vm.put(args.deb, "/tmp/ble-exporter.deb")
        r = subprocess.run(vm.ssh_cmd("sh /tmp/x.sh 2>&1"), stdin=subprocess.DEVNULL, check=False, timeout=args.timeout)
        return r.returncode
    finally:
        vm.stop()


if __name__ == "__main__":
    sys.exit(main())
