"""`make bench`: every measurement of issue 7, each in its own process, figures on stdout (~5 minutes).

Usage: python bench/run_all.py [parser receive bluez metrics daemon tls ab body]   (default: all, in that order)
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, commit

SCRIPTS = {
    "parser": "bench_parser.py",
    "receive": "bench_receive.py",
    "bluez": "bench_bluez.py",
    "metrics": "bench_metrics.py",
    "daemon": "bench_daemon.py",
    "tls": "bench_tls.py",
    "ab": "bench_ab.py",  # f200936 against this tree on Debian's python3 (issue 20)
    "body": "bench_body.py",  # what the size of /metrics alone costs, behind (7)'s kernel share
}


def main() -> int:
    chosen = sys.argv[1:] or list(SCRIPTS)
    print(f"ble-exporter benchmarks, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit()}")
    failed = []
    t0 = time.monotonic()
    for name in chosen:
        result = subprocess.run([sys.executable, str(ROOT / "bench" / SCRIPTS[name])], cwd=ROOT, check=False)
        if result.returncode != 0:
            failed.append(name)
    print(f"\nall done in {time.monotonic() - t0:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
