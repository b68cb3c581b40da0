"""Wake-ups: NOTIFY on PostgreSQL wakes a waiter well before its poll timeout, only for
its own search and only for committed changes; the listener survives a dropped
connection; SQLite falls back to polling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text

from ma2ml.store import StaleAttemptError, Store, TrialProposal
from ma2ml.store.notify import PollingWaiter, queued_channel, results_channel

#: A waiter's poll timeout in these tests; a notification must wake it far sooner.
POLL = 10.0
#: What "far sooner" means here (a shared, loaded CI machine).
WOKEN_WITHIN = 2.0


def _proposals(count: int) -> list[TrialProposal]:
    return [TrialProposal({"x": index}, {"a": [index]}, {"a": -1.0}, 0) for index in range(count)]


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    with Store(postgres_url) as opened:
        yield opened


@pytest.fixture
def other(postgres_url: str) -> Iterator[Store]:
    """A second process's store: what sends the notifications."""
    with Store(postgres_url) as opened:
        yield opened


def _woken_by(wait: Callable[[], bool], action: Callable[[], object]) -> float:
    """Seconds until ``wait()`` returned True while ``action`` ran 0.2 s after it began."""
    timer = threading.Timer(0.2, action)
    started = time.monotonic()
    timer.start()
    try:
        assert wait(), "the waiter timed out: no notification arrived"
    finally:
        timer.join()
    return time.monotonic() - started


@pytest.mark.postgres
def test_queued_trials_wake_a_worker_and_a_result_wakes_the_learner(pg_store: Store,
                                                                    other: Store) -> None:
    search_id = other.create_search("default/notify", {}).id
    workers = pg_store.listen(queued_channel(search_id))
    learner = pg_store.listen(results_channel(search_id))
    assert _woken_by(lambda: workers.wait(POLL),
                     lambda: other.enqueue_trials(search_id, _proposals(2))) < WOKEN_WITHIN
    trial = other.claim(search_id, "w", 30)
    assert trial is not None
    assert _woken_by(lambda: learner.wait(POLL),
                     lambda: other.complete(trial.id, trial.attempt, 0.5, {})) < WOKEN_WITHIN
    assert not workers.wait(0.3), "a result is not a queued trial"


@pytest.mark.postgres
def test_every_edge_into_pending_or_a_terminal_status_notifies(pg_store: Store,
                                                               other: Store) -> None:
    search_id = other.create_search("default/edges", {}).id
    other.enqueue_trials(search_id, _proposals(3))
    queued = pg_store.listen(queued_channel(search_id))
    results = pg_store.listen(results_channel(search_id))
    first = other.claim(search_id, "w", 30)
    assert first is not None
    other.release(first.id, first.attempt)  # hand-back: pending again
    assert queued.wait(POLL) and not results.wait(0)
    second = other.claim(search_id, "w", 30)
    assert second is not None
    other.fail(second.id, second.attempt, "retry me", retryable=True, max_retries=3)
    assert queued.wait(POLL) and not results.wait(0)
    third = other.claim(search_id, "w", 30)
    assert third is not None
    other.fail(third.id, third.attempt, "no", retryable=False, max_retries=3)
    assert results.wait(POLL) and not queued.wait(0)
    expiring = other.claim(search_id, "w", -1)  # a lease that has already run out
    assert expiring is not None
    assert other.requeue_expired(search_id, max_retries=3) == (1, 0)
    assert queued.wait(POLL)


@pytest.mark.postgres
def test_no_wake_for_another_search_or_a_rolled_back_change(pg_store: Store,
                                                            other: Store) -> None:
    mine = other.create_search("default/mine", {}).id
    theirs = other.create_search("default/theirs", {}).id
    waiter = pg_store.listen(queued_channel(mine), results_channel(mine))
    other.enqueue_trials(theirs, _proposals(1))
    trial = other.claim(theirs, "w", 30)
    assert trial is not None
    other.complete(trial.id, trial.attempt, 0.1, {})
    assert not waiter.wait(0.5), "woken by another search's events"
    other.enqueue_trials(mine, _proposals(1))
    assert waiter.wait(POLL)
    claimed = other.claim(mine, "w", 30)
    assert claimed is not None
    with pytest.raises(StaleAttemptError):  # refused, rolled back: nothing is sent
        other.complete(claimed.id, claimed.attempt + 5, 0.1, {})
    assert not waiter.wait(0.5), "woken by a change that was rolled back"


@pytest.mark.postgres
def test_a_notification_between_check_and_wait_is_not_lost(pg_store: Store, other: Store
                                                            ) -> None:
    waiter = pg_store.listen(queued_channel(7))
    other.notify(queued_channel(7))
    deadline = time.monotonic() + POLL
    while not waiter.wait(0.05):  # delivery to the listener's thread takes a moment
        assert time.monotonic() < deadline
    assert not waiter.wait(0), "one notification wakes a waiter once"


@pytest.mark.postgres
def test_the_listener_reconnects_after_its_connection_is_killed(pg_store: Store,
                                                                other: Store) -> None:
    waiter = pg_store.listen(queued_channel(3))
    with other.engine.connect() as connection:
        killed = connection.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%'")).scalars().all()
    assert killed == [True]
    assert waiter.wait(POLL), "a dropped connection wakes every waiter (it may have lost some)"
    deadline = time.monotonic() + POLL  # re-LISTENed after the first back-off (0.5 s)
    while True:
        other.notify(queued_channel(3))
        if waiter.wait(0.5):
            break
        assert time.monotonic() < deadline, "no notification after the reconnect"


@pytest.mark.postgres
def test_stop_ends_a_wait_and_close_ends_the_listener(postgres_url: str) -> None:
    store = Store(postgres_url)
    waiter = store.listen(queued_channel(1))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert not waiter.wait(POLL, stop)
    assert time.monotonic() - started < WOKEN_WITHIN
    listener = store._listener
    store.close()
    assert listener is not None and not listener._thread.is_alive()


def test_sqlite_polls(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        search_id = store.create_search("default/poll", {}).id
        waiter = store.listen(queued_channel(search_id))
        assert isinstance(waiter, PollingWaiter)
        store.enqueue_trials(search_id, _proposals(1))  # sends nothing, fails nothing
        store.notify(queued_channel(search_id))
        started = time.monotonic()
        assert not waiter.wait(0.3)
        assert time.monotonic() - started >= 0.29  # a plain poll interval
        stop = threading.Event()
        stop.set()
        started = time.monotonic()
        assert not waiter.wait(POLL, stop)
        assert time.monotonic() - started < 1.0


def test_channel_names_are_checked(sqlite_url: str) -> None:
    with Store(sqlite_url) as store, pytest.raises(ValueError, match="channel"):
        store.notify("drop table; --")
