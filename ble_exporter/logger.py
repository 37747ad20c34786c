"""The file-only log of the spec, which keeps working when logrotate moves the file or the disk fills."""

from __future__ import annotations

import contextlib
import errno
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
    """What opening `path` for logging runs into, found by doing what `setup_logging` will do (create
    the missing directories, open the file for append) and undoing it: so `check-config` and a reload
    find exactly what `run` would, on any filesystem (read-only, /proc), and leave nothing behind."""
    error = _try_opening(Path(path))
    if error is None:
        return None
    if error.errno in (errno.EACCES, errno.EPERM):
        return _permission_problem(path) or LogFileProblem(
            f"log file {path} cannot be written (permission denied); fix its owner or choose another path", True
        )
    return _shape_problem(path) or LogFileProblem(
        f"log file {path} cannot be written ({error.strerror}); choose another path", False
    )


def _try_opening(target: Path) -> OSError | None:
    made: list[Path] = []
    created: Path | None = None
    try:
        for directory in reversed(target.parents):
            if not directory.is_dir():
                directory.mkdir()
                made.append(directory)
        if not target.exists():  # (through a symlink, the file it names: the one to remove again)
            created = Path(os.path.realpath(target))
        os.close(os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _OPEN_FLAGS, 0o644))
    except OSError as e:
        created = None
        return e
    finally:
        with contextlib.suppress(OSError):
            if created is not None:
                created.unlink()
            for directory in reversed(made):
                directory.rmdir()
    return None


# Never block on a FIFO nobody reads, nor take a terminal as the controlling one.
_OPEN_FLAGS = os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


def _nearest_existing(target: Path) -> tuple[Path, int] | OSError:
    """The nearest part of the path that exists, with its mode (or the error that stops us looking)."""
    for existing in (target, *target.parents):
        try:
            return existing, existing.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            return e
    return target.parents[-1], stat.S_IFDIR


def _shape_problem(path: str) -> LogFileProblem | None:
    """A path that is a directory or lies under a file: in words, with the fix."""
    target = Path(path)
    found = _nearest_existing(target)
    if isinstance(found, OSError):
        return None
    existing, mode = found
    if existing == target and stat.S_ISDIR(mode):
        return LogFileProblem(
            f"log file {path} is a directory; name a file in it, e.g. {target / 'ble-exporter.log'}", False
        )
    if existing != target and not stat.S_ISDIR(mode):
        return LogFileProblem(
            f"log file {path} cannot be created: {existing} is a file, not a directory; choose another path", False
        )
    return None


def _permission_problem(path: str) -> LogFileProblem | None:
    """Which permission stops this user: in words, with the fix (another user may well succeed)."""
    target = Path(path)
    found = _nearest_existing(target)
    if isinstance(found, OSError):
        return LogFileProblem(
            f"log file {path} cannot be reached ({str(found.strerror).lower()} on a directory above it); fix "
            "the directories' permissions or choose another path",
            True,
        )
    existing, _ = found
    if existing == target:
        return LogFileProblem(
            f"log file {path} cannot be written (permission denied); fix its owner or choose another path", True
        )
    missing = "" if existing == target.parent else f" (nor {target.parent} made there)"
    return LogFileProblem(
        f"log file {path} cannot be created in {existing}{missing} (permission denied); create the directory for "
        "the user that runs the exporter, or choose another path",
        True,
    )


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
