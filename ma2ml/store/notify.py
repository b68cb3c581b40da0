"""Wake-ups through PostgreSQL LISTEN/NOTIFY; polling stays the fallback.

Workers wake when trials are queued and the learner wakes when a result
lands, instead of finding out at their next poll.

Channels: one per search and event, so that one search's events wake only
that search's processes (and a payload never has to be parsed):

* ``queued_channel(search_id)`` (``ma2ml_queued_<id>``): a trial of the search
  became pending: enqueued, released (hand-back), or re-queued after a
  retryable failure or an expired lease. Workers wait on it.
* ``results_channel(search_id)`` (``ma2ml_results_<id>``): a trial of the search
  reached a terminal status: completed, diverged, stopped or failed. The
  learner waits on it.

Sending: ``send(session, channel)`` inside the transaction that made the
change (``store.queue`` does it for every edge above). PostgreSQL delivers a
NOTIFY at COMMIT, drops it on ROLLBACK and folds identical ones of one
transaction into one, so a waiter never wakes for a change it cannot see yet.
It is a no-op on SQLite. ``Store.notify(channel)`` sends one on its own.

Waiting::

    waiter = store.listen(queued_channel(search_id))      # one per loop or thread
    while not stop.is_set():
        if work_available():                              # always re-check the store
            ...
        waiter.wait(timeout=1.0, stop=stop)               # -> bool

``Waiter.wait`` returns True as soon as one of its channels was notified since
its previous ``wait`` returned (or since it was made): a notification that
lands between the caller's check and its wait is not lost. It returns False
after ``timeout`` (poll: re-check anyway, notifications can be lost) or soon
after ``stop`` is set. True and False mean the same to a caller: look again.
On SQLite (any backend but PostgreSQL) ``store.listen`` returns a
``PollingWaiter`` that just sleeps ``timeout``.

Behind the waiters of a ``Store`` is one ``Listener`` (made on the first
``listen``, closed by ``Store.close``): a dedicated psycopg2 connection outside
the pool, in autocommit, and a daemon thread that blocks in ``select`` on it.
``Listener.waiter`` returns once the channels are LISTENed (up to a second; after
that a waiter simply polls until they are). A connection that fails is re-opened
with the store's back-off (``backoff.backoff_delays``) and every waiter is woken,
since notifications may have been lost meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

#: Seconds a listener's connection may stay silent before it is checked with a query:
#: a connection dropped without a FIN (a restarted server, a cut network) shows up here.
KEEPALIVE_SECONDS = 5.0
#: How often ``wait`` looks at ``stop`` (a notification wakes it at once, not a stop).
STOP_CHECK_SECONDS = 0.1
#: How long ``Listener.waiter`` waits for its channels to be LISTENed.
SUBSCRIBE_SECONDS = 1.0

_CHANNEL = re.compile(r"^[a-z0-9_]{1,63}$")  # a plain PostgreSQL identifier
_NOTIFY = text("SELECT pg_notify(:channel, '')")


def queued_channel(search_id: int) -> str:
    """Notified when a trial of the search becomes pending (workers wait on it)."""
    return f"ma2ml_queued_{int(search_id)}"


def results_channel(search_id: int) -> str:
    """Notified when a trial of the search reaches a terminal status (the learner)."""
    return f"ma2ml_results_{int(search_id)}"


def _checked(channel: str) -> str:
    if not _CHANNEL.match(channel):
        raise ValueError(f"channel {channel!r}: expected 1 to 63 of a-z, 0-9 and _")
    return channel


def send(session: Session, channel: str) -> None:
    """NOTIFY ``channel`` when the session's transaction commits; no-op but on PostgreSQL."""
    _checked(channel)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NOTIFY, {"channel": channel})


class Waiter(Protocol):
    """What ``Store.listen`` returns."""

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """True when notified since the last ``wait``; False on timeout or ``stop``."""
        ...


class PollingWaiter:
    """The fallback waiter (SQLite): sleeps ``timeout``, or until ``stop`` is set."""

    def __init__(self, *channels: str) -> None:
        self.channels = tuple(_checked(channel) for channel in channels)

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        (stop or threading.Event()).wait(max(0.0, timeout))
        return False


class Listener:
    """One dedicated LISTEN connection of a PostgreSQL store and the thread serving it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cond = threading.Condition()
        self._counts: defaultdict[str, int] = defaultdict(int)  # notifications per channel
        self._epoch = 0  # bumped whenever the connection drops: every waiter re-checks
        self._wanted: set[str] = set()
        self._active: set[str] = set()  # LISTENed on the current connection
        self._closed = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name="ma2ml-listener", daemon=True)
        self._thread.start()

    def waiter(self, *channels: str) -> ListenerWaiter:
        """A waiter on ``channels`` (any of them wakes it)."""
        wanted = {_checked(channel) for channel in channels}
        if not wanted:
            raise ValueError("a waiter needs at least one channel")
        with self._cond:
            added = wanted - self._wanted
            self._wanted |= added
        if added:
            self._poke()
        with self._cond:
            self._cond.wait_for(lambda: wanted <= self._active or self._closed.is_set(),
                                SUBSCRIBE_SECONDS)
        return ListenerWaiter(self, tuple(sorted(wanted)))

    def close(self) -> None:
        """Stop the thread and close the connection (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._poke()
        self._thread.join(5.0)
        with self._cond:
            self._cond.notify_all()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- used by ListenerWaiter -------------------------------------------------------

    def _state(self, channels: Iterable[str]) -> tuple[int, ...]:
        return (self._epoch, *(self._counts[channel] for channel in channels))

    # -- the thread -------------------------------------------------------------------

    def _poke(self) -> None:
        with contextlib.suppress(OSError):  # closed meanwhile
            os.write(self._wake_write, b"x")

    def _run(self) -> None:
        from ma2ml.store.backoff import backoff_delays  # backoff imports Store, Store us

        delays = backoff_delays()
        while not self._closed.is_set():
            connection = None
            try:
                connection = self._connect()
                delays = backoff_delays()  # a connection that opened resets the back-off
                self._serve(connection)
            except Exception as exc:  # any failure of the connection: re-open it
                if not self._closed.is_set():
                    log.warning("notification listener lost its connection (%s); "
                                "waiters poll meanwhile", exc)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):  # already broken: nothing to save
                        connection.close()
                with self._cond:
                    self._active.clear()
                    self._epoch += 1
                    self._cond.notify_all()
            if not self._closed.is_set():
                self._closed.wait(next(delays))

    def _connect(self) -> Any:
        pooled = self._engine.raw_connection()
        connection = pooled.driver_connection
        assert connection is not None  # a connection fresh from the pool has its driver's
        pooled.detach()  # ours alone: never handed back to the pool
        connection.autocommit = True
        return connection

    def _serve(self, connection: Any) -> None:
        cursor = connection.cursor()
        while not self._closed.is_set():
            with self._cond:
                missing = sorted(self._wanted - self._active)
            for channel in missing:
                cursor.execute(f'LISTEN "{channel}"')
                with self._cond:
                    self._active.add(channel)
                    self._cond.notify_all()
            ready, _, _ = select.select([connection, self._wake_read], [], [],
                                        KEEPALIVE_SECONDS)
            if self._wake_read in ready:
                os.read(self._wake_read, 4096)
            if not ready:
                cursor.execute("SELECT 1")  # raises on a dead connection
            connection.poll()
            if connection.notifies:
                with self._cond:
                    for notification in connection.notifies:
                        self._counts[notification.channel] += 1
                    connection.notifies.clear()
                    self._cond.notify_all()


class ListenerWaiter:
    """A waiter on some channels of a ``Listener`` (see the module docstring)."""

    def __init__(self, listener: Listener, channels: tuple[str, ...]) -> None:
        self._listener, self.channels = listener, channels
        with listener._cond:
            self._seen = listener._state(channels)

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """True as soon as a channel was notified since the last ``wait`` (or the connection
        dropped, which may have lost some); False after ``timeout`` or once ``stop`` is set."""
        listener = self._listener
        deadline = time.monotonic() + max(0.0, timeout)
        with listener._cond:
            while True:
                state = listener._state(self.channels)
                if state != self._seen:
                    self._seen = state
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    return False
                listener._cond.wait(min(remaining, STOP_CHECK_SECONDS) if stop else remaining)
