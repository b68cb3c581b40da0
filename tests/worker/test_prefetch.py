"""Prefetch against the real store (SQLite and PostgreSQL): a worker holds its next trial
while the current one trains, and hands it back (pending again, failures unchanged) on
SIGTERM, when the search finishes, or lets it go when it was lost (lease lapsed,
another attempt's result won). Nothing is lost or run twice: every trainer start is
logged by the trainer itself."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from ma2ml.spec import PipelineSearch, spec_to_document
from ma2ml.store import Actor, SearchState, Store, TrialProposal
from ma2ml.store.models import TRIALS
from ma2ml.worker import loop
from ma2ml.worker.loop import run_worker
from ma2ml.worker.prefetch import ENV_PREFETCH, prefetch_setting

Make = Callable[..., PipelineSearch]


def _trainer(gate: Path) -> list[str]:
    """Logs its trial number (``MA2ML_SEED``) to ``gate/started``, waits for ``gate/go``,
    then reports accuracy 0.5."""
    code = (f"import os, pathlib, time, ma2ml\n"
            f"d = pathlib.Path({str(gate)!r})\n"
            f"with open(d / 'started', 'a') as f: f.write(os.environ['MA2ML_SEED'] + '\\n')\n"
            f"while not (d / 'go').exists(): time.sleep(0.02)\n"
            f"ma2ml.report(accuracy=0.5)\n")
    return [sys.executable, "-c", code]


def _started(gate: Path) -> list[int]:
    path = gate / "started"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _search(make_search: Make, gate: Path, **budget: Any) -> PipelineSearch:
    return make_search({
        "agents": [{"name": "trainer", "decisions": [{"name": "n", "values": [0, 1, 2, 3]}]}],
        "trainer": {"type": "command", "command": _trainer(gate)},
        "budget": {"leaseSeconds": 30, "maxRetries": 1, "parallelism": 1, "prefetch": 1,
                   **budget}})


def _create(store: Store, search: PipelineSearch, count: int) -> int:
    record = store.create_search(search.key, spec_to_document(search))
    store.enqueue_trials(record.id, [TrialProposal({"trainer": {"n": i}}, {}, {}, 0)
                                     for i in range(count)])
    return record.id


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _by_number(store: Store, search_id: int) -> dict[int, Any]:
    return {t.number: t for t in store.list_trials(search_id)}


def _held_ahead(store: Store, search_id: int, number: int) -> Callable[[], bool]:
    return lambda: _by_number(store, search_id)[number].status == "running"


class _Worker:
    """``run_worker`` in a thread."""

    def __init__(self, store: Store, name: str, spool_dir: Path, **kwargs: Any) -> None:
        self.stop = threading.Event()
        self.done: int | None = None
        self.thread = threading.Thread(
            target=lambda: setattr(self, "done", run_worker(
                store, name, "w-test", stop=self.stop, spool_dir=spool_dir, poll_seconds=0.1,
                **kwargs)))
        self.thread.start()

    def join(self, timeout: float = 60.0) -> int | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not finish"
        return self.done


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    folder = tmp_path / "gate"
    folder.mkdir()
    return folder


def test_the_next_trial_is_held_while_the_current_one_trains(store: Store, make_search: Make,
                                                            gate: Path, tmp_path: Path) -> None:
    search = _search(make_search, gate)
    search_id = _create(store, search, 3)
    worker = _Worker(store, search.key, tmp_path / "spool", max_trials=3)
    _wait_for(lambda: _started(gate) == [1])
    _wait_for(_held_ahead(store, search_id, 2))  # held while trial 1 still trains
    assert _by_number(store, search_id)[3].status == "pending"  # one ahead, no more
    assert _by_number(store, search_id)[2].worker == "w-test"
    (gate / "go").touch()
    assert worker.join() == 3
    trials = _by_number(store, search_id)
    assert [t.status for t in trials.values()] == ["completed"] * 3
    assert [t.attempt for t in trials.values()] == [1, 1, 1]
    assert _started(gate) == [1, 2, 3]  # each trial trained once, in order


def test_sigterm_hands_back_the_prefetched_trial(sqlite_url: str, make_search: Make,
                                                 gate: Path, tmp_path: Path) -> None:
    """The real ``ma2ml worker`` process: SIGTERM releases the trial that trains and the
    one held ahead; it exits 0."""
    search = _search(make_search, gate)
    with Store(sqlite_url) as store:
        search_id = _create(store, search, 2)
        ma2ml = Path(sys.executable).with_name("ma2ml")
        process = subprocess.Popen(
            [str(ma2ml), "worker", "--search", search.key, "--db", sqlite_url,
             "--worker-id", "pod-1", "--spool-dir", str(tmp_path / "spool")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            _wait_for(lambda: _started(gate) == [1], timeout=60)
            _wait_for(_held_ahead(store, search_id, 2))
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, output
        trials = _by_number(store, search_id)
        assert [(t.status, t.attempt, t.failures, t.worker) for t in trials.values()] == [
            ("pending", 2, 0, None), ("pending", 2, 0, None)], output
        assert _started(gate) == [1]


def test_a_search_that_finishes_gets_its_prefetched_trial_back(
        store: Store, make_search: Make, gate: Path, tmp_path: Path) -> None:
    search = _search(make_search, gate)
    search_id = _create(store, search, 2)
    worker = _Worker(store, search.key, tmp_path / "spool")
    _wait_for(lambda: _started(gate) == [1])
    _wait_for(_held_ahead(store, search_id, 2))
    store.move_search(search_id, SearchState.finished, by=Actor.learner)
    (gate / "go").touch()
    assert worker.join() == 1  # trial 1 is reported, then the worker leaves
    trials = _by_number(store, search_id)
    assert (trials[1].status, trials[1].reward) == ("completed", 0.5)
    assert (trials[2].status, trials[2].attempt, trials[2].failures) == ("pending", 2, 0)
    assert _started(gate) == [1]


def test_a_suspended_search_gets_its_prefetched_trial_back(
        store: Store, make_search: Make, gate: Path, tmp_path: Path) -> None:
    search = _search(make_search, gate)
    search_id = _create(store, search, 2)
    worker = _Worker(store, search.key, tmp_path / "spool")
    _wait_for(lambda: _started(gate) == [1])
    _wait_for(_held_ahead(store, search_id, 2))
    store.move_search(search_id, SearchState.suspended, by=Actor.controller)
    (gate / "go").touch()
    _wait_for(lambda: _by_number(store, search_id)[2].status == "pending")
    assert _started(gate) == [1]
    store.move_search(search_id, SearchState.running, by=Actor.controller)
    _wait_for(lambda: _by_number(store, search_id)[2].status == "completed")
    store.move_search(search_id, SearchState.finished, by=Actor.learner)
    assert worker.join() == 2
    assert _started(gate) == [1, 2]


def test_a_prefetched_trial_whose_lease_lapsed_is_not_trained(
        store: Store, make_search: Make, gate: Path, tmp_path: Path) -> None:
    """Trial 2's lease lapses while trial 1 trains (a stalled heartbeat, simulated by
    moving the lease into the past) and another worker takes it and reports: the
    worker drops it and trains trial 3 instead."""
    search = _search(make_search, gate)
    search_id = _create(store, search, 3)
    worker = _Worker(store, search.key, tmp_path / "spool", max_trials=2)
    _wait_for(lambda: _started(gate) == [1])
    _wait_for(_held_ahead(store, search_id, 2))
    second = _by_number(store, search_id)[2]
    with store.engine.begin() as connection:
        connection.execute(update(TRIALS).where(TRIALS.c.id == second.id)
                           .values(lease_expires_at=0.0))
    assert store.requeue_expired(search_id, max_retries=1) == (1, 0)
    thief = store.claim(search_id, "thief", 30)
    assert thief is not None and thief.id == second.id and thief.attempt == 2
    store.complete(thief.id, thief.attempt, 0.9, {})
    (gate / "go").touch()
    assert worker.join() == 2
    trials = _by_number(store, search_id)
    assert (trials[2].status, trials[2].reward, trials[2].worker) == ("completed", 0.9, "thief")
    assert [trials[n].status for n in (1, 3)] == ["completed", "completed"]
    assert _started(gate) == [1, 3]  # trial 2 ran once, on the thief


def test_a_prefetched_trial_another_attempt_finished_first_is_not_trained(
        store: Store, make_search: Make, gate: Path, tmp_path: Path) -> None:
    """First result wins: the worker holds attempt 2 of trial 1 when attempt 1 (whose
    lease had lapsed) reports late; the worker lets trial 1 go, untrained."""
    search = _search(make_search, gate)
    search_id = _create(store, search, 2)
    old = store.claim(search_id, "old", 30)
    assert old is not None and old.number == 1
    worker = _Worker(store, search.key, tmp_path / "spool")
    _wait_for(lambda: _started(gate) == [2])
    with store.engine.begin() as connection:
        connection.execute(update(TRIALS).where(TRIALS.c.id == old.id)
                           .values(lease_expires_at=0.0))
    assert store.requeue_expired(search_id, max_retries=1) == (1, 0)
    _wait_for(_held_ahead(store, search_id, 1))
    assert _by_number(store, search_id)[1].attempt == 2
    store.complete(old.id, old.attempt, 0.7, {})  # the late result of attempt 1 wins
    (gate / "go").touch()
    _wait_for(lambda: _by_number(store, search_id)[2].status == "completed")
    time.sleep(0.3)  # several polls: the worker would have started trial 1 by now
    store.move_search(search_id, SearchState.finished, by=Actor.learner)
    assert worker.join() == 1
    trials = _by_number(store, search_id)
    assert (trials[1].status, trials[1].reward) == ("completed", 0.7)
    assert trials[2].status == "completed"
    assert _started(gate) == [2]


@pytest.mark.parametrize("how", ["worker", "spec"])
def test_prefetch_off(store: Store, make_search: Make, gate: Path, tmp_path: Path,
                      how: str) -> None:
    search = _search(make_search, gate, prefetch=0 if how == "spec" else 1)
    search_id = _create(store, search, 2)
    worker = _Worker(store, search.key, tmp_path / "spool", max_trials=2,
                     prefetch=0 if how == "worker" else None)
    _wait_for(lambda: _started(gate) == [1])
    time.sleep(0.5)  # several poll intervals: a prefetch would have happened
    assert _by_number(store, search_id)[2].status == "pending"
    (gate / "go").touch()
    assert worker.join() == 2


def test_the_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_PREFETCH, raising=False)
    assert prefetch_setting() == 1
    monkeypatch.setenv(ENV_PREFETCH, "0")
    assert prefetch_setting() == 0
    assert prefetch_setting(1) == 1
    monkeypatch.setenv(ENV_PREFETCH, "2")
    with pytest.raises(ValueError, match="MA2ML_WORKER_PREFETCH: expected 0 .* got '2'"):
        prefetch_setting()
    with pytest.raises(ValueError, match="--prefetch: expected 0"):
        prefetch_setting("many")


@pytest.mark.postgres
def test_an_idle_worker_wakes_on_notify(postgres_url: str, make_search: Make, gate: Path,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        watch_waits: Callable[[Store], Any]) -> None:
    """The worker polls every 30 s here; a queued trial wakes it within a few seconds. The
    trial is queued once the worker is inside its 30 s wait, so only the NOTIFY can wake
    it in time (a worker not yet waiting would find the trial by itself)."""
    monkeypatch.setattr(loop, "FIRST_POLL_SECONDS", 30.0)
    (gate / "go").touch()
    search = _search(make_search, gate)
    with Store(postgres_url) as store, Store(postgres_url) as learner:
        search_id = _create(store, search, 0)
        waits = watch_waits(store)
        stop = threading.Event()
        done: list[int] = []
        thread = threading.Thread(target=lambda: done.append(run_worker(
            store, search.key, "w-idle", stop=stop, spool_dir=tmp_path / "spool",
            poll_seconds=30.0, max_trials=1)))
        thread.start()
        try:
            waits.until_waiting(longer_than=20.0)  # the worker found nothing and waits
            started = time.monotonic()
            learner.enqueue_trials(search_id, [TrialProposal({"trainer": {"n": 0}}, {}, {}, 0)])
            _wait_for(lambda: _started(gate) == [1], timeout=20)
            assert time.monotonic() - started < 10.0
            thread.join(30)
        finally:
            stop.set()
            thread.join(30)
        assert done == [1]


@pytest.fixture(autouse=True)
def _default_prefetch(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ENV_PREFETCH, raising=False)
    yield

