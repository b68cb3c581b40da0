"""The trial queue: claim, heartbeat, fencing, lease expiry, retries, release."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from ma2ml.store import (
    SearchNotFoundError,
    StaleAttemptError,
    Store,
    TrialProposal,
)
from ma2ml.store.text import MAX_ERROR_CHARS, MetricsTooLargeError


def _proposals(count: int, start: int = 0) -> list[TrialProposal]:
    return [
        TrialProposal(
            pipeline={"x": start + index, "nested": {"lr": 0.1}},
            action={"aug": [index % 3, 1], "nas": [2]},
            behaviour_logp={"aug": -1.5, "nas": -0.7},
            policy_version=7,
        )
        for index in range(count)
    ]


@pytest.fixture
def search_id(store: Store) -> int:
    return store.create_search("default/queue", {"budget": 10}).id


def test_enqueue_numbers_and_ids(store: Store, search_id: int) -> None:
    first = store.enqueue_trials(search_id, _proposals(3))
    second = store.enqueue_trials(search_id, _proposals(2, start=3))
    assert store.enqueue_trials(search_id, []) == []
    trials = store.list_trials(search_id)
    assert [t.id for t in trials] == first + second
    assert [t.number for t in trials] == [1, 2, 3, 4, 5]
    assert store.max_trial_number(search_id) == 5
    assert store.pending_count(search_id) == 5
    trial = trials[0]
    assert (trial.status, trial.attempt, trial.failures) == ("pending", 1, 0)
    assert trial.pipeline == {"x": 0, "nested": {"lr": 0.1}}
    assert trial.action == {"aug": [0, 1], "nas": [2]}
    assert list(trial.action) == ["aug", "nas"]  # agent order survives the round trip
    assert trial.behaviour_logp == {"aug": -1.5, "nas": -0.7}
    assert trial.policy_version == 7
    assert trial.created_at == pytest.approx(time.time(), abs=60)


def test_enqueue_unknown_search(store: Store) -> None:
    with pytest.raises(SearchNotFoundError):
        store.enqueue_trials(12345, _proposals(1))


def test_claim_oldest_first_then_none(store: Store, search_id: int) -> None:
    ids = store.enqueue_trials(search_id, _proposals(2))
    first = store.claim(search_id, "w1", 30)
    second = store.claim(search_id, "w2", 30)
    assert store.claim(search_id, "w3", 30) is None
    assert first is not None and second is not None
    assert [first.id, second.id] == ids
    assert (first.number, first.attempt, first.search_id) == (1, 1, search_id)
    assert first.pipeline["x"] == 0 and first.action == {"aug": [0, 1], "nas": [2]}
    assert first.policy_version == 7
    record = store.get_trial(first.id)
    assert record is not None and record.status == "running" and record.worker == "w1"
    assert record.started_at is not None
    assert store.claim(search_id + 1, "w1", 30) is None  # another search's queue is empty


def test_complete_records_result(store: Store, search_id: int) -> None:
    store.enqueue_trials(search_id, _proposals(1))
    trial = store.claim(search_id, "w1", 30)
    assert trial is not None
    assert store.heartbeat(trial.id, trial.attempt, 30)
    seq = store.complete(trial.id, trial.attempt, 0.91, {"accuracy": 0.91, "loss": math.nan})
    assert seq == 1
    record = store.get_trial(trial.id)
    assert record is not None
    assert (record.status, record.reward, record.finished_seq) == ("completed", 0.91, 1)
    assert record.metrics == {"accuracy": 0.91, "loss": None}  # JSON has no NaN
    assert record.finished_at is not None and record.finished_at >= record.started_at
    assert not store.heartbeat(trial.id, trial.attempt, 30)  # finished: nothing to extend
    with pytest.raises(StaleAttemptError):  # reported twice
        store.complete(trial.id, trial.attempt, 0.5, {})


def test_complete_requires_a_claim(store: Store, search_id: int) -> None:
    (trial_id,) = store.enqueue_trials(search_id, _proposals(1))
    with pytest.raises(StaleAttemptError):
        store.complete(trial_id, 1, 0.5, {})
    with pytest.raises(StaleAttemptError):
        store.complete(999_999, 1, 0.5, {})
    trial = store.claim(search_id, "w", 30)
    assert trial is not None
    with pytest.raises(StaleAttemptError):
        store.complete(trial.id, trial.attempt + 1, 0.5, {})
    assert store.complete(trial.id, trial.attempt, 0.5, {}) == 1  # refusals drew no seq


def test_diverged_and_non_finite_rewards(store: Store, search_id: int) -> None:
    store.enqueue_trials(search_id, _proposals(2))
    first = store.claim(search_id, "w1", 30)
    second = store.claim(search_id, "w1", 30)
    assert first is not None and second is not None
    with pytest.raises(ValueError, match="diverged"):
        store.complete(first.id, first.attempt, math.inf, {})
    assert store.complete(first.id, first.attempt, math.nan, {"loss": math.inf}, diverged=True)
    assert store.complete(second.id, second.attempt, 0.99, {}, diverged=True) == 2
    records = {t.id: t for t in store.list_trials(search_id)}
    assert records[first.id].status == "diverged" and records[first.id].reward is None
    assert records[second.id].reward == 0.99
    assert store.best_trial(search_id) is None  # diverged trials are never the best


def test_fencing_late_report_refused(store: Store, search_id: int) -> None:
    store.enqueue_trials(search_id, _proposals(1))
    slow = store.claim(search_id, "slow", lease_seconds=-1)  # expired at once, no sleep
    assert slow is not None
    assert store.requeue_expired(search_id, max_retries=3) == (1, 0)
    fast = store.claim(search_id, "fast", lease_seconds=30)
    assert fast is not None and fast.id == slow.id and fast.attempt == slow.attempt + 1
    assert not store.heartbeat(slow.id, slow.attempt, 30)
    assert store.complete(fast.id, fast.attempt, 0.8, {"by": "fast"}) == 1
    with pytest.raises(StaleAttemptError):
        store.complete(slow.id, slow.attempt, 0.1, {"by": "slow"})
    with pytest.raises(StaleAttemptError):
        store.fail(slow.id, slow.attempt, "late", retryable=True, max_retries=3)
    record = store.get_trial(fast.id)
    assert record is not None
    assert (record.reward, record.metrics, record.worker) == (0.8, {"by": "fast"}, "fast")
    assert (record.attempt, record.failures, record.finished_seq) == (2, 1, 1)
    assert store.counts(search_id)["completed"] == 1


def test_heartbeat_keeps_lease(store: Store, search_id: int) -> None:
    store.enqueue_trials(search_id, _proposals(1))
    # Negative leases are expired at once: what a heartbeat does, without racing a clock.
    trial = store.claim(search_id, "w1", lease_seconds=-1)
    assert trial is not None
    for _ in range(3):
        assert store.heartbeat(trial.id, trial.attempt, lease_seconds=60)
        assert store.requeue_expired(search_id, max_retries=3) == (0, 0)  # renewed: kept
        assert store.heartbeat(trial.id, trial.attempt, lease_seconds=-1)
    record = store.get_trial(trial.id)
    assert record is not None and record.status == "running" and record.attempt == 1
    assert store.requeue_expired(search_id, max_retries=3) == (1, 0)  # the last beat lapsed


def test_expired_leases_retry_then_fail(store: Store, search_id: int) -> None:
    (trial_id,) = store.enqueue_trials(search_id, _proposals(1))
    for expected_attempt in (1, 2, 3):
        # A negative lease is expired at once: the hand-over logic without sleeping.
        trial = store.claim(search_id, "w", lease_seconds=-1)
        assert trial is not None and trial.attempt == expected_attempt
        expected = (1, 0) if expected_attempt < 3 else (0, 1)
        assert store.requeue_expired(search_id, max_retries=2) == expected
    record = store.get_trial(trial_id)
    assert record is not None
    assert (record.status, record.failures, record.finished_seq) == ("failed", 3, 1)
    assert record.error is not None and "lease expired" in record.error
    assert store.claim(search_id, "w", 30) is None
    assert [t.id for t in store.finished_since(search_id, 0)] == [trial_id]


def test_fail_retryable_until_out_of_retries(store: Store, search_id: int) -> None:
    (trial_id,) = store.enqueue_trials(search_id, _proposals(1))
    statuses = []
    for _ in range(3):
        trial = store.claim(search_id, "w", 30)
        assert trial is not None
        statuses.append(
            store.fail(trial.id, trial.attempt, "CUDA OOM", retryable=True, max_retries=2)
        )
    assert statuses == ["pending", "pending", "failed"]
    record = store.get_trial(trial_id)
    assert record is not None
    assert (record.status, record.attempt, record.failures) == ("failed", 3, 3)
    assert (record.error, record.finished_seq, record.reward) == ("CUDA OOM", 1, None)


def test_fail_not_retryable(store: Store, search_id: int) -> None:
    (trial_id,) = store.enqueue_trials(search_id, _proposals(1))
    trial = store.claim(search_id, "w", 30)
    assert trial is not None
    assert (
        store.fail(trial.id, trial.attempt, "bad pipeline", retryable=False, max_retries=5)
        == "failed"
    )
    record = store.get_trial(trial_id)
    assert record is not None
    assert (record.status, record.failures, record.finished_seq) == ("failed", 0, 1)
    with pytest.raises(StaleAttemptError):
        store.fail(trial.id, trial.attempt, "again", retryable=False, max_retries=5)


def test_release_hands_back_without_failure(store: Store, search_id: int) -> None:
    (trial_id,) = store.enqueue_trials(search_id, _proposals(1))
    trial = store.claim(search_id, "w1", 30)
    assert trial is not None
    store.release(trial.id, trial.attempt)
    store.release(trial.id, trial.attempt)  # second release: no-op
    record = store.get_trial(trial_id)
    assert record is not None
    assert (record.status, record.attempt, record.failures) == ("pending", 2, 0)
    again = store.claim(search_id, "w2", 30)
    assert again is not None and again.attempt == 2
    assert not store.heartbeat(trial.id, trial.attempt, 30)  # the old holder holds nothing
    with pytest.raises(StaleAttemptError):
        store.fail(trial.id, trial.attempt, "late", retryable=False, max_retries=0)
    assert store.complete(again.id, again.attempt, 0.4, {}) == 1


def test_first_result_wins_a_late_result_of_an_older_attempt_is_kept(
        store: Store, search_id: int) -> None:
    """A worker cut off from the store longer than its lease finished training anyway:
    its result is accepted while the trial has none, and cancels the newer attempt."""
    (running_id, pending_id) = store.enqueue_trials(search_id, _proposals(2))
    old = store.claim(search_id, "cut-off", lease_seconds=-1)
    old_pending = store.claim(search_id, "cut-off-too", lease_seconds=-1)
    assert old is not None and old_pending is not None
    assert store.requeue_expired(search_id, max_retries=3) == (2, 0)
    new = store.claim(search_id, "newcomer", 30)  # retries trial 1; trial 2 stays pending
    assert new is not None and (new.id, new.attempt) == (running_id, old.attempt + 1)

    assert store.complete(old.id, old.attempt, 0.7, {"by": "old"}) == 1
    assert not store.heartbeat(new.id, new.attempt, 30)  # the newcomer learns it is cancelled
    with pytest.raises(StaleAttemptError):  # ...and its own result is not counted twice
        store.complete(new.id, new.attempt, 0.9, {"by": "new"})
    assert store.complete(old_pending.id, old_pending.attempt, 0.6, {}) == 2  # was pending
    assert store.claim(search_id, "late", 30) is None  # nothing left to run
    with pytest.raises(StaleAttemptError):
        store.complete(old.id, old.attempt, 0.7, {"by": "old"})  # the same report again
    record = store.get_trial(running_id)
    assert record is not None
    assert (record.status, record.reward, record.metrics) == ("completed", 0.7, {"by": "old"})
    assert store.counts(search_id).results == 2
    assert [t.finished_seq for t in store.finished_since(search_id, 0)] == [1, 2]


def test_stored_text_is_cleaned_and_bounded(store: Store, search_id: int) -> None:
    """PostgreSQL refuses NUL in text and psycopg2 cannot encode lone surrogates: a
    trainer that prints either must fail its trial cleanly, not crash the reporter."""
    store.enqueue_trials(search_id, _proposals(3))
    failing = store.claim(search_id, "w", 30)
    assert failing is not None
    noisy = "boom\x00 \udcff" + "x" * 10_000 + "the end"
    assert store.fail(failing.id, failing.attempt, noisy, retryable=False, max_retries=0) \
        == "failed"
    error = store.get_trial(failing.id).error  # type: ignore[union-attr]
    assert error is not None and "\x00" not in error and error.endswith("the end")
    assert len(error) <= MAX_ERROR_CHARS

    done = store.claim(search_id, "w", 30)
    assert done is not None
    store.complete(done.id, done.attempt, 0.5, {"note\x00": "a\x00b", "loss": float("nan")})
    assert store.get_trial(done.id).metrics == {"note\ufffd": "a\ufffdb", "loss": None}  # type: ignore[union-attr]

    huge = store.claim(search_id, "w", 30)
    assert huge is not None
    with pytest.raises(MetricsTooLargeError, match="at most 65536"):
        store.complete(huge.id, huge.attempt, 0.5, {"curve": list(range(100_000))})
    assert store.get_trial(huge.id).status == "running"  # type: ignore[union-attr]  # untouched


def test_requeue_leaves_live_leases(store: Store, search_id: int) -> None:
    store.enqueue_trials(search_id, _proposals(3))
    dead = store.claim(search_id, "dead", lease_seconds=-1)
    live = store.claim(search_id, "live", lease_seconds=60)
    assert dead is not None and live is not None
    assert store.requeue_expired(search_id, max_retries=1) == (1, 0)
    assert store.counts(search_id) == {
        "pending": 2,
        "running": 1,
        "completed": 0,
        "diverged": 0,
        "stopped": 0,
        "failed": 0,
    }
    live_record = store.get_trial(live.id)
    assert live_record is not None and live_record.status == "running"


def test_steps_reported_backwards_keep_the_furthest_epoch(store: Store,
                                                          stopping_search: Any) -> None:
    """``last_step`` is a trial's fidelity: steps 3, 2, 1 trained it to epoch 3 (issue 25,
    item 11); the last report written used to win."""
    from ma2ml.spec import EarlyStopping

    search_id = stopping_search(store, "default/steps", EarlyStopping(), 9).id
    store.enqueue_trials(search_id, _proposals(1))
    trial = store.claim(search_id, "w", 30)
    assert trial is not None
    for step in (3, 2, 1):
        store.report_step(trial.id, trial.attempt, step, 0.5, {})
    assert store.get_trial(trial.id).last_step == 3  # type: ignore[union-attr]
    store.report_step(trial.id, trial.attempt, 4, 0.6, {})
    assert store.get_trial(trial.id).last_step == 4  # type: ignore[union-attr]
