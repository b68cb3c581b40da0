"""Time left in a search, from measured trial durations, from the first trial on.

Once trials have finished, one trial takes the mean duration of the latest
``RECENT`` of them (started to finished: the work of one worker, early
stopping's short trials included). Before any has finished, a running trial
that reported an epoch tells it too: its elapsed time per reported epoch times
``trialEpochs``. The trials left (counting towards ``maxTrials``) share
``parallelism`` workers, less what the running ones have already done. Until
a trial has finished or reported an epoch there is nothing measured to go on,
and the estimate is None rather than a guess.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: Latest finished trials whose mean duration the estimate uses (later trials may
#: differ from the first ones: the policies move toward other architectures).
RECENT = 20


@dataclass(frozen=True)
class Running:
    """A running trial: seconds since it started and epochs it has reported."""

    elapsed: float
    epochs: int


@dataclass(frozen=True)
class Eta:
    """Seconds left, and what they were measured from (shown beside them)."""

    seconds: float
    basis: str


def estimate(*, max_trials: int, done: int, parallelism: int, trial_epochs: int,
             durations: Sequence[float], running: Sequence[Running]) -> Eta | None:
    """Time left for ``max_trials - done`` more results on ``parallelism`` workers.

    ``durations``: seconds each of the latest finished trials took, oldest first.
    """
    left = max_trials - done
    if left <= 0:
        return None
    recent = [d for d in durations[-RECENT:] if d >= 0]
    if recent:
        per_trial = statistics.fmean(recent)
        basis = f"mean of {len(recent)} trial{'s' if len(recent) > 1 else ''}"
    else:
        paced = [r.elapsed / r.epochs * trial_epochs for r in running if r.epochs >= 1]
        if not paced:
            return None
        per_trial = statistics.fmean(paced)
        basis = "from the running trials' epochs"
    workers = max(1, min(parallelism, left))
    started = sum(min(r.elapsed, per_trial) for r in running[:left])
    return Eta(max(0.0, left * per_trial - started) / workers, basis)
