"""The trial and search lifecycles: statuses, counts, time used, the budget rule and who
moves what.

Everything that decides "is this search over?" or "how many results are
there?" imports it from here, so the learner, the operator and ``ma2ml run``
cannot disagree.

Trials (``TRIAL_EDGES`` names the one function of ``store.queue`` that makes each edge;
that function's SQL filters on the edge's sources and writes only its targets)::

    pending --claim--> running --complete--> completed | diverged
       |                  ^
       +--claim_ahead--> (held) --start_held--+
       ^                  |  \\--report_step (early stopping says stop)--> stopped
       |                  |  \\--fail (out of retries)--> failed
       |                  |   \\--lease expired, out of retries--> failed
       +--release / retryable fail / lease expired (retries left)--+

A *held* trial (prefetch) is stored ``running`` with ``started_at`` NULL: a
worker leased it while training another one, and has not started it. Its lease
is kept and fenced like a running trial's, so it needs no status of its own;
readers show it as held (``is_held``), and an expired lease sends it back to
pending without counting a failed attempt (it never ran).

Searches (``SEARCH_EDGES`` names the one owner of each edge)::

    running <--suspend / resume (controller)--> suspended
    running | suspended --budget: maxTrials, maxTrainingHours or maxDuration (learner)--> finished
    running | suspended --budget: maxFailedTrials failures, or cannot start (learner)--> failed
    finished --budget raised above what was used (controller)--> running

The *controller* is whoever applies the spec: the operator in a cluster,
``ma2ml run`` on one machine. ``Store.move_search`` refuses an edge that is
not in the table or not the caller's, and moves only from the state it
expects (a compare-and-set), so a controller's "suspend" can never overwrite
a learner's "finished" that landed a moment earlier.

What a controller may change in a stored search's spec (``spec_edit``, one
rule for both controllers): the budget, parallelism, suspend, early stopping,
the worker's pod and the like at any time; the fields its trials were drawn
from and judged by (``FIXED_AT_CREATION``) only while no trial has a result.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ma2ml.durations import format_duration

if TYPE_CHECKING:
    from ma2ml.spec import Budget, PipelineSearchSpec


class TrialStatus(enum.StrEnum):
    """Where a trial is in its life; stored as these strings."""

    pending = "pending"
    running = "running"
    completed = "completed"
    diverged = "diverged"
    stopped = "stopped"
    failed = "failed"


#: Statuses a trial never leaves; each of them carries a ``finished_seq``.
TERMINAL_STATUSES: frozenset[TrialStatus] = frozenset(
    {TrialStatus.completed, TrialStatus.diverged, TrialStatus.stopped, TrialStatus.failed})
#: Statuses that count as a result towards ``maxTrials``: a diverged training is an
#: answer, and so is a trial stopped early (it spent its budget, as in Katib and Ray Tune).
#: Only completed trials compete for the best pipeline (full fidelity).
RESULT_STATUSES: frozenset[TrialStatus] = frozenset(
    {TrialStatus.completed, TrialStatus.diverged, TrialStatus.stopped})


class TrialMove(enum.StrEnum):
    """The functions of ``store.queue`` that write a trial's status, one edge each."""

    enqueue = "enqueue"
    claim = "claim"
    claim_ahead = "claim_ahead"
    start_held = "start_held"
    heartbeat = "heartbeat"
    report_step = "report_step"
    complete = "complete"
    fail = "fail"
    release = "release"
    requeue_expired = "requeue_expired"


@dataclass(frozen=True)
class TrialEdge:
    """The statuses a ``TrialMove`` moves a trial from and to. ``held_only``: from a held
    trial only (stored ``running``, not started)."""

    sources: frozenset[TrialStatus]
    targets: frozenset[TrialStatus]
    held_only: bool = False

    def target(self, status: TrialStatus) -> TrialStatus:
        """``status``, checked to be one of the edge's targets (ValueError: it is not)."""
        if status not in self.targets:
            raise ValueError(f"{status!r} is not a target of this edge "
                             f"({', '.join(sorted(self.targets))})")
        return status


def _edge(sources: set[TrialStatus], targets: set[TrialStatus], *, held_only: bool = False
          ) -> TrialEdge:
    return TrialEdge(frozenset(sources), frozenset(targets), held_only)


_S = TrialStatus
#: Every write of a trial's status, by the function that makes it (``store.queue``). A
#: function called on a trial outside its sources changes nothing (or raises
#: ``StaleAttemptError``); a test drives each one from every status on both backends.
#: Self-edges (``running`` to ``running``) are the fenced writes that keep a lease.
TRIAL_EDGES: dict[TrialMove, TrialEdge] = {
    TrialMove.enqueue: _edge(set(), {_S.pending}),  # inserts new trials
    TrialMove.claim: _edge({_S.pending}, {_S.running}),
    TrialMove.claim_ahead: _edge({_S.pending}, {_S.running}),  # held: not started
    TrialMove.start_held: _edge({_S.running}, {_S.running}, held_only=True),
    TrialMove.heartbeat: _edge({_S.running}, {_S.running}),
    # Early stopping says go on (the furthest epoch is recorded) or stop.
    TrialMove.report_step: _edge({_S.running}, {_S.running, _S.stopped}),
    # First result wins: also from pending, reported by an attempt handed over since.
    TrialMove.complete: _edge({_S.pending, _S.running}, {_S.completed, _S.diverged}),
    TrialMove.fail: _edge({_S.running}, {_S.pending, _S.failed}),  # retry, or out of retries
    TrialMove.release: _edge({_S.running}, {_S.pending}),
    TrialMove.requeue_expired: _edge({_S.running}, {_S.pending, _S.failed}),
}


#: What readers show for a held trial (``is_held``); never stored.
HELD = "held"


def is_held(status: str, started_at: float | None) -> bool:
    """Whether a trial is held by a worker ahead of training it (prefetch): leased
    (``running``) but not started."""
    return status == TrialStatus.running and started_at is None


def shown_status(status: str, started_at: float | None) -> str:
    """The status to show a person: ``held`` for a held trial, else the stored one."""
    return HELD if is_held(status, started_at) else str(status)


class SearchState(enum.StrEnum):
    """Where a search is in its life; stored as these strings."""

    running = "running"
    suspended = "suspended"
    finished = "finished"
    failed = "failed"


#: Search states after which ``finished_at`` is set and no trial is proposed.
TERMINAL_SEARCH_STATES: frozenset[SearchState] = frozenset(
    {SearchState.finished, SearchState.failed})


class Actor(enum.StrEnum):
    """Who may move a search from one state to another."""

    controller = "controller"  # the operator, or `ma2ml run` on one machine
    learner = "learner"


#: Every allowed search edge and its single owner.
SEARCH_EDGES: dict[tuple[SearchState, SearchState], Actor] = {
    (SearchState.running, SearchState.suspended): Actor.controller,
    (SearchState.suspended, SearchState.running): Actor.controller,
    (SearchState.finished, SearchState.running): Actor.controller,
    (SearchState.running, SearchState.finished): Actor.learner,
    (SearchState.suspended, SearchState.finished): Actor.learner,
    (SearchState.running, SearchState.failed): Actor.learner,
    (SearchState.suspended, SearchState.failed): Actor.learner,
}


def sources(target: SearchState, actor: Actor) -> frozenset[SearchState]:
    """The states ``actor`` may move a search from into ``target`` (ValueError: none)."""
    found = frozenset(a for (a, b), owner in SEARCH_EDGES.items() if b == target and owner == actor)
    if not found:
        raise ValueError(f"the {actor} owns no edge into search state {target!r}")
    return found


# eq=False: compare as a mapping, so ``counts == {"pending": 1, ...}`` works too.
@dataclass(frozen=True, eq=False)
class Counts(Mapping[str, int]):
    """Trials of one search per status; also a read-only mapping ``status -> count``."""

    pending: int = 0
    running: int = 0
    completed: int = 0
    diverged: int = 0
    stopped: int = 0
    failed: int = 0

    @classmethod
    def of(cls, by_status: Mapping[str, int]) -> Counts:
        """From ``{status: count}``; missing statuses count 0, unknown ones are an error."""
        return cls(**{TrialStatus(status).value: int(n) for status, n in by_status.items()})

    @property
    def results(self) -> int:
        """Trials that count towards ``maxTrials``: completed + diverged + stopped."""
        return sum(self[status] for status in RESULT_STATUSES)

    @property
    def failures(self) -> int:
        """Trials that count towards ``maxFailedTrials``."""
        return self.failed

    @property
    def finished(self) -> int:
        """Trials in a terminal status (the replay buffer's size)."""
        return sum(self[status] for status in TERMINAL_STATUSES)

    @property
    def outstanding(self) -> int:
        """Trials proposed but not finished: pending + running."""
        return self.pending + self.running

    @property
    def total(self) -> int:
        return sum(self.values())

    def __getitem__(self, status: str) -> int:
        return int(getattr(self, TrialStatus(status).value))

    def __iter__(self) -> Iterator[str]:
        return iter(TrialStatus)

    def __len__(self) -> int:
        return len(TrialStatus)


@dataclass(frozen=True)
class Usage:
    """Time a search has used, on the database clock (``Store.usage``).

    ``elapsed_seconds``: since the search was created, whatever ran meanwhile (a
    search resumed after a pause, or reopened, goes on with the same clock).
    ``training_seconds``: what its trials trained, each from its start to its
    result (a running one to its last heartbeat), earlier attempts handed back
    included; held and pending trials add nothing.
    """

    elapsed_seconds: float = 0.0
    training_seconds: float = 0.0

    @property
    def training_hours(self) -> float:
        return self.training_seconds / 3600


def shown_elapsed(usage: Usage, created_at: float, finished_at: float | None) -> float:
    """How long a search ran, to show a person: until it ended, else its clock so far. (The
    budget's clock goes on after the end; a view of a search that ended stays still.)"""
    if finished_at is not None:
        return max(0.0, finished_at - created_at)
    return usage.elapsed_seconds


def has_time_limit(budget: Budget) -> bool:
    """Whether the budget limits time at all; without, the verdict needs no ``Usage`` (the
    learner then skips the read, which sums every trial of the search)."""
    return budget.max_duration is not None or budget.max_training_hours is not None


@dataclass(frozen=True)
class BudgetVerdict:
    """What the budget says: the terminal state it calls for (None: go on), and why."""

    state: SearchState | None
    reason: str  # CamelCase, for a Kubernetes condition
    message: str  # a sentence a person can act on


def budget_verdict(budget: Budget, counts: Counts, usage: Usage) -> BudgetVerdict:
    """The stop rule: failed at ``maxFailedTrials`` failures, else finished at the first of
    ``maxTrials`` results, ``maxTrainingHours`` trained and ``maxDuration`` elapsed, else go
    on. Failures are checked first: a search that hit both failed.

    Once a search ended, its results and training time stay as they were while its clock
    goes on, so the clock is checked last: the reason of a finished search stays the one
    that ended it.
    """
    if counts.failures >= budget.max_failed_trials:
        return BudgetVerdict(SearchState.failed, "TooManyFailedTrials",
                             f"{counts.failures} trials failed "
                             f"(maxFailedTrials {budget.max_failed_trials})")
    if counts.results >= budget.max_trials:
        return BudgetVerdict(SearchState.finished, "MaxTrialsReached",
                             f"{counts.results} trials finished (maxTrials {budget.max_trials})")
    hours = budget.max_training_hours
    if hours is not None and usage.training_hours >= hours:
        return BudgetVerdict(SearchState.finished, "MaxTrainingHoursReached",
                             f"trials trained {format_duration(usage.training_seconds)} "
                             f"(maxTrainingHours {hours:g})")
    duration = budget.max_duration
    if duration is not None and usage.elapsed_seconds >= duration:
        return BudgetVerdict(SearchState.finished, "MaxDurationReached",
                             f"search ran {format_duration(usage.elapsed_seconds)} "
                             f"(maxDuration {format_duration(duration)})")
    return BudgetVerdict(None, "TrialsRunning", _progress(budget, counts, usage))


def _progress(budget: Budget, counts: Counts, usage: Usage) -> str:
    """``3/50 trials finished`` and, for each time limit set, how much of it is used."""
    parts = [f"{counts.results}/{budget.max_trials} trials finished"]
    if budget.max_training_hours is not None:
        parts.append(f"trained {format_duration(usage.training_seconds)} of "
                     f"maxTrainingHours {budget.max_training_hours:g}")
    if budget.max_duration is not None:
        parts.append(f"ran {format_duration(usage.elapsed_seconds)} of "
                     f"maxDuration {format_duration(budget.max_duration)}")
    return ", ".join(parts)


def reopens(state: SearchState, budget: Budget, counts: Counts, usage: Usage) -> bool:
    """Whether a controller moves a finished search back to running: its budget was raised
    (``maxTrials`` above the results, a time limit above the time used) and the stop rule
    no longer holds."""
    return state == SearchState.finished and budget_verdict(budget, counts, usage).state is None


#: Spec fields a search's stored trials depend on: a trial's action is an index into the
#: agents' decisions, and its result was measured on this data, objective and trainer and
#: learned from by this algorithm. Changed under stored results, a restarted learner would
#: fail or silently misread them.
FIXED_AT_CREATION = ("agents", "dataset", "objective", "algorithm", "trainer")


@dataclass(frozen=True)
class SpecEdit:
    """How an edited spec relates to the stored search (``spec_edit``)."""

    changed: tuple[str, ...]  # of FIXED_AT_CREATION, as "spec.dataset"
    results: int  # the stored search's trials with a result

    @property
    def refused(self) -> bool:
        """A fixed field changed under stored results: the edit is refused, the search
        goes on as it was (or is restarted on purpose: ``ma2ml run --restart``, a new
        name)."""
        return bool(self.changed) and self.results > 0

    @property
    def starts_over(self) -> bool:
        """A fixed field changed and no trial has a result: nothing to lose, the stored
        search (and its trials proposed for the old spec) is replaced by a new one."""
        return bool(self.changed) and self.results == 0

    @property
    def fields(self) -> str:
        """The changed fields for a message: ``spec.dataset, spec.objective``."""
        return ", ".join(self.changed)


def spec_edit(stored: PipelineSearchSpec, edited: PipelineSearchSpec, counts: Counts) -> SpecEdit:
    """What the controller does with ``edited`` given the stored spec and its trials: take
    it over (neither ``refused`` nor ``starts_over``), refuse it, or start over."""
    changed = tuple(f"spec.{name}" for name in FIXED_AT_CREATION
                    if getattr(stored, name) != getattr(edited, name))
    return SpecEdit(changed, counts.results)
