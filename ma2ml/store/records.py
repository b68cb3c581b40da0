"""Plain, frozen records the store returns (never ORM objects).

The status vocabulary lives in ``lifecycle``; ``STATUSES`` is derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ma2ml.spec import PipelineSearch
from ma2ml.store.lifecycle import SearchState, TrialStatus
from ma2ml.store.parsed import stored_search

#: Every trial status, in lifecycle order.
STATUSES: tuple[TrialStatus, ...] = tuple(TrialStatus)


@dataclass(frozen=True, slots=True)
class SearchRecord:
    """One search: its spec and life-cycle state. Times are epoch seconds (database clock).

    ``spec`` is the stored document; ``search`` the same parsed, which is what every
    reader of a setting uses (defaults live in ``ma2ml.spec`` alone).
    """

    id: int
    name: str
    spec: dict[str, Any]
    state: SearchState
    created_at: float
    finished_at: float | None
    best_trial_id: int | None
    #: Why the search is in its state (set with a move, e.g. a learner that cannot start).
    message: str | None = None
    _search: PipelineSearch | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def search(self) -> PipelineSearch:
        """The spec parsed (``stored=True``): once per record, and once per stored
        document across records (``store.parsed``)."""
        search = self._search
        if search is None:
            search = stored_search(self.id, self.spec)
            object.__setattr__(self, "_search", search)
        return search


@dataclass(frozen=True, slots=True)
class TrialProposal:
    """A trial the learner wants run: the sampled pipeline and how it was sampled.

    ``action`` holds the decision indices per agent (``{"aug": [3, 0, ...], ...}``) and
    ``behaviour_logp`` the log-probability each agent's behaviour policy gave them.
    """

    pipeline: dict[str, Any]
    action: dict[str, Any]
    behaviour_logp: dict[str, float]
    policy_version: int


@dataclass(frozen=True, slots=True)
class ClaimedTrial:
    """What a worker needs to run a trial it claimed; ``attempt`` is its fencing token."""

    id: int
    number: int
    search_id: int
    attempt: int
    pipeline: dict[str, Any]
    action: dict[str, Any]
    policy_version: int


@dataclass(frozen=True, slots=True)
class TrialRecord:
    """A full trial row. ``finished_seq`` orders finished trials (1, 2, ... per search)."""

    id: int
    search_id: int
    number: int
    status: TrialStatus
    attempt: int
    failures: int
    pipeline: dict[str, Any]
    action: dict[str, Any]
    behaviour_logp: dict[str, float]
    policy_version: int
    worker: str | None
    reward: float | None
    metrics: dict[str, Any] | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    finished_seq: int | None
    #: Last epoch reported as a step (a stopped trial's fidelity); None without steps.
    last_step: int | None = None


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """What the learner reads of a finished trial: only the columns it learns from (no
    pipeline, metrics or times), so that taking in a backlog moves little data."""

    finished_seq: int
    status: TrialStatus
    action: dict[str, Any]
    behaviour_logp: dict[str, float]
    reward: float | None
    #: Last epoch reported as a step (a stopped trial's fidelity); None without steps.
    last_step: int | None


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A versioned policy snapshot: opaque ``state`` bytes plus JSON ``stats``."""

    search_id: int
    version: int
    created_at: float
    state: bytes = field(repr=False)
    stats: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One point of a trial's learning curve and the early-stopping verdict on it."""

    trial_id: int
    step: int
    value: float | None
    metrics: dict[str, Any]
    decision: str
