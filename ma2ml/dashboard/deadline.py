"""Database calls of the dashboard with a deadline, so that a hung database hangs nothing else.

Every JSON endpoint is a plain function that reads the store. ``Deadline.run``
calls it in a worker thread and gives up waiting after ``seconds``: the
request answers 503 (``DatabaseTimeout``) while the thread, which cannot be
interrupted, goes on waiting for the database. Those stalled threads are
counted; past ``most`` of them a request is refused at once, so a database
that never answers costs a bounded number of threads and connections, and the
event loop (``/healthz``, static files) is never among the waiters.
PostgreSQL sessions also carry a ``statement_timeout`` of the same length
(``source.open_read_only``), which frees a connection stuck behind a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


class DatabaseTimeout(RuntimeError):
    """The database did not answer in time (served as 503)."""


class Deadline:
    """Runs blocking store calls in threads, waiting at most ``seconds`` for each."""

    def __init__(self, seconds: float, most: int) -> None:
        self.seconds = seconds
        self.most = most
        self._running = 0
        self._lock = threading.Lock()
        # Its own threads: the default pool is shared with Starlette's other sync work.
        self._limiter = anyio.CapacityLimiter(most)

    @property
    def running(self) -> int:
        """Calls started and not yet returned, those past their deadline included."""
        return self._running

    def _counted(self, call: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            # Counted in the thread: a request cancelled before its thread starts leaks nothing.
            with self._lock:
                self._running += 1
            try:
                return call()
            finally:
                with self._lock:
                    self._running -= 1
        return run

    async def run(self, call: Callable[[], T]) -> T:
        """``call()``'s result, or ``DatabaseTimeout`` after ``seconds`` or when too many
        earlier calls still wait on the database."""
        if self._running >= self.most:
            raise DatabaseTimeout(f"the database has not answered {self._running} earlier "
                                  f"requests; not sending more until it does")
        with anyio.move_on_after(self.seconds):
            return await anyio.to_thread.run_sync(self._counted(call), limiter=self._limiter,
                                                  abandon_on_cancel=True)
        raise DatabaseTimeout(f"the database did not answer within {self.seconds:g} s")
