"""The trial-edge table and the queue functions agree (issue 24, item 4).

Every ``TrialMove`` is driven from every state a trial can be in (each stored status,
and ``running`` both held and started), on SQLite and PostgreSQL: it must change the
trial exactly when the state is one of the edge's sources, and then only into one of
its targets; and every target of every edge is reached.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select, update

from ma2ml.spec import EarlyStopping
from ma2ml.store import (
    TRIAL_EDGES,
    StaleAttemptError,
    Store,
    TrialMove,
    TrialProposal,
    TrialStatus,
)
from ma2ml.store.lifecycle import HELD
from ma2ml.store.models import TRIALS

ASHA = EarlyStopping(type="asha", min_epochs=1, reduction_factor=3)
ATTEMPT = 2  # every subject trial is at attempt 2: a late report from attempt 1 is possible
#: The states a trial can be in: each stored status, and a running trial held (not started).
STATES = (*TrialStatus, HELD)


@dataclass(frozen=True)
class Subject:
    store: Store
    search_id: int
    trial_id: int


# One call of a move per target it can reach; each returns nothing or raises.
Call = Callable[[Subject], Any]
CALLS: dict[TrialMove, dict[str, Call]] = {
    TrialMove.claim: {"claim": lambda s: s.store.claim(s.search_id, "w2", 600)},
    TrialMove.claim_ahead: {
        "claim ahead": lambda s: s.store.claim_ahead(s.search_id, "w2", 600, 0)},
    TrialMove.start_held: {"start": lambda s: s.store.start_held(s.trial_id, ATTEMPT, 600)},
    TrialMove.heartbeat: {"beat": lambda s: s.store.heartbeat(s.trial_id, ATTEMPT, 600)},
    TrialMove.report_step: {
        "go on": lambda s: s.store.report_step(s.trial_id, ATTEMPT, 2, 0.5, {}),
        "stop": lambda s: s.store.report_step(s.trial_id, ATTEMPT, 1, 0.1, {})},
    TrialMove.complete: {
        # From attempt 1: a pending trial takes a result only from an attempt handed over.
        "completed": lambda s: s.store.complete(s.trial_id, 1, 0.5, {}),
        "diverged": lambda s: s.store.complete(s.trial_id, 1, float("nan"), {},
                                                       diverged=True)},
    TrialMove.fail: {
        "retry": lambda s: s.store.fail(s.trial_id, ATTEMPT, "boom", retryable=True,
                                           max_retries=1),
        "give up": lambda s: s.store.fail(s.trial_id, ATTEMPT, "boom", retryable=False,
                                             max_retries=1)},
    TrialMove.release: {"release": lambda s: s.store.release(s.trial_id, ATTEMPT)},
    TrialMove.requeue_expired: {
        "retry": lambda s: s.store.requeue_expired(s.search_id, 1),
        "give up": lambda s: s.store.requeue_expired(s.search_id, 0)},
}


def _proposal() -> TrialProposal:
    return TrialProposal(pipeline={"x": 1}, action={"aug": [0]}, behaviour_logp={"aug": -1.0},
                         policy_version=0)


def _subject(store: Store, state: str, stopping_search: Any) -> Subject:
    """A search (ASHA, 9 epochs) whose first trial (the rival) is running with a result at
    epoch 1, and whose second trial is put in ``state`` at attempt 2, its lease (if any)
    expired."""
    search_id = stopping_search(store, "default/edges", ASHA, 9).id
    rival_id, trial_id = store.enqueue_trials(search_id, [_proposal(), _proposal()])
    rival = store.claim(search_id, "w1", 600)
    assert rival is not None and rival.id == rival_id
    store.report_step(rival.id, rival.attempt, 1, 0.9, {})  # what ASHA judges by
    values: dict[str, Any] = {"attempt": ATTEMPT}
    if state in (TrialStatus.running, HELD):
        values.update(status=TrialStatus.running, worker="w0", heartbeat_at=1.0,
                      lease_expires_at=1.0, started_at=None if state == HELD else 1.0)
    elif state != TrialStatus.pending:
        values.update(status=state, finished_seq=99, finished_at=1.0)
    with store.engine.begin() as connection:
        connection.execute(update(TRIALS).where(TRIALS.c.id == trial_id).values(values))
    return Subject(store, search_id, trial_id)


def _row(subject: Subject) -> dict[str, Any]:
    with subject.store.engine.connect() as connection:
        row = connection.execute(select(TRIALS).where(TRIALS.c.id == subject.trial_id)).one()
    return dict(row._mapping)


def _stored(state: str) -> TrialStatus:
    return TrialStatus.running if state == HELD else TrialStatus(state)


def test_every_move_is_driven() -> None:
    assert set(CALLS) | {TrialMove.enqueue} == set(TRIAL_EDGES) == set(TrialMove)


def test_enqueue_makes_its_edge(store: Store) -> None:
    search_id = store.create_search("default/edges", {}).id
    store.enqueue_trials(search_id, [_proposal()])
    [trial] = store.list_trials(search_id)
    edge = TRIAL_EDGES[TrialMove.enqueue]
    assert not edge.sources and trial.status in edge.targets


@pytest.mark.parametrize("move", list(CALLS))
def test_each_move_makes_exactly_its_edges(store: Store, move: TrialMove,
                                           stopping_search: Any) -> None:
    edge = TRIAL_EDGES[move]
    reached: set[TrialStatus] = set()
    for state in STATES:
        allowed = _stored(state) in edge.sources and (state == HELD or not edge.held_only)
        for name, call in CALLS[move].items():
            subject = _subject(store, state, stopping_search)
            before = _row(subject)
            with contextlib.suppress(StaleAttemptError):  # a fenced-off report
                call(subject)
            after = _row(subject)
            store.delete_search("default/edges")
            where = f"{move} ({name}) from {state}"
            if not allowed:
                assert after == before, f"{where}: moved the trial, outside its edge's sources"
                continue
            assert after != before, f"{where}: changed nothing, though a source of its edge"
            assert after["status"] in edge.targets, f"{where}: ended {after['status']}"
            reached.add(TrialStatus(after["status"]))
    assert reached == edge.targets, f"{move}: the table's targets are not what it reaches"


def test_an_edge_refuses_a_status_outside_its_targets() -> None:
    with pytest.raises(ValueError, match="not a target"):
        TRIAL_EDGES[TrialMove.release].target(TrialStatus.failed)
