"""The file-only log: one handler, reopened after logrotate moves the file, silent on a dead disk."""

from __future__ import annotations

import errno
import io
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ble_exporter.logger import LogFileError, setup_logging


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_records_go_to_the_file_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep" / "dir" / "x.log"
    setup_logging(str(path))
    logging.getLogger("ble_exporter.test").warning("hello %s", "file")
    assert "WARNING ble_exporter.test: hello file" in path.read_text()
    captured = capsys.readouterr()
    assert "hello" not in captured.out + captured.err


def test_setup_twice_keeps_one_handler(tmp_path: Path) -> None:
    setup_logging(str(tmp_path / "a.log"))
    setup_logging(str(tmp_path / "b.log"))
    logging.getLogger("x").warning("once")
    assert "once" not in (tmp_path / "a.log").read_text()
    assert (tmp_path / "b.log").read_text().count("once") == 1


def test_reopens_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    setup_logging(str(path))
    logging.getLogger("x").warning("before")
    path.rename(tmp_path / "x.log.1")  # what logrotate does (without copytruncate)
    logging.getLogger("x").warning("after")
    assert "after" in path.read_text() and "after" not in (tmp_path / "x.log.1").read_text()


class FullDisk(io.StringIO):
    """A stream like a file on a full disk: every write fails with ENOSPC."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_write_failures_do_not_raise_or_print(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handler = setup_logging(str(tmp_path / "x.log"))
    handler.stream.close()  # type: ignore[attr-defined]
    handler.stream = FullDisk()  # type: ignore[attr-defined]
    for _ in range(3):
        logging.getLogger("x").error("disk is full")
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    assert handler.dropped == 3  # type: ignore[attr-defined]


def test_unwritable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LogFileError, match="cannot be written"):
        setup_logging(str(blocker / "x.log"))


def test_directory_removed_and_restored(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "x.log"
    handler = setup_logging(str(path))
    logging.getLogger("x").warning("before")
    shutil.rmtree(path.parent)
    for _ in range(3):
        logging.getLogger("x").warning("lost")  # must not raise into the caller (the scan loop)
    assert handler.dropped == 3  # type: ignore[attr-defined]
    path.parent.mkdir()
    logging.getLogger("x").warning("after")
    assert path.read_text().endswith("WARNING x: after\n")


def test_rotation_while_the_disk_is_full(tmp_path: Path) -> None:
    # The old file's records cannot be flushed when logrotate moves it: the handler lets them go
    # and opens the new file, instead of raising into the logging call.
    path = tmp_path / "x.log"
    handler = setup_logging(str(path))
    full = open("/dev/full", "a", encoding="utf-8")  # noqa: SIM115 - the handler owns (and closes) it
    handler.stream.close()  # type: ignore[attr-defined]
    handler.stream = full  # type: ignore[attr-defined]
    logging.getLogger("x").warning("lost")  # written into the buffer, the flush fails: dropped
    path.rename(tmp_path / "x.log.1")
    logging.getLogger("x").warning("after rotation")
    assert full.closed
    assert "after rotation" in path.read_text()
