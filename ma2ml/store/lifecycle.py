"""The trial and search lifecycles: statuses, counts, the budget rule and who moves what.

Everything that decides "is this search over?" or "how many results are
there?" imports it from here, so the learner, the operator and ``ma2ml run``
cannot disagree.

Trials (every edge is made by one function of ``store.queue``)::

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
    running | suspended --budget: maxTrials results (learner)--> finished
    running | suspended --budget: maxFailedTrials failures, or cannot start (learner)--> failed
    finished --maxTrials raised above the results (controller)--> running

The *controller* is whoever applies the spec: the operator in a cluster,
``ma2ml run`` on one machine. ``Store.move_search`` refuses an edge that is
not in the table or not the caller's, and moves only from the state it
expects (a compare-and-set), so a controller's "suspend" can never overwrite
a learner's "finished" that landed a moment earlier.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ma2ml.spec import Budget


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
class BudgetVerdict:
    """What the budget says: the terminal state it calls for (None: go on), and why."""

    state: SearchState | None
    reason: str  # CamelCase, for a Kubernetes condition
    message: str  # a sentence a person can act on


def budget_verdict(budget: Budget, counts: Counts) -> BudgetVerdict:
    """The stop rule: failed at ``maxFailedTrials`` failures, else finished at ``maxTrials``
    results, else go on. Failures are checked first: a search that hit both failed."""
    if counts.failures >= budget.max_failed_trials:
        return BudgetVerdict(SearchState.failed, "TooManyFailedTrials",
                             f"{counts.failures} trials failed "
                             f"(maxFailedTrials {budget.max_failed_trials})")
    if counts.results >= budget.max_trials:
        return BudgetVerdict(SearchState.finished, "MaxTrialsReached",
                             f"{counts.results} trials finished (maxTrials {budget.max_trials})")
    return BudgetVerdict(None, "TrialsRunning",
                         f"{counts.results}/{budget.max_trials} trials finished")


def reopens(state: SearchState, budget: Budget, counts: Counts) -> bool:
    """Whether a controller moves a finished search back to running: its budget was raised
    (``maxTrials`` above the results) and the stop rule no longer holds."""
    return state == SearchState.finished and budget_verdict(budget, counts).state is None
