"""Time left in a search, from measured trial times, from the first trial on.

Once trials have finished, the pace is the time between results over the
latest ``RECENT`` of them (from the search's start while there are fewer):
it already holds the parallelism, a worker holding its next trial while the
current one trains, early stopping's short trials and the learner's pauses.
Before any trial has finished, a running trial that reported an epoch tells
the time per trial (its elapsed time per epoch times ``trialEpochs``), and the
trials left share ``parallelism`` workers, less the epochs already run. Until
a trial has finished or reported an epoch nothing is measured, and the
estimate is None rather than a guess.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: Latest results whose pace the estimate uses (later trials may differ from the first
#: ones: the policies move toward other architectures).
RECENT = 20


@dataclass(frozen=True)
class Running:
    """A running trial: seconds since it was claimed and epochs it has reported."""

    elapsed: float
    epochs: int


@dataclass(frozen=True)
class Eta:
    """Seconds left, and what they were measured from (shown beside them)."""

    seconds: float
    basis: str


def estimate(*, max_trials: int, done: int, parallelism: int, trial_epochs: int,
             started: float, now: float, finished: Sequence[float],
             running: Sequence[Running]) -> Eta | None:
    """Time left for ``max_trials - done`` more results.

    ``started``: when the search started; ``finished``: when each of the latest results
    came (ascending, at most ``RECENT + 1`` are used).
    """
    left = max_trials - done
    if left <= 0:
        return None
    if finished:
        window = list(finished[-RECENT:])
        origin = finished[-RECENT - 1] if len(finished) > RECENT else started
        pace = max(0.0, window[-1] - origin) / len(window)  # seconds per result
        since = max(0.0, now - window[-1])
        count = len(window)
        basis = f"pace of the last {count} result{'s' if count > 1 else ''}"
        return Eta(max(left * pace - min(since, pace), 0.0), basis)
    paced = [r.elapsed / r.epochs * trial_epochs for r in running if r.epochs >= 1]
    if not paced:
        return None
    per_trial = statistics.fmean(paced)
    workers = max(1, min(parallelism, left))
    spent = sum(per_trial * min(r.epochs, trial_epochs) / trial_epochs for r in running)
    return Eta(max(0.0, left * per_trial - spent) / workers, "from the running trials' epochs")
