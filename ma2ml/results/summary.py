"""Reading a search's results from the store: counts, best trial, baseline, curves.

The baseline is random search: the trials proposed while every policy was still
uniform are pipelines drawn at random, and ``Summary.random_best_of(n)``
estimates from them what random search would have found with n trials
(``ma2ml.results.baseline``), the fair comparison for the best of n trials.
Where every uniform draw's reward is its accuracy (no FLOPs shaping), the
baseline's interval stays within ``ACCURACY_RANGE`` (``Summary.reward_bounds``).

Shared by the live view, the end-of-run summary, the report, the dashboard and
the ``status``, ``trials`` and ``best`` commands, so they always agree.

The best trial is ranked at full fidelity only: it is a *completed* trial,
trained for every ``trialEpochs``. A trial stopped early by
``spec.earlyStopping`` counts towards ``maxTrials`` and teaches the learner,
but its reward is an intermediate result and never competes (``BEST_RANKING``
is the sentence every command shows). Rewards are noisy, so what the commands
call best is the pipeline with the best estimated mean
(``ma2ml.store.recommend``, ``Summary.recommended``), shown with its standard
error; the single best observation is named beside it when it differs.

Time used (``Summary.time_used``): how long the search ran (still once it
ended) and how long its trials trained, against ``maxDuration`` and
``maxTrainingHours`` when set; the time left never goes past ``maxDuration``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ma2ml.durations import format_duration
from ma2ml.results.baseline import BestOfN, expected_best_of_n, latest_against_random
from ma2ml.results.eta import RECENT, Eta, Running, estimate
from ma2ml.spec import Budget
from ma2ml.store import (
    RESULT_STATUSES,
    TERMINAL_SEARCH_STATES,
    BudgetVerdict,
    Counts,
    SearchRecord,
    SearchState,
    StepRecord,
    Store,
    TrialRecord,
    TrialStatus,
    Usage,
    budget_verdict,
)
from ma2ml.store.lifecycle import is_held, shown_elapsed, shown_status
from ma2ml.store.recommend import Estimate, recommend_trials
from ma2ml.visible import decimals

#: How every command words the best trial's ranking.
BEST_RANKING = ("ranked among completed trials at full fidelity only; "
                "trials stopped early never compete")
#: What an accuracy can be: the bounds of a reward that is the accuracy.
ACCURACY_RANGE = (0.0, 1.0)
#: Characters of a sparkline, lowest to highest.
SPARKS = "▁▂▃▄▅▆▇█"
#: Order of the statuses in a trials table, after completed trials by reward.
STATUS_ORDER = {TrialStatus.completed: 0, TrialStatus.stopped: 1, TrialStatus.diverged: 2,
                TrialStatus.failed: 3}


@dataclass(frozen=True)
class Summary:
    """What a person wants to know about a search at a glance."""

    key: str
    state: SearchState
    max_trials: int
    counts: Counts
    best: TrialRecord | None
    random_accuracies: list[float]
    entropy: dict[str, float]
    elapsed: float
    #: Rewards of the completed trials drawn while every policy was uniform (finish order).
    random_rewards: tuple[float, ...] = ()
    #: Rewards of the latest completed trials the learned policies proposed, as many as
    #: ``random_rewards`` at most (finish order): the same number of trials, compared.
    learned_rewards: tuple[float, ...] = ()
    #: Time left, measured from trial durations (None: nothing measured yet, or no ``now``).
    eta: Eta | None = None
    #: The pipeline with the best estimated mean and the trial shown for it (None before
    #: any completed trial, and in the live view, which does not read every trial).
    recommended: tuple[Estimate, TrialRecord] | None = None
    #: Trials leased to a worker ahead of training them (prefetch), counted in
    #: ``counts.running`` by the store but not started (``lifecycle.is_held``).
    held: int = 0
    #: Time used (``Store.usage``) and what the budget says of it and the counts: why a
    #: search ended, or how much of each limit it used so far.
    usage: Usage = Usage()
    verdict: BudgetVerdict | None = None
    #: Why the search is in its state, in the words of whoever moved it there (the
    #: learner's budget message when a limit ended it, written at that moment).
    message: str | None = None
    #: ``spec.budget``'s time limits: seconds of ``maxDuration``, ``maxTrainingHours``.
    max_duration: int | None = None
    max_training_hours: float | None = None
    #: The least and most a reward can be, where known (``ACCURACY_RANGE`` when every
    #: uniform draw's reward is its accuracy): the baseline's intervals stay inside.
    reward_bounds: tuple[float, float] | None = None

    @property
    def done(self) -> int:
        """Results so far (``Counts.results``: what counts towards ``maxTrials``)."""
        return self.counts.results

    @property
    def random_mean(self) -> float | None:
        return statistics.fmean(self.random_accuracies) if self.random_accuracies else None

    def random_best_of(self, *ns: int) -> list[BestOfN]:
        """Random search's expected best reward in each ``n`` trials (empty: no uniform draws)."""
        return expected_best_of_n(self.random_rewards, ns, bounds=self.reward_bounds)

    def learned_against_random(self) -> str | None:
        """The latest learned proposals against as many random pipelines (None: none yet)."""
        return latest_against_random(self.learned_rewards, self.random_rewards,
                                     bounds=self.reward_bounds)

    def eta_seconds(self) -> float | None:
        return self.eta.seconds if self.eta is not None else None

    def time_used(self) -> str:
        """``ran 3m 2s of 10m, trained 5m 40s of 2h``: elapsed and training time, each
        against its limit when the budget sets one (``durations.format_duration``)."""
        ran = format_duration(self.elapsed)
        if self.max_duration is not None:
            ran += f" of {format_duration(self.max_duration)}"
        trained = format_duration(self.usage.training_seconds)
        if self.max_training_hours is not None:
            trained += f" of {format_duration(self.max_training_hours * 3600)}"
        return f"ran {ran}, trained {trained}"

    def ended_by(self) -> str | None:
        """The budget's reason when it ended the search (``MaxDurationReached``), else None."""
        verdict = self.verdict
        if self.state in TERMINAL_SEARCH_STATES and verdict is not None \
                and verdict.state is not None:
            return verdict.reason
        return None


def accuracy_of(trial: TrialRecord) -> float | None:
    """The trial's ``accuracy`` metric when it is a finite number (a custom trainer's
    metrics may hold anything under that name), else None."""
    value = (trial.metrics or {}).get("accuracy")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def reward_bounds(trials: list[TrialRecord]) -> tuple[float, float] | None:
    """``ACCURACY_RANGE`` when every one of ``trials`` with a reward reports that reward
    as its accuracy (the built-in reward without FLOPs shaping, or a trainer that reports
    only an accuracy), else None: a reward may be any finite number."""
    return bounds_of((t.reward, accuracy_of(t)) for t in trials)


def bounds_of(results: Iterable[tuple[float | None, float | None]]) -> tuple[float, float] | None:
    """``reward_bounds`` of ``(reward, accuracy_of)`` pairs, for a caller that keeps only
    those of its trials (the dashboard's results cache)."""
    rewarded = [(reward, accuracy) for reward, accuracy in results if reward is not None]
    if rewarded and all(_is_accuracy(reward, accuracy) for reward, accuracy in rewarded):
        return ACCURACY_RANGE
    return None


def _is_accuracy(reward: float | None, accuracy: float | None) -> bool:
    low, high = ACCURACY_RANGE
    return (reward is not None and accuracy is not None and low <= accuracy <= high
            and math.isclose(reward, accuracy, rel_tol=1e-9, abs_tol=1e-12))


def summarize(store: Store, record: SearchRecord, now: float | None = None,
              baseline: bool = True) -> Summary:
    """Counts, best trial, per-agent entropy and (unless ``baseline=False``, as the
    once-a-second live view asks) the random-pipeline baseline, which reads every trial."""
    counts = store.counts(record.id)
    # Trials drawn while every policy was still uniform are pipelines sampled
    # at random: the honest baseline for "what did the search buy".
    initial: list[TrialRecord] = []
    learned: list[TrialRecord] = []
    recommended = None
    if baseline:
        uniform = uniform_logp(record)
        completed = store.list_trials(record.id, status=TrialStatus.completed)
        for trial in completed:
            (initial if was_uniform(trial, uniform) else learned).append(trial)
        recommended = recommend_trials(completed)
        # As many of the latest learned proposals as there were uniform draws: n against n.
        learned.sort(key=lambda t: t.finished_seq or 0)
        learned = learned[max(0, len(learned) - len(initial)):] if initial else []
    snapshot = store.load_snapshot(record.id)
    entropy = dict((snapshot.stats or {}).get("entropy", {})) if snapshot else {}
    budget = record.search.spec.budget
    usage = store.usage(record.id)
    eta, held = None, 0
    if record.finished_at is None:
        # Between a result and the learner's next proposal nothing may be running; the
        # pace of the latest results still gives the time left.
        running = (store.list_trials(record.id, status=TrialStatus.running)  # <= 2 per worker
                   if counts.running else [])
        held = sum(is_held(t.status, t.started_at) for t in running)
        if now is not None:
            eta = _within(_eta(store, record, counts, now, running), budget, usage)
    return Summary(
        key=record.name, state=record.state,
        max_trials=budget.max_trials,
        counts=counts, best=store.best_trial(record.id),
        random_accuracies=[a for a in map(accuracy_of, initial) if a is not None],
        random_rewards=tuple(t.reward for t in initial if t.reward is not None),
        learned_rewards=tuple(t.reward for t in learned if t.reward is not None),
        entropy={k: float(v) for k, v in entropy.items()},
        elapsed=shown_elapsed(usage, record.created_at, record.finished_at),
        eta=eta, recommended=recommended, held=held, usage=usage, message=record.message,
        verdict=budget_verdict(budget, counts, usage), max_duration=budget.max_duration,
        max_training_hours=budget.max_training_hours, reward_bounds=reward_bounds(initial),
    )


def _within(eta: Eta | None, budget: Budget, usage: Usage) -> Eta | None:
    """The time left, no later than ``maxDuration`` (the search ends there whatever the
    trials' pace)."""
    if budget.max_duration is None:
        return eta
    left = max(0.0, budget.max_duration - usage.elapsed_seconds)
    if eta is None or left < eta.seconds:
        return Eta(left, "until maxDuration")
    return eta


def recommended_lines(summary: Summary) -> list[str]:
    """What status and report say about the best pipeline: the recommended trial with its
    estimate, then the single best observation when that is another trial."""
    if summary.recommended is None:
        return []
    estimate, trial = summary.recommended
    lines = [f"trial {trial.number}, {estimate.describe()}"]
    if summary.best is not None and summary.best.id != trial.id:
        lines.append(f"best single observation: trial {summary.best.number}, reward "
                     f"{decimals(summary.best.reward or 0.0)} (a lucky draw, by the estimate)")
    return lines


def _eta(store: Store, record: SearchRecord, counts: Counts, now: float,
         running_trials: list[TrialRecord]) -> Eta | None:
    """``eta.estimate`` from the running trials and the latest results (bounded reads)."""
    budget = record.search.spec.budget
    latest = store.list_trials(record.id, order_by="finished_seq", descending=True,
                               limit=RECENT + 1)
    finished = sorted(t.finished_at for t in latest
                      if t.status in RESULT_STATUSES and t.finished_at is not None)
    running = [Running(now - t.started_at, t.last_step or 0)
               for t in running_trials if t.started_at is not None]  # held: not started
    return estimate(max_trials=budget.max_trials, done=counts.results,
                    parallelism=budget.parallelism,
                    trial_epochs=budget.trial_epochs, started=record.created_at,
                    now=now, finished=finished, running=running)


def uniform_logp(record: SearchRecord) -> dict[str, float]:
    """log pi_i(a_i) of any action under a uniform policy, per agent."""
    space = record.search.spec.search_space()
    return {a.name: -sum(math.log(n) for n in a.sizes) for a in space.agents}


def was_uniform(trial: TrialRecord, uniform: dict[str, float]) -> bool:
    """Whether the behaviour policy that proposed ``trial`` was uniform for every agent."""
    logp = trial.behaviour_logp or {}
    return bool(logp) and all(
        math.isclose(float(logp.get(agent, math.inf)), value, abs_tol=1e-4)
        for agent, value in uniform.items())


def trial_row(trial: TrialRecord) -> dict[str, Any]:
    """One trial as a flat row for tables and JSON."""
    metrics = trial.metrics or {}
    duration = (trial.finished_at - trial.started_at
                if trial.finished_at and trial.started_at else None)
    return {
        # A held (prefetched) trial is stored running but has not started: "held".
        "number": trial.number, "status": shown_status(trial.status, trial.started_at),
        "reward": trial.reward,
        "accuracy": metrics.get("accuracy"), "flops": metrics.get("flops"),
        "params": metrics.get("params"), "seconds": duration,
        "epochs": trial.last_step, "policy_version": trial.policy_version,
        "attempt": trial.attempt,
        "worker": trial.worker, "error": trial.error,
    }


def trial_epochs(record: SearchRecord) -> int:
    """``spec.budget.trialEpochs`` of a stored search: what full fidelity means."""
    return record.search.spec.budget.trial_epochs


def curve_points(steps: list[StepRecord]) -> list[dict[str, Any]]:
    """A learning curve as JSON: one ``{step, value, decision, metrics}`` per epoch."""
    return [{"step": s.step, "value": s.value, "decision": s.decision, "metrics": s.metrics}
            for s in steps]


def finite_values(curves: Mapping[int, list[StepRecord]]) -> list[float]:
    """Every finite value of ``curves`` (to scale sparklines on one range)."""
    return [s.value for steps in curves.values() for s in steps
            if s.value is not None and math.isfinite(s.value)]


def sparkline(values: list[float | None], low: float, high: float, width: int = 32) -> str:
    """``values`` as block characters on the range ``low..high`` (a missing value is ``·``);
    longer curves are sampled down to ``width`` points, keeping the first and the last."""
    if len(values) > width > 1:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    span = high - low
    out = []
    for value in values:
        if value is None or not math.isfinite(value):
            out.append("·")
            continue
        level = (value - low) / span if span > 0 else 1.0
        out.append(SPARKS[min(len(SPARKS) - 1, max(0, int(level * len(SPARKS))))])
    return "".join(out)
