"""Exponential back-off for waiting out a store outage (one policy for every process)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from ma2ml.store.errors import StoreUnavailableError
from ma2ml.store.store import Store

log = logging.getLogger(__name__)

#: First and largest wait in seconds; each wait doubles the one before.
FIRST_SECONDS = 0.5
MAX_SECONDS = 30.0


def backoff_delays(first: float = FIRST_SECONDS, ceiling: float = MAX_SECONDS) -> Iterator[float]:
    """0.5, 1, 2, 4, ... seconds, capped at ``ceiling``; endless."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, ceiling)


def open_store(url: str | None, stop: threading.Event, **options: Any) -> Store | None:
    """A ``Store`` on ``url`` once the database answers, waiting out an outage with
    back-off (a process started during an outage must not crash-loop); None when
    ``stop`` is set first. Errors other than "unavailable" are raised."""
    delays = backoff_delays()
    while not stop.is_set():
        try:
            return Store(url, **options)
        except StoreUnavailableError as exc:
            delay = next(delays)
            log.warning("store unavailable (%s); retrying in %.1f s", exc, delay)
            stop.wait(delay)
    return None
