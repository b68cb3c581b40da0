"""Early-stopping rules (ASHA, median): pure decisions from the results recorded at a step.

``store.queue.report_step`` records a trial's result at an epoch and asks
``decide`` whether it continues, holding the search row's lock, so every
worker sees the same rungs and each (trial, step) gets exactly one answer.

ASHA here *stops* running trials; it never pauses them for a later
promotion. A paused trial would hold a checkpoint and need a worker to come
back for it, while a stopped one frees its worker for the next proposal at
once, which is what the learner wants: the stopped result still teaches the
critic. This is the variant Ray Tune's ASHA scheduler runs.
"""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Sequence

from ma2ml.spec import EarlyStopping, EarlyStoppingType


class StepDecision(enum.StrEnum):
    """The answer to a trial that reported a result at an epoch boundary."""

    proceed = "continue"
    stop = "stop"


def rungs(rule: EarlyStopping, max_epochs: int) -> list[int]:
    """ASHA's rungs: ``minEpochs * reductionFactor**k`` below ``max_epochs``."""
    found, rung = [], rule.min_epochs
    while rung < max_epochs:
        found.append(rung)
        rung *= rule.reduction_factor
    return found


def judged(rule: EarlyStopping, step: int, max_epochs: int) -> bool:
    """Whether a result at ``step`` is judged at all (else the trial simply continues)."""
    if rule.type == EarlyStoppingType.asha:
        return step in rungs(rule, max_epochs)
    if rule.type == EarlyStoppingType.median:
        return rule.min_epochs <= step < max_epochs
    return False


def decide(rule: EarlyStopping, value: float | None, others: Sequence[float | None]
           ) -> StepDecision:
    """Continue or stop, given this trial's ``value`` and the other trials' results at the
    same step (higher is better; a missing value, e.g. a diverged epoch, ranks last)."""
    peers = [v for v in others if v is not None and math.isfinite(v)]
    if value is None or not math.isfinite(value):
        return StepDecision.stop if peers else StepDecision.proceed
    if rule.type == EarlyStoppingType.asha:
        # Among the best ceil(n / eta) of the n results at this rung, itself included;
        # ties count in its favour, and the first result at a rung always continues.
        n = len(peers) + 1
        better = sum(1 for v in peers if v > value)
        return StepDecision.proceed if better < math.ceil(n / rule.reduction_factor) \
            else StepDecision.stop
    if rule.type == EarlyStoppingType.median:
        if len(peers) < rule.min_trials:
            return StepDecision.proceed
        return StepDecision.stop if value < statistics.median(peers) else StepDecision.proceed
    return StepDecision.proceed
