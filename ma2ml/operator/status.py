"""Pure status logic: store counts + best trial -> phase, replicas, ``.status`` and Events.

Decided by counting, as Katib does, with the store's one stop rule
(``store.budget_verdict``): the search succeeds at ``maxTrials`` results, at
``maxTrainingHours`` trained or at ``maxDuration`` elapsed (or when the learner
marks it finished) and fails at ``maxFailedTrials`` failures (or when the
learner marks it failed); the status says which, and shows the time used.
The operator only *shows* that verdict at once; moving the stored state to
finished/failed is the learner's edge.
The status has a fixed shape: counters, the best trial with a compact
pipeline, and the same five conditions, however many trials ran.
Milestone Events are derived from the change between the old and new status,
so no process has to remember what it already announced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ma2ml.spaces.display import compact_pipeline
from ma2ml.spec import (
    BestTrial,
    Condition,
    Phase,
    PipelineSearchSpec,
    PipelineSearchStatus,
    TrialCounts,
)
from ma2ml.store import (
    TERMINAL_SEARCH_STATES,
    Counts,
    SearchState,
    TrialStatus,
    Usage,
    budget_verdict,
)

#: Characters of one agent's compact pipeline kept in the status (bounds the CR size).
MAX_PIPELINE_CHARS = 512
CONDITION_TYPES = ("SpecValid", "Running", "Suspended", "Succeeded", "Failed")
TERMINAL = frozenset({Phase.succeeded, Phase.failed})


@dataclass(frozen=True)
class Verdict:
    """The phase and why; the reason is a CamelCase word, the message a sentence."""

    phase: Phase
    reason: str
    message: str


@dataclass(frozen=True)
class Best:
    """What the status shows of the best trial (a slice of the store's TrialRecord)."""

    number: int
    reward: float
    metrics: Mapping[str, Any]
    pipeline: Mapping[str, Any]


@dataclass(frozen=True)
class Milestone:
    """A Kubernetes Event to post: type Normal or Warning."""

    type: str
    reason: str
    message: str


_BUDGET_PHASES = {SearchState.failed: Phase.failed, SearchState.finished: Phase.succeeded}


def decide(spec: PipelineSearchSpec, store_state: SearchState | None, counts: Counts,
           usage: Usage, store_message: str | None = None) -> Verdict:
    """The phase of a valid search from the store's state, trial counts, time used and
    message."""
    budget = budget_verdict(spec.budget, counts, usage)
    if store_state == SearchState.failed and budget.state != SearchState.failed:
        return Verdict(Phase.failed, "LearnerFailed",
                       store_message or "the learner marked the search failed")
    if budget.state is not None:
        # Once the learner ended the search, its words at that moment: the clock in a
        # maxDuration message goes on, and would rewrite the status at every timer tick.
        ended = store_message if store_state in TERMINAL_SEARCH_STATES else None
        return Verdict(_BUDGET_PHASES[budget.state], budget.reason, ended or budget.message)
    if store_state == SearchState.finished:
        return Verdict(Phase.succeeded, "LearnerFinished",
                       store_message or "the learner marked the search finished")
    if spec.suspend:
        return Verdict(Phase.suspended, "Suspended", "spec.suspend is true: workers scaled to 0")
    return Verdict(Phase.running, budget.reason, budget.message)


def desired_replicas(spec: PipelineSearchSpec, phase: Phase, counts: Counts) -> tuple[int, int]:
    """``(learner, workers)``: workers = min(parallelism, trials still to finish)."""
    if phase in TERMINAL:
        return 0, 0
    if phase != Phase.running:
        return 1, 0
    remaining = max(spec.budget.max_trials - counts.results, 0)
    return 1, min(spec.budget.parallelism, remaining)


def best_trial(best: Best | None) -> BestTrial | None:
    """The status' best trial; accuracy and FLOPs come from the worker's ``metrics``."""
    if best is None:
        return None
    return BestTrial(
        trial=best.number, reward=best.reward,
        accuracy=_number(best.metrics.get("accuracy")), flops=_number(best.metrics.get("flops")),
        pipeline=compact_pipeline(best.pipeline, max_chars=MAX_PIPELINE_CHARS))


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def trial_counts(counts: Counts) -> TrialCounts:
    return TrialCounts(total=counts.total, **counts)


def conditions(verdict: Verdict, old: Mapping[str, Any], now: str,
               invalid: str | None = None) -> list[Condition]:
    """The five conditions; a transition time changes only when the status does."""
    previous = {c.get("type"): c for c in old.get("conditions", []) if isinstance(c, Mapping)}
    states = {
        "SpecValid": (invalid is None, "InvalidSpec" if invalid else "Valid", invalid or ""),
        "Running": (verdict.phase == Phase.running, verdict.reason, verdict.message),
        "Suspended": (verdict.phase == Phase.suspended, verdict.reason, verdict.message),
        "Succeeded": (verdict.phase == Phase.succeeded, verdict.reason, verdict.message),
        "Failed": (verdict.phase == Phase.failed, verdict.reason, verdict.message),
    }
    result = []
    for kind in CONDITION_TYPES:
        true, reason, message = states[kind]
        status: Literal["True", "False"] = "True" if true else "False"
        before = previous.get(kind, {})
        since = before.get("lastTransitionTime") if before.get("status") == status else None
        result.append(Condition(type=kind, status=status, reason=reason, message=message,
                                last_transition_time=since or now))
    return result


@dataclass(frozen=True)
class TimeUsed:
    """What the status shows of the time used: how long the search ran
    (``lifecycle.shown_elapsed``: still once it ended) and its trials' training time."""

    elapsed_seconds: float
    training_seconds: float


def build_status(verdict: Verdict, counts: Counts, best: Best | None,
                 old: Mapping[str, Any], generation: int | None, now: str,
                 invalid: str | None = None, used: TimeUsed | None = None) -> dict[str, Any]:
    """The whole ``.status`` as JSON (unset fields left out). Time used is rounded (whole
    seconds, hundredths of an hour): while a search runs its status changes at most once
    a second, and the timer's interval bounds how often it is written."""
    terminal = verdict.phase in TERMINAL
    started = old.get("startTime") or (now if verdict.phase == Phase.running else None)
    finished = (old.get("completionTime") or now) if terminal else None
    elapsed = None if used is None else int(used.elapsed_seconds)
    hours = None if used is None else round(used.training_seconds / 3600, 2)
    if used is not None and _shown_ending(verdict, old):
        # Ended, and shown so already: its words and time used stay as they were then, as
        # completionTime does, even if the learner was scaled down before it recorded the
        # end (a maxDuration message would otherwise be rewritten at every timer tick).
        # (An invalid spec shows no time used, and its message follows the spec's edits.)
        verdict = Verdict(verdict.phase, verdict.reason, old.get("message") or verdict.message)
        elapsed, hours = old.get("elapsedSeconds", elapsed), old.get("trainingHours", hours)
    status = PipelineSearchStatus(
        phase=verdict.phase, observed_generation=generation,
        conditions=conditions(verdict, old, now, invalid),
        trials=trial_counts(counts), best=best_trial(best),
        start_time=started, completion_time=finished, message=verdict.message,
        elapsed_seconds=elapsed, training_hours=hours)
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def _shown_ending(verdict: Verdict, old: Mapping[str, Any]) -> bool:
    """Whether the old status already shows this ending: the same terminal phase, for the
    same reason."""
    return verdict.phase in TERMINAL and any(
        isinstance(c, Mapping) and (c.get("type"), c.get("status"), c.get("reason")) == (
            verdict.phase, "True", verdict.reason) for c in old.get("conditions") or [])


def invalid_verdict(lines: list[str]) -> Verdict:
    return Verdict(Phase.failed, "InvalidSpec", "; ".join(lines))


def same_status(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Equal up to keys whose value is None (absent and null mean the same)."""
    return bool(_drop_none(old) == _drop_none(new))


def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def milestones(old: Mapping[str, Any], new: Mapping[str, Any], failure_threshold: int
               ) -> list[Milestone]:
    """Events for what changed: started, suspended/resumed, new best, failures, finished."""
    spec_events = _spec_events(old, new)
    events = list(spec_events)
    before, after = old.get("phase"), new["phase"]
    if after == Phase.running and before in (None, Phase.pending):
        events.append(Milestone("Normal", "Started", "learner and workers created"))
    elif after == Phase.running and before == Phase.suspended:
        events.append(Milestone("Normal", "Resumed", "workers scaled back up"))
    elif after == Phase.suspended and before != Phase.suspended:
        events.append(Milestone("Normal", "Suspended", "workers scaled to 0; the store is kept"))
    old_best, new_best = old.get("best") or {}, new.get("best") or {}
    if new_best and new_best.get("trial") != old_best.get("trial"):
        accuracy = new_best.get("accuracy")
        detail = f" (accuracy {accuracy:.4f})" if accuracy is not None else ""
        events.append(Milestone("Normal", "NewBest",
                                f"trial {new_best['trial']}: reward {new_best['reward']:.4f}"
                                f"{detail}"))
    failed = TrialStatus.failed
    failed_before = (old.get("trials") or {}).get(failed, 0)
    if failed_before < failure_threshold <= new["trials"][failed]:
        events.append(Milestone("Warning", "TrialsFailing",
                                f"{new['trials'][failed]} trials failed"))
    if after in TERMINAL and before != after and not spec_events:
        kind = "Normal" if after == Phase.succeeded else "Warning"
        events.append(Milestone(kind, after, new.get("message", "")))
    return events


def _spec_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Milestone]:
    """An InvalidSpec warning when the spec became invalid or its problems changed."""
    def spec_valid(status: Mapping[str, Any]) -> Mapping[str, Any]:
        found = [c for c in status.get("conditions") or [] if c.get("type") == "SpecValid"]
        return found[0] if found else {}

    now, then = spec_valid(new), spec_valid(old)
    if now.get("status") == "False" and (then.get("status"), then.get("message")) != (
            "False", now.get("message")):
        return [Milestone("Warning", "InvalidSpec", now.get("message", ""))]
    return []


def failure_threshold(spec: PipelineSearchSpec, fraction: float) -> int:
    """Failed trials at which the TrialsFailing warning is posted (at least 1)."""
    return max(1, math.ceil(spec.budget.max_failed_trials * fraction))
