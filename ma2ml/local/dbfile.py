"""Notice when the SQLite file of a running ``ma2ml run`` is deleted or replaced.

Open connections keep writing into a deleted file (its inode lives on until
the last one closes), so a run whose database was removed or swapped
underneath it would finish "successfully" into nothing, and anything that
opened the path afterwards would see another store. ``DatabaseFileWatch``
remembers the file's identity (device and inode) when the run starts and
raises ``DatabaseFileError`` when the path no longer leads to that file, so
the run stops loudly instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from ma2ml.store.engine import sqlite_file


class DatabaseFileError(RuntimeError):
    """The run's SQLite file was deleted or replaced while the run used it."""


class DatabaseFileWatch:
    """The identity of a run's SQLite file; ``check`` raises once it changed.

    Other databases (PostgreSQL, in-memory SQLite) have no file to watch.
    """

    def __init__(self, url: str) -> None:
        self.path = sqlite_file(url)
        self._identity = self._stat() if self.path is not None else None

    def _stat(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_dev, stat.st_ino

    def check(self) -> None:
        """Raise ``DatabaseFileError`` when the file was deleted or replaced."""
        if self.path is None or self._identity is None:
            return
        now = self._stat()
        if now == self._identity:
            return
        what = "deleted" if now is None else "replaced by another file"
        raise DatabaseFileError(
            f"the database file {_shown(self.path)} was {what} during the run; stopped the "
            f"run (results written since then are lost with the old file). Restore the "
            f"file or run again to start over")


def _shown(path: Path) -> str:
    return str(path.resolve(strict=False))
