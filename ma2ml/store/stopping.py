"""Early-stopping rules (ASHA, median, learned): pure decisions from the recorded results.

``store.queue.report_step`` records a trial's result at an epoch and asks
``decide`` whether it continues, holding the search row's lock, so every
worker sees the same rungs and each (trial, step) gets exactly one answer.

ASHA here *stops* running trials; it never pauses them for a later
promotion. A paused trial would hold a checkpoint and need a worker to come
back for it, while a stopped one frees its worker for the next proposal at
once, which is what the learner wants: the stopped result still teaches the
critic. This is the variant Ray Tune's ASHA scheduler runs.

The learned rule judges at ASHA's rungs but against the search's own completed
curves rather than a fixed share: a trial stops at a rung when its result is
below the lowest result any of the best ``ceil(n / reductionFactor)`` completed
trials had at that epoch (n completed trials, ``minTrials`` at least). Where the
eventual best pipelines start slowly (curves cross), that bar is low and few
trials stop; where early results rank final ones well, it sits near the top and
it stops more than ASHA. It never stops the first ``minTrials`` trials to
complete, which are what it learns from; they are the price of knowing.

Brackets (``EarlyStopping.brackets``) hedge a rule against early results that rank
final ones badly, as Hyperband does (Li et al., JMLR 2018; asynchronously, Li et
al., MLSys 2020): trials take turns by number, and bracket s is judged from the
s-th rung on, against every result recorded at that epoch; a bracket past the
last rung trains its trials to the end. Those are also the unbiased curves the
learned rule needs: without them it learns only from trials that the rule itself
let through, which start fast by construction.
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


def bracket(rule: EarlyStopping, number: int, max_epochs: int) -> int:
    """The bracket of trial ``number`` (1, 2, ...): the index of the first rung it is
    judged at; ``len(rungs)`` (past the last rung) for one that is never stopped."""
    return (number - 1) % min(rule.brackets, len(rungs(rule, max_epochs)) + 1)


def judged(rule: EarlyStopping, step: int, max_epochs: int, number: int = 1) -> bool:
    """Whether trial ``number``'s result at ``step`` is judged at all (else the trial
    simply continues)."""
    if rule.type in (EarlyStoppingType.asha, EarlyStoppingType.learned):
        return step in rungs(rule, max_epochs)[bracket(rule, number, max_epochs):]
    if rule.type == EarlyStoppingType.median:
        return rule.min_epochs <= step < max_epochs
    return False


def learns(rule: EarlyStopping) -> bool:
    """Whether ``decide`` reads the completed trials' curves (only the learned rule)."""
    return rule.type == EarlyStoppingType.learned


def decide(rule: EarlyStopping, value: float | None, others: Sequence[float | None],
           completed: Sequence[tuple[float | None, float | None]] = ()) -> StepDecision:
    """Continue or stop, given this trial's ``value`` and the other trials' results at the
    same step (higher is better; a missing value, e.g. a diverged epoch, ranks last).
    ``completed``: (result at this step, final reward) of the completed trials, which
    only the learned rule reads."""
    if learns(rule):
        return _learned(rule, value, completed)
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


def _learned(rule: EarlyStopping, value: float | None,
             completed: Sequence[tuple[float | None, float | None]]) -> StepDecision:
    """The learned rule (module docstring): below every top completed trial's result here."""
    pairs = [(x, y) for x, y in completed if y is not None and math.isfinite(y)]
    if len(pairs) < rule.min_trials:
        return StepDecision.proceed
    pairs.sort(key=lambda pair: pair[1], reverse=True)
    top = pairs[:math.ceil(len(pairs) / rule.reduction_factor)]
    # A top trial with no result here (it diverged at this epoch) sets no bar above it.
    bar = min((x if x is not None and math.isfinite(x) else -math.inf) for x, _ in top)
    if value is None or not math.isfinite(value):
        return StepDecision.stop if bar > -math.inf else StepDecision.proceed
    return StepDecision.stop if value < bar else StepDecision.proceed
