"""Eight OS processes drain a 2,000-trial queue: each trial completed exactly once."""

from __future__ import annotations

import pytest

from ma2ml.store import Store, TrialProposal

from .workers import claim_until_empty, run_together

TRIALS = 2000
PROCESSES = 8


@pytest.mark.slow
def test_processes_complete_every_trial_once(store: Store, database_url: str) -> None:
    search = store.create_search("default/concurrency", {})
    proposals = [TrialProposal({"x": i}, {"aug": [i % 5]}, {"aug": -1.6}, 0) for i in range(TRIALS)]
    ids = store.enqueue_trials(search.id, proposals)

    outcomes = run_together(claim_until_empty, database_url, search.id, PROCESSES)
    assert [kind for kind, _ in outcomes] == ["ok"] * PROCESSES, outcomes

    reported = [pair for _, pairs in outcomes for pair in pairs]
    assert sorted(trial_id for trial_id, _ in reported) == sorted(ids)  # none lost, none twice
    assert sorted(seq for _, seq in reported) == list(range(1, TRIALS + 1))
    assert sum(1 for _, pairs in outcomes if pairs) > 1  # the work really was shared

    assert store.counts(search.id)["completed"] == TRIALS
    finished = store.finished_since(search.id, 0)
    assert [t.finished_seq for t in finished] == list(range(1, TRIALS + 1))
    assert {t.id: t.finished_seq for t in finished} == dict(reported)
    assert all(t.attempt == 1 and t.reward == t.pipeline["x"] / 1000.0 for t in finished)
    best = store.best_trial(search.id)
    assert best is not None and best.pipeline == {"x": TRIALS - 1}
