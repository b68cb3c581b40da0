"""Claiming ahead (worker prefetch) leaves the oldest pending trials to idle workers; a
held trial is not started until its worker starts it, and never costs an attempt."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from ma2ml.store import Actor, SearchState, Store, TrialProposal, queue
from ma2ml.store.engine import write_engine
from ma2ml.store.lifecycle import is_held, shown_status
from ma2ml.store.models import TRIALS


@pytest.fixture
def search_id(store: Store) -> int:
    record = store.create_search("default/ahead", {})
    store.enqueue_trials(record.id, [TrialProposal({"x": i}, {"a": [i]}, {}, 0) for i in range(4)])
    return record.id


def test_one_idle_worker_keeps_the_oldest_pending_trial(store: Store, search_id: int) -> None:
    current = store.claim(search_id, "w1", 30)
    assert current is not None and current.number == 1
    # parallelism 2, one holder (w1): one idle worker, so trial 2 stays for it
    ahead = store.claim_ahead(search_id, "w1", 30, parallelism=2)
    assert ahead is not None and ahead.number == 3 and ahead.attempt == 1
    assert store.claim(search_id, "w2", 30).number == 2  # the idle worker starts at once
    # both workers hold a trial now: nobody is idle, the next one ahead is trial 4
    assert store.claim_ahead(search_id, "w2", 30, parallelism=2).number == 4
    statuses = {t.number: (t.status, t.worker) for t in store.list_trials(search_id)}
    assert statuses == {1: ("running", "w1"), 2: ("running", "w2"), 3: ("running", "w1"),
                        4: ("running", "w2")}


def test_nothing_to_spare_claims_nothing(store: Store, search_id: int) -> None:
    for worker in ("w1", "w2", "w3"):
        assert store.claim(search_id, worker, 30) is not None
    # one pending trial left and one idle worker of parallelism 4: it is not taken
    assert store.claim_ahead(search_id, "w1", 30, parallelism=4) is None
    assert store.pending_count(search_id) == 1
    # parallelism 3 (every worker busy): the last pending trial may be held ahead
    assert store.claim_ahead(search_id, "w1", 30, parallelism=3).number == 4
    assert store.claim_ahead(search_id, "w1", 30, parallelism=3) is None


def _expire(store: Store, trial_id: int) -> None:
    with store.engine.begin() as connection:
        connection.execute(update(TRIALS).where(TRIALS.c.id == trial_id)
                           .values(lease_expires_at=0.0))


def test_a_held_trial_is_not_started_until_its_worker_starts_it(store: Store,
                                                               search_id: int) -> None:
    store.claim(search_id, "w1", 30)
    held = store.claim_ahead(search_id, "w1", 30, parallelism=1)
    trial = store.get_trial(held.id)
    assert (trial.status, trial.started_at, trial.worker) == ("running", None, "w1")
    assert is_held(trial.status, trial.started_at)
    assert shown_status(trial.status, trial.started_at) == "held"
    assert store.start_held(held.id, held.attempt, 30) == {}  # the search's spec
    trial = store.get_trial(held.id)
    assert trial.started_at is not None and not is_held(trial.status, trial.started_at)
    assert store.start_held(held.id, held.attempt, 30) is None  # started already


def test_a_held_trial_of_a_search_that_is_not_running_does_not_start(
        store: Store, search_id: int) -> None:
    store.claim(search_id, "w1", 30)
    held = store.claim_ahead(search_id, "w1", 30, parallelism=1)
    store.move_search(search_id, SearchState.suspended, by=Actor.controller)
    assert store.start_held(held.id, held.attempt, 30) is None
    assert store.get_trial(held.id).started_at is None  # nothing changed
    store.move_search(search_id, SearchState.running, by=Actor.controller)
    store.release(held.id, held.attempt)
    assert store.start_held(held.id, held.attempt, 30) is None  # no longer this attempt's


def test_a_dead_workers_held_trial_goes_back_without_costing_an_attempt(
        store: Store, search_id: int) -> None:
    """The worker died (SIGKILL) while training trial 1 and holding trial 2: trial 1's
    expired lease counts as a failed attempt, trial 2's does not (it never ran)."""
    current = store.claim(search_id, "w1", 30)
    held = store.claim_ahead(search_id, "w1", 30, parallelism=1)
    for trial in (current, held):
        _expire(store, trial.id)
    assert store.requeue_expired(search_id, max_retries=0) == (1, 1)
    ran, never = store.get_trial(current.id), store.get_trial(held.id)
    assert (ran.status, ran.failures) == ("failed", 1)
    assert (never.status, never.failures, never.attempt, never.worker, never.error) == (
        "pending", 0, 2, None, None)
    again = store.claim(search_id, "w2", 30)
    assert again.id == held.id and again.attempt == 2


@pytest.mark.postgres
def test_a_claim_ahead_does_not_lock_the_trials_it_leaves_to_idle_workers(
        postgres_url: str) -> None:
    """A claim ahead passes over the oldest pending trials without locking them: an idle
    worker claiming while the claim ahead's statement runs gets the trial left for it.
    (PostgreSQL: SQLite runs one writer at a time.)"""
    with Store(postgres_url) as store:
        record = store.create_search("default/ahead", {})
        store.enqueue_trials(record.id, [TrialProposal({"x": 1}, {"a": [1]}, {}, 0)])
        # The claim ahead's transaction stays open while the idle worker claims.
        with Session(write_engine(store.engine)) as session, session.begin():
            assert queue.claim_ahead(session, record.id, "w1", 30, parallelism=1) is None
            idle = store.claim(record.id, "w2", 30)
        assert idle is not None and idle.number == 1
