"""Claiming ahead (worker prefetch) leaves the oldest pending trials to idle workers."""

from __future__ import annotations

import pytest

from ma2ml.store import Store, TrialProposal


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
