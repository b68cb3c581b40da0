"""A worker that holds its next trial (prefetch) when the database goes away: the held
trial starts with the spec the worker has (``Ahead.start``), and the result of the
trial that just ended is spooled to disk during the outage, then delivered once, after.

What is real: a private PostgreSQL cluster stopped and started, the worker loop
(``run_worker``, in a thread), a command trainer in its own process, the spool folder.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from worker.test_prefetch import _trainer  # logs its start, waits for gate/go

from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import Store, StoreUnavailableError, TrialProposal, TrialStatus
from ma2ml.worker.loop import run_worker

from .postgres import PrivateCluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

#: Generous: a loaded machine must not fail the test, only a broken worker.
DEADLINE_SECONDS = 60.0


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE_SECONDS} s"
        time.sleep(0.05)


def _status(store: Store, search_id: int, number: int) -> TrialStatus | None:
    try:
        return {t.number: t.status for t in store.list_trials(search_id)}[number]
    except StoreUnavailableError:
        return None


def test_a_result_ending_in_an_outage_is_spooled_while_a_trial_is_held(
        private_postgres: PrivateCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    search = parse_spec({
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "held-outage"},
        "spec": {
            "agents": [{"name": "t", "decisions": [{"name": "n", "values": [0, 1, 2]}]}],
            "algorithm": {"name": "random"},
            "trainer": {"type": "command", "command": _trainer(gate)},
            "budget": {"leaseSeconds": 30, "maxRetries": 3, "parallelism": 1,
                       "prefetch": 1, "maxTrials": 2}}})
    store = Store(private_postgres.url)
    record = store.create_search(search.key, spec_to_document(search))
    store.enqueue_trials(record.id, [TrialProposal({"t": {"n": i}}, {}, {}, 0)
                                     for i in range(2)])
    spool = tmp_path / "spool"
    stop = threading.Event()
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(run_worker(
        store, search.key, "w-held", stop=stop, spool_dir=spool, poll_seconds=0.1,
        max_trials=2)))
    worker.start()
    try:
        _wait_for(lambda: (gate / "started").exists(), "trial 1 started")
        _wait_for(lambda: _status(store, record.id, 2) == TrialStatus.running,
                  "trial 2 held ahead")
        private_postgres.stop("fast")
        try:
            (gate / "go").touch()  # trial 1 ends while the database is down
            _wait_for(lambda: any(spool.glob("*/reports/trial-*-attempt-1.json")),
                      "trial 1's report spooled during the outage")
        finally:
            private_postgres.start()
        worker.join(DEADLINE_SECONDS)
        assert not worker.is_alive() and done == [2]
        trials = store.list_trials(record.id)
        assert [t.status for t in trials] == [TrialStatus.completed] * 2
        assert not list(spool.glob("*/reports/*.json"))  # delivered once the store was back
    finally:
        stop.set()
        worker.join(DEADLINE_SECONDS)
