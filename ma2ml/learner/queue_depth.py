"""How many trials the learner keeps outstanding: enough that no worker waits for one.

The rule. A worker that finishes a trial claims the next pending one at once, but
the learner tops the queue up only once per tick. Between two top-ups results
arrive at rate ``r`` (results per second, failures included: each frees a worker),
and each freed worker takes a pending trial. So beyond one trial per worker (the
``parallelism`` running ones) the queue must hold every trial claimed before the
next top-up lands:

    target = parallelism + ceil(r * (interval + latency))

``interval`` is the time between two top-ups (the learner's wait plus its update)
and ``latency`` the time a top-up takes to propose and enqueue. Both are measured;
the longest interval of the last ``RATE_WINDOW_SECONDS`` is used, since the queue
must last through the slowest tick (one that takes in a backlog), not the average.

A queue that ran dry hides the demand: workers that found it empty finished
nothing, so the measured rate is what the queue let through, not what the workers
could do, and the rule alone would never grow past it (instant trials are the
extreme case). So when a top-up (but the first) finds no trial pending, the
headroom beyond ``parallelism`` doubles from the last one (``QueueMeter.boost``)
until the queue no longer runs dry; it halves back once at least half of it is
still pending at a top-up.

Bounds. At least ``parallelism + prefetch``: the spec's floor, and what a search
gets before a rate has been measured. At most ``parallelism + max(prefetch,
parallelism, MIN_HEADROOM)``: every queued trial was drawn from the policy of its
top-up, so a deeper queue only runs staler proposals; one more round of every
worker is enough to cover a tick, and ``MIN_HEADROOM`` lets a few workers with
very short trials queue more than their number. (``maxTrials`` bounds it too:
the loop never queues more than the budget still needs.)
"""

from __future__ import annotations

import math
from collections import deque

#: Seconds of history the result rate and the longest top-up interval are taken over.
RATE_WINDOW_SECONDS = 10.0

#: Queued trials beyond ``parallelism`` that are allowed even for a few workers.
MIN_HEADROOM = 64


def queue_target(parallelism: int, prefetch: int, rate: float, interval: float,
                 latency: float, boost: int = 0) -> int:
    """Trials to keep outstanding (pending + running); see the module docstring.
    ``boost`` is a headroom to keep at least (the queue ran dry), bounded the same."""
    for name, value in (("parallelism", parallelism), ("prefetch", prefetch), ("boost", boost)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, not {value}")
    for name, seconds in (("rate", rate), ("interval", interval), ("latency", latency)):
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"{name} must be a finite number >= 0, not {seconds}")
    needed = max(math.ceil(rate * (interval + latency)), boost)
    headroom = min(max(needed, prefetch), max(prefetch, parallelism, MIN_HEADROOM))
    return parallelism + headroom


class QueueMeter:
    """The measured inputs of ``queue_target``: result rate, top-up interval and latency.

    ``observe(now, finished)`` once per tick with the search's count of finished
    trials; ``topped_up(now, latency, pending, headroom)`` after each top-up with the
    trials it found pending and the headroom it aimed for. The clock is the caller's
    (monotonic seconds), so tests can drive it.
    """

    def __init__(self, window: float = RATE_WINDOW_SECONDS) -> None:
        self.window = window
        self._counts: deque[tuple[float, int]] = deque()
        self._intervals: deque[tuple[float, float]] = deque()
        self._last_top_up: float | None = None
        self.latency = 0.0
        #: Headroom kept at least because the queue ran dry (0: the rate rule alone).
        self.boost = 0

    def observe(self, now: float, finished: int) -> None:
        """Record the count of finished trials at ``now``."""
        self._counts.append((now, finished))
        while len(self._counts) > 2 and now - self._counts[1][0] >= self.window:
            self._counts.popleft()

    def topped_up(self, now: float, latency: float, pending: int, headroom: int) -> None:
        """Record a top-up that ended at ``now`` after ``latency`` seconds of work, which
        found ``pending`` trials pending and aimed for ``headroom`` beyond parallelism."""
        if pending == 0 and headroom > 0 and self._last_top_up is not None:  # drained
            self.boost = 2 * headroom
        elif pending >= headroom // 2:
            self.boost //= 2
        if self._last_top_up is not None:
            self._intervals.append((now, now - self._last_top_up))
        while self._intervals and now - self._intervals[0][0] > self.window:
            self._intervals.popleft()
        self._last_top_up = now
        self.latency = latency

    @property
    def rate(self) -> float:
        """Finished trials per second over the window (0 until two ticks were seen)."""
        if len(self._counts) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._counts[0], self._counts[-1]
        return max(n1 - n0, 0) / (t1 - t0) if t1 > t0 else 0.0

    def interval(self, now: float) -> float:
        """The longest time between two top-ups in the window, counting the one running."""
        running = now - self._last_top_up if self._last_top_up is not None else 0.0
        return max([running, *(gap for _, gap in self._intervals)])

    def target(self, now: float, parallelism: int, prefetch: int) -> int:
        """``queue_target`` from what was measured up to ``now``."""
        return queue_target(parallelism, prefetch, self.rate, self.interval(now), self.latency,
                            self.boost)
