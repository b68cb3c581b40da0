"""Reads of the replay buffer: counts, time used, best trial, finished_since, replay_sample,
listing."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import event, update

from ma2ml.store import STATUSES, SearchNotFoundError, Store, TrialProposal
from ma2ml.store.models import SEARCHES, TRIALS


def _proposal(x: int) -> TrialProposal:
    return TrialProposal({"x": x}, {"hpo": [x]}, {"hpo": -1.0}, 0)


def _finish_all(store: Store, search_id: int, rewards: list[float], failed: set[int]) -> list[int]:
    """Enqueue one trial per reward and finish them in a shuffled order; returns ids."""
    ids = store.enqueue_trials(search_id, [_proposal(i) for i in range(len(rewards))])
    claimed = [store.claim(search_id, "w", 60) for _ in ids]
    random.Random(3).shuffle(claimed)
    for trial in claimed:
        assert trial is not None
        index = ids.index(trial.id)
        if index in failed:
            store.fail(trial.id, trial.attempt, "boom", retryable=False, max_retries=0)
        else:
            store.complete(trial.id, trial.attempt, rewards[index], {"i": index})
    return ids


@pytest.fixture
def search_id(store: Store) -> int:
    return store.create_search("default/replay", {}).id


def test_counts_every_status_present(store: Store, search_id: int) -> None:
    assert store.counts(search_id) == dict.fromkeys(STATUSES, 0)
    store.enqueue_trials(search_id, [_proposal(i) for i in range(4)])
    first = store.claim(search_id, "w", 60)
    assert first is not None
    store.complete(first.id, first.attempt, 0.5, {})
    store.claim(search_id, "w", 60)
    assert store.counts(search_id) == {
        "pending": 2,
        "running": 1,
        "completed": 1,
        "diverged": 0,
        "stopped": 0,
        "failed": 0,
    }


def test_best_trial_is_highest_completed_reward(store: Store, search_id: int) -> None:
    assert store.best_trial(search_id) is None
    rewards = [random.Random(i).random() for i in range(12)]
    rewards[5] = 2.0  # the highest, but it fails: never the best
    ids = _finish_all(store, search_id, rewards, failed={5})
    best = store.best_trial(search_id)
    completed = [(r, i) for i, r in enumerate(rewards) if i != 5]
    assert best is not None and best.id == ids[max(completed)[1]]
    assert best.reward == max(completed)[0]
    search = store.get_search_by_id(search_id)
    assert search is not None and search.best_trial_id == best.id


def test_finished_since_in_sequence_order(store: Store, search_id: int) -> None:
    _finish_all(store, search_id, [0.1 * i for i in range(10)], failed={2, 7})
    finished = store.finished_since(search_id, 0)
    assert [t.finished_seq for t in finished] == list(range(1, 11))
    assert {t.status for t in finished} == {"completed", "failed"}
    assert [t.finished_seq for t in store.finished_since(search_id, 4, limit=3)] == [5, 6, 7]
    assert store.finished_since(search_id, 10) == []
    times = [t.finished_at for t in finished]
    assert times == sorted(times)  # sequence order is commit order


def test_replay_sample_without_duplicates(store: Store, search_id: int) -> None:
    assert store.replay_sample(search_id, 5) == []
    ids = _finish_all(store, search_id, [0.5] * 20, failed={0})
    sample = store.replay_sample(search_id, 8, seed=11)
    assert len(sample) == 8 and len({t.id for t in sample}) == 8
    assert {t.id for t in sample} <= set(ids)
    assert [t.id for t in store.replay_sample(search_id, 8, seed=11)] == [t.id for t in sample]
    everything = store.replay_sample(search_id, 100, seed=1)
    assert sorted(t.id for t in everything) == sorted(ids)  # failed included
    assert store.replay_sample(search_id, 0) == []


def test_replay_sample_is_uniform(store: Store, search_id: int) -> None:
    _finish_all(store, search_id, [0.5] * 20, failed=set())
    hits: Counter[int] = Counter()
    draws = 300
    for seed in range(draws):
        hits.update(t.finished_seq for t in store.replay_sample(search_id, 10, seed=seed))
    # Each of 20 trials is in a sample of 10 with probability 1/2: mean 150, sd ~8.7.
    assert set(hits) == set(range(1, 21))
    assert all(110 <= count <= 190 for count in hits.values()), hits


def test_replay_sample_does_not_sort_randomly(store: Store, search_id: int) -> None:
    _finish_all(store, search_id, [0.5] * 5, failed=set())
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.lower())

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        store.replay_sample(search_id, 3, seed=0)
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    assert statements and not any("random" in s or "order by" in s for s in statements)


def test_list_trials_filters_and_orders(store: Store, search_id: int) -> None:
    rewards = [0.3, 0.9, 0.1, 0.6]
    ids = _finish_all(store, search_id, rewards, failed={3})
    store.enqueue_trials(search_id, [_proposal(9)])
    assert [t.number for t in store.list_trials(search_id)] == [1, 2, 3, 4, 5]
    by_reward = store.list_trials(search_id, order_by="reward", descending=True)
    assert [t.reward for t in by_reward] == [0.9, 0.3, 0.1, None, None]  # NULLs last
    completed = store.list_trials(search_id, status="completed", order_by="reward", limit=2)
    assert [t.id for t in completed] == [ids[2], ids[0]]
    assert [t.number for t in store.list_trials(search_id, descending=True, limit=2)] == [5, 4]
    assert [t.status for t in store.list_trials(search_id, status="pending")] == ["pending"]
    with pytest.raises(ValueError, match="known"):
        store.list_trials(search_id, order_by="nonsense")
    with pytest.raises(ValueError, match="status"):
        store.list_trials(search_id, status="done")
    assert store.get_trial(987_654) is None


# -- time used (Store.usage): the search's age and its trials' training time -----------


#: How far the database's clock may be from the test's (SQLite's has milliseconds).
CLOCKS = 0.5


def _set_times(store: Store, trial_id: int, **times: float) -> float:
    """Put known times on a trial (seconds ago, on the test's clock), as if it had trained;
    returns the test's clock they are counted from."""
    now = time.time()
    with store.engine.begin() as connection:
        connection.execute(update(TRIALS).where(TRIALS.c.id == trial_id)
                           .values({k: now - ago for k, ago in times.items()}))
    return now


def test_usage_sums_every_attempt_and_never_goes_down(store: Store, search_id: int) -> None:
    assert store.usage(search_id).training_seconds == 0.0
    created = time.time()
    with store.engine.begin() as connection:  # created 1000 s ago
        connection.execute(update(SEARCHES).where(SEARCHES.c.id == search_id)
                           .values(created_at=created - 1000))
    done, running, expired, released, held, _pending = store.enqueue_trials(
        search_id, [_proposal(i) for i in range(6)])
    claimed = [store.claim(search_id, "w", 60) for _ in range(4)]
    assert [c.id for c in claimed if c is not None] == [done, running, expired, released]
    store.complete(done, 1, 0.5, {})
    _set_times(store, done, started_at=100, finished_at=40)  # 60 s to its result
    _set_times(store, running, started_at=50, heartbeat_at=20)  # 30 s to its last beat
    _set_times(store, expired, started_at=300, heartbeat_at=285, lease_expires_at=1)
    set_released = _set_times(store, released, started_at=20, heartbeat_at=5)
    ahead = store.claim_ahead(search_id, "w", 60, parallelism=1)  # leased, never started
    assert ahead is not None and ahead.id == held

    # Time goes on between two statements, as much as a loaded machine makes it: bounds
    # measured around them, not a guess of how long that is.
    before = store.usage(search_id)
    assert 1000 - CLOCKS <= before.elapsed_seconds <= 1000 + time.time() - created + CLOCKS
    assert before.training_seconds == pytest.approx(60 + 30 + 15 + 15, abs=0.01)
    # A released attempt counts up to its release, an expired one up to its last beat:
    # the work lost to a hand-over still counts, and the sum never goes down.
    store.release(released, 1)
    released_by = time.time()
    assert store.requeue_expired(search_id, max_retries=3) == (1, 0)
    after = store.usage(search_id)
    least = 60 + 30 + 15 + 20  # the released attempt started 20 s before set_released
    assert least - CLOCKS <= after.training_seconds <= (
        least + released_by - set_released + CLOCKS)
    assert after.training_seconds >= before.training_seconds
    retried = store.get_trial(expired)
    assert retried is not None and (retried.status, retried.started_at) == ("pending", None)
    again = store.claim(search_id, "w2", 60)  # the expired trial, retried: a new attempt
    assert again is not None and again.id == expired
    assert store.usage(search_id).training_seconds == pytest.approx(after.training_seconds,
                                                                    abs=2)
    assert store.usage(search_id).training_hours == pytest.approx(
        store.usage(search_id).training_seconds / 3600)


def test_usage_of_a_search_that_does_not_exist(store: Store) -> None:
    with pytest.raises(SearchNotFoundError):
        store.usage(12345)
