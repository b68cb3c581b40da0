"""Reading files that someone else may have replaced: never blocking, never unbounded.

A trainer can turn any file in its trial folder into a FIFO, a directory or a
device (``os.mkfifo($MA2ML_STEPS_FILE)``), and a spool folder can hold
anything. ``open()`` of a FIFO blocks until a writer appears, so one such
file once wedged a worker for good: past ``timeoutSeconds``, its lease still
renewed, deaf to SIGTERM. Every file the worker reads from a trainer or from
disk it does not own is opened here: without blocking (``O_NONBLOCK``), then
refused unless it is a regular file, and read up to a bound.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

#: Flags of every read: a FIFO opens at once instead of waiting for a writer; a
#: terminal never becomes the worker's controlling terminal.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
#: Flags of a write into a folder a trainer can write to as well: a FIFO without a
#: reader fails (ENXIO) instead of blocking, a symbolic link is not followed.
_WRITE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_CLOEXEC
                | getattr(os, "O_NOFOLLOW", 0))


class NotRegularFileError(OSError):
    """The path names a FIFO, a directory, a device or a socket, not a regular file."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


@contextlib.contextmanager
def open_regular(path: Path | str) -> Iterator[int]:
    """A file descriptor of the regular file at ``path`` (``NotRegularFileError``
    otherwise, ``FileNotFoundError`` when there is none); never blocks."""
    fd = os.open(path, _READ_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{path} is {_kind(mode)}, not a regular file")
        yield fd
    finally:
        os.close(fd)


def read_regular(path: Path | str, max_bytes: int, offset: int = 0) -> bytes:
    """At most ``max_bytes`` of the regular file at ``path``, from ``offset``.

    Callers that must refuse a larger file ask for one byte more than they accept.
    """
    with open_regular(path) as fd:
        return _read(fd, max_bytes, offset)


def read_tail(path: Path | str, max_bytes: int) -> bytes:
    """The last ``max_bytes`` of the regular file at ``path`` (a log may be gigabytes)."""
    with open_regular(path) as fd:
        size = os.fstat(fd).st_size
        return _read(fd, max_bytes, max(0, size - max_bytes))


def _read(fd: int, max_bytes: int, offset: int) -> bytes:
    chunks, remaining = [], max_bytes
    while remaining > 0:
        chunk = os.pread(fd, min(remaining, 1 << 20), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def write_new(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` in a folder a trainer shares; ``OSError`` rather than
    blocking on a FIFO or following a link put there."""
    fd = os.open(path, _WRITE_FLAGS, 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(f"{path} is not a regular file")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
