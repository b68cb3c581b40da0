"""One learner per search: a lock held for as long as a learner drives it.

Two learners of one search both propose trial number N (the second crashes on
the unique constraint) and both hand out trials, so some are trained twice.
``LearnerLock`` makes the second one find out before it touches the search:

* PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a
  connection held for the whole run. The server drops it when that session
  ends, so a learner killed -9 leaves no stale lock behind. An outage ends the
  session too: ``keep`` takes the lock again once the database answers, and
  raises ``LearnerBusyError`` if another learner took it meanwhile. ``ma2ml
  run`` calls ``keep`` on every tick of its loop; a learner process's lock
  (``wait_for_lock``) calls it every ``KEEP_SECONDS`` from a thread of its own
  while it is entered, and sets the learner's ``stop`` when it is lost.
* SQLite: ``flock`` on a small file beside the database (hidden,
  ``.<db>-learner-<hash>.lock``), released by the kernel when the process
  dies. The file is never deleted: removing a lock file while others may have
  it open lets two processes hold "the" lock on two different files.
* An in-memory SQLite database is private to its process: nothing to lock.

The lock is keyed by the search's *name*, not its id, so it is taken before
the search is created, replaced or reopened. ``ma2ml run`` refuses when it is
taken; a learner process (``ma2ml learner``, the learner pod) waits for it
(``wait_for_lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from pathlib import Path
from types import TracebackType

from sqlalchemy import Connection, exc, text

from ma2ml.store.backoff import backoff_delays
from ma2ml.store.engine import masked_url, sqlite_file, translate_errors
from ma2ml.store.errors import LearnerBusyError, StoreError, StoreUnavailableError
from ma2ml.store.store import Store

log = logging.getLogger(__name__)

#: Seconds between a learner process's checks that its lock is still its own (``keep``).
KEEP_SECONDS = 1.0


def lock_key(search: str) -> int:
    """A signed 64-bit advisory lock key for ``search`` (PostgreSQL's bigint)."""
    digest = hashlib.sha256(f"ma2ml-learner:{search}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_file(database: Path, search: str) -> Path:
    """The SQLite lock file of ``search`` beside ``database``."""
    digest = hashlib.sha256(search.encode()).hexdigest()[:16]
    return database.parent / f".{database.name}-learner-{digest}.lock"


class LearnerLock:
    """``with LearnerLock(store, "ns/name"):`` this process is the search's only learner.

    Entering raises ``LearnerBusyError`` (one line: who to stop) when another
    process holds it; ``StoreUnavailableError`` when the database cannot be reached.

    ``stop`` (a learner's stop event): while entered, a thread calls ``keep`` every
    ``KEEP_SECONDS``, and when another learner took the search over it sets ``stop``
    and keeps the error in ``lost``. Without it the caller calls ``keep`` itself.
    """

    def __init__(self, store: Store, search: str,
                 stop: threading.Event | None = None) -> None:
        self.store, self.search = store, search
        self.key = lock_key(search)
        self.stop = stop
        self.lost: LearnerBusyError | None = None
        self._connection: Connection | None = None
        self._fd: int | None = None
        self._lost = False
        self._keeping: tuple[threading.Thread, threading.Event] | None = None

    def __enter__(self) -> LearnerLock:
        self.acquire()
        if self.stop is not None and self.store.engine.dialect.name == "postgresql":
            done = threading.Event()
            thread = threading.Thread(target=self._keep_until, args=(done,), daemon=True,
                                      name="ma2ml-learner-lock")
            thread.start()
            self._keeping = (thread, done)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._keeping is not None:
            thread, done = self._keeping
            done.set()
            thread.join()  # it may be in ``keep``: the connection is released after it
            self._keeping = None
        self.release()

    def _keep_until(self, done: threading.Event) -> None:
        """``keep`` every ``KEEP_SECONDS`` until ``done``; a lost lock sets ``stop``."""
        assert self.stop is not None
        while not done.wait(KEEP_SECONDS):
            try:
                self.keep()
            except LearnerBusyError as exc:
                self.lost = exc
                log.error("%s", exc)
                self.stop.set()
                return
            except StoreError as exc:  # not an outage and not taken: checked again next time
                log.warning("search %s: could not check its learner lock: %s",
                            self.search, exc)

    def _busy(self) -> LearnerBusyError:
        return LearnerBusyError(
            f"search {self.search} in {masked_url(self.store.engine.url)} already has a "
            f"learner (another `ma2ml run` of it, or its learner pod); wait for it to end "
            f"or stop it, then run again")

    def acquire(self) -> None:
        """Take the lock now or raise ``LearnerBusyError`` (held already: nothing to do)."""
        if self._connection is not None or self._fd is not None:
            return
        if self.store.engine.dialect.name == "postgresql":
            self._acquire_postgres()
            return
        path = sqlite_file(self.store.engine.url)
        if path is None:
            return
        target = lock_file(path, self.search)
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy() from None
        self._fd = fd

    def _acquire_postgres(self) -> None:
        with translate_errors():
            connection = self.store.engine.connect()
        try:
            with translate_errors():
                held = connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                          {"key": self.key}).scalar()
                connection.commit()  # a session lock outlives the transaction
        except BaseException:
            _discard(connection)
            raise
        if not held:
            _discard(connection)
            raise self._busy()
        self._connection = connection

    def keep(self) -> None:
        """Check the lock is still ours (call it now and then while learning).

        PostgreSQL only has something to check: a lost session is retaken once the
        database answers; ``LearnerBusyError`` when another learner has it by then.
        During an outage nothing is raised (nobody can act on the search meanwhile).
        """
        if self.store.engine.dialect.name != "postgresql":
            return
        if self._connection is not None and not self._lost:
            try:
                with translate_errors():
                    self._connection.execute(text("SELECT 1")).scalar()
                    self._connection.commit()
                return
            except StoreUnavailableError:
                self._lost = True
                _discard(self._connection)
                self._connection = None
        try:
            self._acquire_postgres()
        except StoreUnavailableError:
            return  # still down: try again on the next call
        except LearnerBusyError:
            raise LearnerBusyError(
                f"search {self.search}: another learner took it over while the database "
                f"was unavailable; this learner stops") from None
        self._lost = False

    def release(self) -> None:
        """Give the lock up (also when the database is gone: the session just ends)."""
        if self._connection is not None:
            _discard(self._connection)
            self._connection = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def _discard(connection: Connection) -> None:
    """Close the connection's database session for good (not back into the pool, where
    the session, and with it an advisory lock, would live on)."""
    with contextlib.suppress(exc.SQLAlchemyError):
        connection.invalidate()
    with contextlib.suppress(exc.SQLAlchemyError):
        connection.close()


def wait_for_lock(store: Store, search: str, stop: threading.Event) -> LearnerLock | None:
    """The search's lock once no other learner holds it, for a learner process: a pod
    started while its predecessor (or a ``ma2ml run``) still drives the search waits for
    it instead of crash-looping; an outage is waited out too. None when ``stop`` is set
    first. While entered, the lock is kept as ``ma2ml run`` keeps its own (``keep``),
    and ``stop`` is set if another learner took the search over during an outage."""
    delays = backoff_delays()
    while not stop.is_set():
        lock = LearnerLock(store, search, stop)
        try:
            lock.acquire()
            return lock
        except (LearnerBusyError, StoreUnavailableError) as exc:
            delay = next(delays)
            log.warning("%s; retrying in %.1f s", exc, delay)
            stop.wait(delay)
    return None
