"""What the system test's steps share: the step outcomes, logging, and waiting for a condition."""

from __future__ import annotations

import sys
import time

from vm import GuestError


class Failed(Exception):
    """A check failed; the message says what was expected and what was found."""


class Warn(Exception):
    """Not a failure, but worth a line in the summary (a known limitation, measured)."""


def since(t0: float) -> float:
    return time.monotonic() - t0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{since(T0):6.1f}s] {msg}", file=sys.stderr, flush=True)


T0 = time.monotonic()


def wait_for(what: str, fn, limit: float, every: float = 1.0):
    """Call fn until it returns something truthy; bounded by `limit` seconds."""
    t = time.monotonic()
    last_exc: Exception | None = None
    while since(t) < limit:
        try:
            r = fn()
            if r:
                return r
        except (GuestError, OSError, ValueError, KeyError) as e:
            last_exc = e
        time.sleep(every)
    raise Failed(
        f"timed out after {limit:.0f}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
    )
