"""Exponential back-off for a worker waiting out a store outage (one policy, used everywhere)."""

from __future__ import annotations

from collections.abc import Iterator

#: First and largest wait in seconds; each wait doubles the one before.
FIRST_SECONDS = 0.5
MAX_SECONDS = 30.0


def backoff_delays(first: float = FIRST_SECONDS, ceiling: float = MAX_SECONDS) -> Iterator[float]:
    """0.5, 1, 2, 4, ... seconds, capped at ``ceiling``; endless."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, ceiling)
