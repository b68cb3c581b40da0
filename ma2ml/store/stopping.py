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
al., MLSys 2020): bracket s is judged from the s-th rung on, against every result
recorded at that epoch; a bracket past the last rung trains its trials to the
end. Those are also the unbiased curves the learned rule needs: without them it
learns only from trials that the rule itself let through, which start fast by
construction.

How many trials each bracket gets (``bracketShares``): ``equal`` takes turns by
trial number; ``hyperband`` gives each bracket synchronous Hyperband's share (81,
34, 15, 8 and 5 of 143 trials for four rungs at reduction factor 3: most are
judged from the first rung); ``adaptive`` weights those shares by the chance that
a trial which would end on top survives the bracket's rungs, measured on the
search's ``RECENT_CURVES`` most recently completed trials (``survival``). This is
the rung geometry chosen from the data, in the spirit of Hyper-Tune's bracket
selection (Li et al., VLDB 2022). Why the recent trials and not all of them: how
well epoch 1 ranks final results depends on the population. Over a whole space
early results rank final ones fairly well (Kendall's tau 0.5-0.7 at epoch 1 on
LCBench tasks), but among the best tenth, where a learner soon proposes, hardly
at all (tau about 0 on some tasks), and a cut there is a coin toss that throws
away the eventual best. Measured on the multi-fidelity benchmark's tuning seeds,
adaptive shares beat both fixed ones (``benchmarks/results/multi_fidelity.md``).

A trial's bracket is read from its number and the shares at each rung it reaches:
the number's golden-ratio point (``bracket_of``) spreads consecutive trials evenly
over the shares, with nothing to store. As adaptive shares move, a trial may be
judged at a later rung that its earlier shares left alone; each (trial, step) is
still answered once, from the results recorded when it is asked.
"""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Sequence

from ma2ml.spec import BracketShares, EarlyStopping, EarlyStoppingType

#: How many of the most recently completed trials the adaptive shares learn from.
#: Few enough to follow the population the learner proposes now, enough for the top
#: third to hold ten trials (tuning seeds: 20, 30 and 40 were alike).
RECENT_CURVES = 30

#: 1 / golden ratio: trial n's point frac(n / phi) in [0, 1) picks its bracket from the
#: shares. The points of consecutive numbers spread evenly (a low-discrepancy sequence),
#: so every stretch of trials follows the shares closely.
_INVERSE_PHI = (math.sqrt(5) - 1) / 2

#: Per rung, (result at the rung, final reward) of recently completed trials.
Curves = Sequence[Sequence[tuple[float | None, float | None]]]


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


def hyperband_shares(n_brackets: int, reduction_factor: int) -> list[float]:
    """Synchronous Hyperband's share of trials per bracket, bracket s (judged from rung s)
    of ``s_max + 1``: ``(s_max + 1) / (s_max - s + 1) * eta ** (s_max - s)``, normalised."""
    s_max = n_brackets - 1
    raw = [(s_max + 1) / (s_max - s + 1) * reduction_factor ** (s_max - s)
           for s in range(n_brackets)]
    return [r / sum(raw) for r in raw]


def survival(pairs: Sequence[tuple[float | None, float | None]], reduction_factor: int
             ) -> float | None:
    """How often a cut at a rung keeps a trial that ends on top: of the best
    ``1/reduction_factor`` of ``pairs`` (result at the rung, final reward) by final
    reward, the share also among the best ``1/reduction_factor`` at the rung, with a
    Laplace prior (1 of 2). None below ``2 * reduction_factor`` pairs."""
    pts = [(x if x is not None and math.isfinite(x) else -math.inf, y)
           for x, y in pairs if y is not None and math.isfinite(y)]
    if len(pts) < 2 * reduction_factor:
        return None
    top = math.ceil(len(pts) / reduction_factor)
    cut = sorted((x for x, _ in pts), reverse=True)[top - 1]
    # Ordered by final reward, then result (a pure function of the set of pairs).
    best = sorted(pts, key=lambda p: (p[1], p[0]), reverse=True)[:top]
    kept = sum(1 for x, _ in best if x > -math.inf and x >= cut)
    return (kept + 1) / (top + 2)


def shares(rule: EarlyStopping, max_epochs: int, curves: Curves | None = None) -> list[float]:
    """Each bracket's share of the trials (``bracketShares``; module docstring).
    ``curves`` (adaptive only): per rung, (result there, final reward) of the recently
    completed trials; without them adaptive shares are Hyperband's."""
    n_rungs = len(rungs(rule, max_epochs))
    n = min(rule.brackets, n_rungs + 1)
    if rule.bracket_shares == BracketShares.equal:
        return [1 / n] * n
    weights = hyperband_shares(n_rungs + 1, rule.reduction_factor)[:n]
    if rule.bracket_shares == BracketShares.adaptive and curves is not None:
        kept = [survival(curves[k], rule.reduction_factor) for k in range(n_rungs)]
        # Bracket s is judged at rungs s, s + 1, ...: a top trial must survive them all.
        weights = [w * math.prod(1.0 if p is None else p for p in kept[s:])
                   for s, w in enumerate(weights)]
    return [w / sum(weights) for w in weights]


def bracket_of(number: int, bracket_shares: Sequence[float]) -> int:
    """The bracket trial ``number`` falls in: where its golden-ratio point lies."""
    point, edge = (number * _INVERSE_PHI) % 1.0, 0.0
    for s, share in enumerate(bracket_shares):
        edge += share
        if point < edge:
            return s
    return len(bracket_shares) - 1


def bracket(rule: EarlyStopping, number: int, max_epochs: int, curves: Curves | None = None
            ) -> int:
    """The bracket of trial ``number`` (1, 2, ...): the index of the first rung it is
    judged at; ``len(rungs)`` (past the last rung) for one that is never stopped."""
    if rule.bracket_shares == BracketShares.equal or rule.brackets == 1:
        return (number - 1) % min(rule.brackets, len(rungs(rule, max_epochs)) + 1)
    return bracket_of(number, shares(rule, max_epochs, curves))


def needs_curves(rule: EarlyStopping, step: int, max_epochs: int) -> bool:
    """Whether judging ``step`` reads the recent curves (adaptive shares, at a rung)."""
    return (rule.type in (EarlyStoppingType.asha, EarlyStoppingType.learned)
            and rule.brackets > 1 and rule.bracket_shares == BracketShares.adaptive
            and step in rungs(rule, max_epochs))


def judged(rule: EarlyStopping, step: int, max_epochs: int, number: int = 1,
           curves: Curves | None = None) -> bool:
    """Whether trial ``number``'s result at ``step`` is judged at all (else the trial
    simply continues); ``curves`` as ``shares`` reads them (``needs_curves``)."""
    if rule.type in (EarlyStoppingType.asha, EarlyStoppingType.learned):
        marks = rungs(rule, max_epochs)
        return step in marks and step in marks[bracket(rule, number, max_epochs, curves):]
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
