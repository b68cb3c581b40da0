"""The learner loop against the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import text

from ma2ml import metrics
from ma2ml.learner.base import from_bytes
from ma2ml.learner.loop import Learner, run_learner
from ma2ml.store import SearchNotFoundError, Store

from .helpers import search_document


def _run_until(store: Store, name: str, condition, timeout: float = 30.0) -> None:
    """Run the learner in a thread until ``condition()`` holds, then stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=run_learner, args=(store, name),
                              kwargs={"stop": stop, "poll_seconds": 0.02})
    thread.start()
    try:
        deadline = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if condition() or deadline.wait(0.02) or not thread.is_alive():
                break
    finally:
        stop.set()
        thread.join(timeout=30)


def test_search_finishes_at_max_trials(store: Store, worker_factory) -> None:
    record = store.create_search("default/toy", search_document(max_trials=10))
    worker_factory(store.url, record.id)
    outcome = run_learner(store, "default/toy", poll_seconds=0.02)
    assert outcome.state == "finished"
    assert outcome.results == 10 and outcome.failures == 0
    assert store.get_search("default/toy").state == "finished"
    assert outcome.best_trial_id == store.best_trial(record.id).id
    trials = store.list_trials(record.id)
    assert len(trials) == 10  # parallelism + prefetch never overshoots maxTrials
    snapshot = store.load_snapshot(record.id)
    stats = store.snapshot_stats(record.id)[-1][2]
    assert set(stats["entropy"]) == {"nas", "hpo"} and stats["n_results"] == 10
    assert from_bytes(snapshot.state)["seq"] == 10


def test_restart_mid_search_loses_and_repeats_nothing(store: Store, worker_factory) -> None:
    record = store.create_search("default/toy", search_document(max_trials=16))
    worker = worker_factory(store.url, record.id)
    _run_until(store, "default/toy",
               lambda: store.counts(record.id).get("completed", 0) >= 6)
    worker.halt.set()
    worker.join(timeout=10)
    before = store.load_snapshot(record.id)
    pending_before = {t.id for t in store.list_trials(record.id, status="pending")}
    assert before is not None and before.version >= 1

    # A fresh learner object, as after a pod restart: it resumes from the snapshot.
    worker_factory(store.url, record.id)
    outcome = run_learner(store, "default/toy", poll_seconds=0.02)
    assert outcome.state == "finished" and outcome.results == 16

    trials = store.list_trials(record.id)
    assert all(t.status == "completed" for t in trials)
    assert pending_before <= {t.id for t in trials}  # pending trials were kept and run
    assert len(trials) == 16  # nothing proposed twice, nothing beyond maxTrials
    actions = Counter(tuple(t.action["nas"] + t.action["hpo"]) for t in trials)
    assert max(actions.values()) == 1  # 36 pipelines, 16 trials: no repeats
    state = from_bytes(store.load_snapshot(record.id).state)
    # Every result was observed exactly once across both learner lives.
    assert state["algorithm"]["n_results"] == 16 and state["seq"] == 16


def test_failures_end_the_search_as_failed(store: Store, worker_factory) -> None:
    record = store.create_search("default/toy", search_document(max_trials=50, max_failed=3))
    worker_factory(store.url, record.id, outcome=lambda trial: ("failed", 0.0))
    outcome = run_learner(store, "default/toy", poll_seconds=0.02)
    assert outcome.state == "failed" and outcome.failures >= 3 and outcome.results == 0
    assert store.get_search("default/toy").state == "failed"


def test_expired_leases_are_requeued_and_counted(store: Store) -> None:
    record = store.create_search("default/toy", search_document(max_trials=5, parallelism=1,
                                                                prefetch=0))
    now = [1000.0]
    learner = Learner(store, "default/toy", clock=lambda: now[0])
    assert learner.tick() is None
    claimed = store.claim(record.id, "dead-worker", lease_seconds=-1)  # already expired
    assert claimed is not None
    before = metrics.LEASE_EXPIRIES.labels("default/toy")._value.get()
    learner.tick()  # within one lease of the learner's start: grace, nothing re-queued
    assert store.get_trial(claimed.id).status == "running"
    now[0] += 5.0  # leaseSeconds of the spec
    learner.tick()
    assert metrics.LEASE_EXPIRIES.labels("default/toy")._value.get() == before + 1
    requeued = store.get_trial(claimed.id)
    assert requeued.status == "pending" and requeued.attempt == 2

    # After a store outage, leases that lapsed meanwhile get one lease of grace again.
    again = store.claim(record.id, "cut-off-worker", lease_seconds=-1)
    learner.note_outage()
    learner.tick()
    assert store.get_trial(again.id).status == "running"
    now[0] += 5.0
    learner.tick()
    assert store.get_trial(again.id).status == "pending"


def test_a_learner_that_cannot_start_fails_the_search_with_the_reason(store: Store) -> None:
    document = search_document(max_trials=5)
    document["spec"]["algorithm"]["settings"] = {"alpha": "not a number"}  # stored unchecked
    store.create_search("default/broken", document)
    with pytest.raises(Exception, match="alpha"):
        run_learner(store, "default/broken")
    record = store.get_search("default/broken")
    assert record.state == "failed" and record.finished_at is not None
    assert record.message.startswith("the learner cannot start") and "alpha" in record.message


_REFUSE_NEW_TRIALS = {
    "sqlite": ["CREATE TRIGGER refuse_trials BEFORE INSERT ON trials "
               "BEGIN SELECT RAISE(ABORT, 'no new trials'); END"],
    "postgresql": ["CREATE FUNCTION refuse_trials() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'no new trials'; END $$",
                   "CREATE TRIGGER refuse_trials BEFORE INSERT ON trials FOR EACH ROW "
                   "EXECUTE FUNCTION refuse_trials()"],
}


def test_a_learner_that_crashes_later_fails_the_search_with_the_reason(store: Store) -> None:
    """Issue 25, item 5: the learner starts, then the database refuses its first proposals
    (a trigger raising an error: a real refusal, not an outage). The search must not stay
    'running' with nobody proposing; the reason is the database's line, not a web link."""
    store.create_search("default/crashing", search_document(max_trials=5))
    with store.engine.begin() as connection:
        for statement in _REFUSE_NEW_TRIALS[store.engine.dialect.name]:
            connection.execute(text(statement))
    with pytest.raises(Exception, match="no new trials"):
        run_learner(store, "default/crashing")
    record = store.get_search("default/crashing")
    assert record.state == "failed" and record.finished_at is not None
    assert record.message.startswith("the learner crashed") and "no new trials" in record.message
    assert "sqlalche.me" not in record.message


def test_unknown_search_is_a_clear_error(store: Store) -> None:
    with pytest.raises(SearchNotFoundError, match="default/missing"):
        run_learner(store, "default/missing")


def test_a_snapshot_that_no_longer_fits_is_relearned_from_the_store(
        store: Store, worker_factory) -> None:
    """Switching earlyStopping on gives the critic a fidelity input: the old snapshot's
    networks do not fit, so the learner re-reads every stored result instead of failing."""
    document = search_document(max_trials=12, settings={"warmup_results": 2})
    record = store.create_search("default/toy", document)
    worker = worker_factory(store.url, record.id)
    _run_until(store, "default/toy", lambda: store.counts(record.id).completed >= 4)
    worker.halt.set()
    worker.join(timeout=10)
    assert store.load_snapshot(record.id) is not None
    document["spec"]["budget"]["trialEpochs"] = 4
    document["spec"]["earlyStopping"] = {"type": "asha", "minEpochs": 1,
                                         "reductionFactor": 2}
    store.update_search_spec("default/toy", document)
    learner = Learner(store, "default/toy")
    assert learner.seq == 0 and learner.algorithm.critic.fidelity_input
    learner.tick()
    assert learner.algorithm.n_results == store.counts(record.id).finished
