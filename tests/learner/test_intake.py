"""The learner keeps up with a backlog: bounded intake per tick, bounded reads, fast restart.

Real stores (SQLite, and PostgreSQL where marked), real learner; the results are
written through the store's own API (enqueue, claim, complete), as workers do.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from ma2ml.learner import loop
from ma2ml.learner.base import from_bytes
from ma2ml.learner.loop import Learner, StoreReplay, drive_learner
from ma2ml.store import Store, TrialProposal

from .helpers import search_document, toy_reward

SIZES = (3, 3, 4)  # the toy space of helpers.search_document: nas (3, 3), hpo (4)


def finish_trials(store: Store, search_id: int, n: int, seed: int = 0) -> list[dict]:
    """Enqueue ``n`` random toy pipelines and complete each one (as a worker would)."""
    rng = random.Random(seed)
    actions = [{"nas": [rng.randrange(3), rng.randrange(3)], "hpo": [rng.randrange(4)]}
               for _ in range(n)]
    store.enqueue_trials(search_id, [TrialProposal({}, a, {"nas": -1.0, "hpo": -1.0}, 0)
                                     for a in actions])
    for _ in range(n):
        trial = store.claim(search_id, "w", 60)
        store.complete(trial.id, trial.attempt, toy_reward(trial.action), {})
    return actions


def test_reads_are_bounded_pages_in_order(store: Store) -> None:
    record = store.create_search("default/toy", search_document(max_trials=100))
    actions = finish_trials(store, record.id, 25)
    first = store.results_since(record.id, 0, 10)
    assert [r.finished_seq for r in first] == list(range(1, 11))
    assert [r.action for r in first] == actions[:10]
    assert first[0].reward == pytest.approx(toy_reward(actions[0]))
    assert [r.finished_seq for r in store.results_since(record.id, 20, 10)] == [21, 22, 23, 24,
                                                                                25]
    assert store.results_since(record.id, 25, 10) == []
    # The slim replay draws exactly the trials the full one draws for the same seed,
    # and fetches only those not cached.
    seqs, slim = store.replay_results(record.id, 8, seed=5)
    full = store.replay_sample(record.id, 8, seed=5)
    assert seqs == [r.finished_seq for r in slim] == [t.finished_seq for t in full]
    assert [r.action for r in slim] == [t.action for t in full]
    again, fetched = store.replay_results(record.id, 8, seed=5, cached=set(seqs[:5]))
    assert again == seqs and [r.finished_seq for r in fetched] == seqs[5:]
    page = store.proposed_actions(record.id, 0, 10)
    assert [n for n, _ in page] == list(range(1, 11))
    assert [a for _, a in store.proposed_actions(record.id, 20, 10)] == actions[20:]
    with pytest.raises(ValueError, match="limit"):
        store.results_since(record.id, 0, 0)


def test_a_tick_takes_in_at_most_the_intake_limit(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        record = store.create_search("default/toy", search_document(max_trials=1000))
        finish_trials(store, record.id, 300)
        learner = Learner(store, "default/toy", intake_limit=128)
        read: list[int] = []
        results_since = store.results_since

        def counted(search_id: int, seq: int, limit: int):
            rows = results_since(search_id, seq, limit)
            read.append(len(rows))
            return rows

        store.results_since = counted  # type: ignore[method-assign]
        assert learner.tick() is None
        assert read == [128] and learner.seq == 128 and learner.behind
        assert learner.algorithm.n_results == 128
        assert learner.tick() is None and learner.seq == 256 and learner.behind
        assert learner.tick() is None and learner.seq == 300 and not learner.behind
        assert read == [128, 128, 44]
        assert learner.updates == 3
        assert from_bytes(store.load_snapshot(record.id).state)["seq"] == 300


def test_search_ends_only_after_every_result_is_learnt(sqlite_url: str) -> None:
    """The budget is met while 300 results are unread: the learner reads them all, in
    bounded ticks, before it marks the search finished (the final snapshot holds them)."""
    with Store(sqlite_url) as store:
        record = store.create_search("default/toy", search_document(max_trials=300))
        finish_trials(store, record.id, 300)
        learner = Learner(store, "default/toy", intake_limit=128)
        assert learner.tick() is None and learner.tick() is None
        assert store.get_search("default/toy").state == "running"
        outcome = learner.tick()
        assert outcome is not None and outcome.state == "finished"
        assert store.get_search("default/toy").state == "finished"
        assert learner.seq == 300 and learner.updates == 3
        state = from_bytes(store.load_snapshot(record.id).state)
        assert state["seq"] == 300 and state["algorithm"]["n_results"] == 300


def test_drive_learner_does_not_wait_while_behind(sqlite_url: str) -> None:
    """A learner with a backlog ticks again at once: a long poll does not slow it down."""
    with Store(sqlite_url) as store:
        store.create_search("default/toy", search_document(max_trials=200))
        record = store.get_search("default/toy")
        finish_trials(store, record.id, 200)
        learner = Learner(store, "default/toy", intake_limit=50)
        outcome = drive_learner(learner, poll_seconds=60.0)
        assert outcome.state == "finished" and learner.updates == 4


def test_restart_recalls_every_proposal_in_pages(store: Store, monkeypatch) -> None:
    record = store.create_search("default/toy", search_document(max_trials=60))
    actions = finish_trials(store, record.id, 40)
    first = Learner(store, "default/toy", intake_limit=16)
    first.tick()  # learns from 16 results and snapshots; tops the queue up
    assert first.seq == 16
    proposed = {tuple(t.action["nas"] + t.action["hpo"]) for t in store.list_trials(record.id)}
    assert len(store.list_trials(record.id)) > 40  # some pending trials were added

    monkeypatch.setattr(loop, "RECALL_PAGE", 7)
    pages: list[int] = []
    recall = store.proposed_actions

    def counted(search_id: int, after: int, limit: int):
        page = recall(search_id, after, limit)
        pages.append(len(page))
        return page

    monkeypatch.setattr(store, "proposed_actions", counted)
    again = Learner(store, "default/toy", intake_limit=16)
    assert again.seq == 16  # from the snapshot: the 16 results are not learnt twice
    assert again.algorithm._proposed == proposed
    total = len(store.list_trials(record.id))
    assert pages == [7] * (total // 7) + [total % 7]  # pages of 7, read by keyset
    again.tick()
    assert again.seq == 32 and again.algorithm.n_results == 32
    assert {tuple(a["nas"] + a["hpo"]) for a in actions} <= again.algorithm._proposed


def test_store_replay_keeps_what_it_read(store: Store) -> None:
    """The learner's replay draws as the store does, and reads each result once."""
    record = store.create_search("default/toy", search_document(max_trials=100))
    finish_trials(store, record.id, 30)
    learner = Learner(store, "default/toy", intake_limit=10)
    learner.tick()  # takes in 1..10; the critic's draws (all 30: fewer than it asks) read the rest
    assert all(seq in learner.algorithm.replay for seq in range(1, 31))
    replay = StoreReplay(store, record.id, learner.algorithm.layout, lambda r: float(r.reward),
                         trial_epochs=1)
    replay.remember(store.results_since(record.id, 0, 10))  # as the loop does at intake
    assert all(seq in replay for seq in range(1, 11)) and 11 not in replay
    fetched: list[int] = []
    replay_results = store.replay_results

    def counted(*args, **kwargs):
        seqs, rows = replay_results(*args, **kwargs)
        fetched.extend(r.finished_seq for r in rows)
        return seqs, rows

    store.replay_results = counted  # type: ignore[method-assign]
    actions, rewards, _ = replay.sample(25, np.random.default_rng(1))
    seqs, _ = replay_results(record.id, 25, seed=int(np.random.default_rng(1).integers(2**31)))
    full = {t.finished_seq: t for t in store.replay_sample(record.id, 30)}
    assert [list(row) for row in actions] == [
        full[s].action["nas"] + full[s].action["hpo"] for s in seqs]
    assert list(rewards) == pytest.approx([full[s].reward for s in seqs])
    assert sorted(fetched) == sorted(s for s in seqs if s > 10)  # read only the unseen
    fetched.clear()
    replay.sample(25, np.random.default_rng(1))
    assert fetched == []  # everything drawn is kept now


@pytest.mark.postgres
def test_the_learner_wakes_when_a_result_lands(postgres_url: str, watch_waits) -> None:
    """On PostgreSQL a result's NOTIFY wakes the waiting learner: it takes the result in
    long before its 60 s poll would have. The result lands once the learner is inside
    that wait, so only the NOTIFY can wake it within the test's 30 s."""
    import threading
    import time

    with Store(postgres_url) as store:
        record = store.create_search("default/toy", search_document(max_trials=20))
        waits = watch_waits(store)
        learner = Learner(store, "default/toy")
        stop = threading.Event()
        thread = threading.Thread(target=drive_learner, args=(learner,),
                                  kwargs={"stop": stop, "poll_seconds": 60.0})
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while (trial := store.claim(record.id, "w", 60)) is None:
                assert time.monotonic() < deadline, "the learner queued nothing"
                time.sleep(0.05)
            waits.until_waiting(longer_than=50.0)  # the learner waits, 60 s of poll
            store.complete(trial.id, trial.attempt, 0.5, {})
            landed = time.monotonic()
            while learner.seq < 1:
                assert time.monotonic() - landed < 30, "the learner did not wake"
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(timeout=60)
        assert not thread.is_alive()
