"""Signals from the first moment of the process, before the event loop can take them.

A SIGTERM while a Pi Zero is still importing (a second or more) must stop the service cleanly, not
kill it with status 143; a SIGHUP (`systemctl reload`) during start-up must not end it (status 129,
which `Restart=on-failure` counts as clean, so the service would stay down) but be kept for later.
"""

from __future__ import annotations

import signal
from types import FrameType


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived before the event loop took the signals over."""


_reload_requested = False


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(0)


def _hup(signum: int, frame: FrameType | None) -> None:
    global _reload_requested  # noqa: PLW0603 - a signal handler has nowhere else to put it
    _reload_requested = True


def take_over(*, hup_reloads: bool) -> None:
    """SIGTERM and SIGINT raise Stopped; SIGHUP asks for a reload (`run`) or stops too (`watch`: the
    terminal hung up)."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _hup if hup_reloads else _stop)


def reload_requested() -> bool:
    """Whether a SIGHUP came before the event loop took over (and forget it)."""
    global _reload_requested
    requested, _reload_requested = _reload_requested, False
    return requested
