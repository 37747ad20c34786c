"""The file-only log of the spec, which keeps working when logrotate moves the file or the disk fills."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import stat
from dataclasses import dataclass
from pathlib import Path

HANDLER_NAME = "ble_exporter"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFileError(Exception):
    """The log file cannot be created or written."""


@dataclass(frozen=True)
class LogFileProblem:
    """Why the log file could not be opened at start-up."""

    message: str  # one line: what is wrong and the fix
    permission: bool  # only a matter of who writes it (another user may well succeed)


def log_file_problem(path: str) -> LogFileProblem | None:
    """What opening `path` for logging would run into, found without creating anything: so that
    `check-config` catches what `run` would, and `run` says it in words rather than an OS error."""
    target = Path(path)
    for existing in (target, *target.parents):  # the nearest part of the path that exists
        try:
            mode = existing.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            return LogFileProblem(
                f"log file {path} cannot be reached ({str(e.strerror).lower()} on a directory above it); fix "
                "the directories' permissions or choose another path",
                True,
            )
        break
    else:
        return None
    if existing == target:
        if stat.S_ISDIR(mode):
            return LogFileProblem(
                f"log file {path} is a directory; name a file in it, e.g. {target / 'ble-exporter.log'}", False
            )
        if not os.access(target, os.W_OK):
            return LogFileProblem(
                f"log file {path} cannot be written (permission denied); fix its owner or choose another path", True
            )
        return None
    if not stat.S_ISDIR(mode):
        return LogFileProblem(
            f"log file {path} cannot be created: {existing} is a file, not a directory; choose another path", False
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        missing = "" if existing == target.parent else f" (nor {target.parent} made there)"
        return LogFileProblem(
            f"log file {path} cannot be created in {existing}{missing} (permission denied); create the directory for "
            "the user that runs the exporter, or choose another path",
            True,
        )
    return None


class _QuietWatchedFileHandler(logging.handlers.WatchedFileHandler):
    """Reopens the file after rotation (WatchedFileHandler) and drops a record it cannot write (full
    disk, deleted directory) instead of printing a traceback: the scan loop must outlive its log."""

    dropped = 0  # records lost to write errors

    def handleError(self, record: logging.LogRecord) -> None:
        self.dropped += 1

    def emit(self, record: logging.LogRecord) -> None:
        try:
            super().emit(record)
        except OSError:  # the file could not be opened again (its directory is gone)
            self.handleError(record)

    def reopenIfNeeded(self) -> None:
        """WatchedFileHandler's check, which raises into the logging call when the moved file's last
        records cannot be flushed (full disk) or the new file cannot be created (directory gone)."""
        try:
            super().reopenIfNeeded()
        except OSError:
            stream, self.stream = self.stream, None  # its unflushable records are dropped with it
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def setup_logging(path: str | None, level: int = logging.INFO) -> logging.Handler:
    """Send every record of the process to `path` only (or to stderr when `path` is None).

    Calling it again replaces the previous handler rather than adding a second one.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    if path is None:
        handler = logging.StreamHandler()
    else:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            handler = _QuietWatchedFileHandler(path, encoding="utf-8")
        except OSError as e:
            raise LogFileError(f"log file {path} cannot be written ({e.strerror})") from None
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.set_name(HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
