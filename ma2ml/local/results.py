"""Reading a search's results from the store: counts, best trial, baseline, curves.

Shared by the live view, the end-of-run summary, the report and the
``status``, ``trials`` and ``best`` commands, so they always agree.

The best trial is ranked at full fidelity only: it is a *completed* trial,
trained for every ``trialEpochs``. A trial stopped early by
``spec.earlyStopping`` counts towards ``maxTrials`` and teaches the learner,
but its reward is an intermediate result and never competes (``BEST_RANKING``
is the sentence every command shows).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ma2ml.spec import parse_spec
from ma2ml.store import (
    Counts,
    SearchRecord,
    SearchState,
    StepRecord,
    Store,
    TrialRecord,
    TrialStatus,
)

#: How every command words the best trial's ranking.
BEST_RANKING = ("ranked among completed trials at full fidelity only; "
                "trials stopped early never compete")
#: Characters of a sparkline, lowest to highest.
SPARKS = "▁▂▃▄▅▆▇█"


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

    @property
    def done(self) -> int:
        """Results so far (``Counts.results``: what counts towards ``maxTrials``)."""
        return self.counts.results

    @property
    def random_mean(self) -> float | None:
        return statistics.fmean(self.random_accuracies) if self.random_accuracies else None

    def eta_seconds(self) -> float | None:
        if self.done == 0 or self.done >= self.max_trials:
            return None
        return self.elapsed / self.done * (self.max_trials - self.done)


def accuracy_of(trial: TrialRecord) -> float | None:
    value = (trial.metrics or {}).get("accuracy")
    return float(value) if value is not None else None


def summarize(store: Store, record: SearchRecord, now: float | None = None,
              baseline: bool = True) -> Summary:
    """Counts, best trial, per-agent entropy and (unless ``baseline=False``, as the
    once-a-second live view asks) the random-pipeline baseline, which reads every trial."""
    counts = store.counts(record.id)
    # Trials drawn while every policy was still uniform are pipelines sampled
    # at random: the honest baseline for "what did the search buy".
    initial = []
    if baseline:
        uniform = uniform_logp(record)
        initial = [t for t in store.list_trials(record.id, status=TrialStatus.completed)
                   if was_uniform(t, uniform)]
    snapshot = store.load_snapshot(record.id)
    entropy = dict((snapshot.stats or {}).get("entropy", {})) if snapshot else {}
    end = record.finished_at or now
    elapsed = (end - record.created_at) if end else 0.0
    return Summary(
        key=record.name, state=record.state,
        max_trials=int(record.spec["spec"]["budget"]["maxTrials"]),
        counts=counts, best=store.best_trial(record.id),
        random_accuracies=[a for a in map(accuracy_of, initial) if a is not None],
        entropy={k: float(v) for k, v in entropy.items()}, elapsed=max(0.0, elapsed),
    )


def uniform_logp(record: SearchRecord) -> dict[str, float]:
    """log pi_i(a_i) of any action under a uniform policy, per agent."""
    space = parse_spec(record.spec).spec.search_space()
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
        "number": trial.number, "status": trial.status, "reward": trial.reward,
        "accuracy": metrics.get("accuracy"), "flops": metrics.get("flops"),
        "params": metrics.get("params"), "seconds": duration,
        "epochs": trial.last_step, "policy_version": trial.policy_version,
        "attempt": trial.attempt,
        "worker": trial.worker, "error": trial.error,
    }


def trial_epochs(record: SearchRecord) -> int | None:
    """``spec.budget.trialEpochs`` of a stored search: what full fidelity means."""
    value = record.spec.get("spec", {}).get("budget", {}).get("trialEpochs", 1)
    return int(value) if isinstance(value, int) else None


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
