"""The worker loop against the real store (SQLite and PostgreSQL): claim, heartbeat,
hand-over, reports, spooling through a store outage, and graceful SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from ma2ml.spec import PipelineSearch, spec_to_document
from ma2ml.store import (
    Actor,
    ClaimedTrial,
    SearchRecord,
    SearchState,
    Store,
    StoreUnavailableError,
    TrialProposal,
    TrialRecord,
    queue,
)
from ma2ml.store.backoff import open_store
from ma2ml.store.engine import write_engine
from ma2ml.store.models import TRIALS
from ma2ml.worker.errors import EXIT_STORE_FAULT, StoreFault
from ma2ml.worker.loop import Heartbeat, deliver, run_claimed, run_worker
from ma2ml.worker.outcome import TrialOutcome
from ma2ml.worker.places import Places, pipeline_record
from ma2ml.worker.spool import Report, ReportKind, Spool, send_report

from .tcp_proxy import TcpProxy

Make = Callable[..., PipelineSearch]
TINY_PIPELINE = {"trainer": {"wait": 0}}


def _gated_trainer(gate: Path) -> list[str]:
    """A custom trainer that signals it started, waits for ``gate/go``, reports 0.42."""
    code = (f"import os, pathlib, time, ma2ml\n"
            f"d = pathlib.Path({str(gate)!r})\n"
            f"(d / 'pid').write_text(str(os.getpid()))\n"
            f"(d / 'started').touch()\n"
            f"while not (d / 'go').exists(): time.sleep(0.02)\n"
            f"ma2ml.report(accuracy=0.42)\n")
    return [sys.executable, "-c", code]


def _command_search(make_search: Make, command: list[str], lease: float = 30.0,
                    retries: int = 1) -> PipelineSearch:
    return make_search({
        "agents": [{"name": "trainer", "decisions": [{"name": "wait", "values": [0, 1]}]}],
        "trainer": {"type": "command", "command": command},
        "budget": {"leaseSeconds": lease, "maxRetries": retries}})


def _create(store: Store, search: PipelineSearch, pipelines: list[dict[str, Any]]
            ) -> SearchRecord:
    record = store.create_search(search.key, spec_to_document(search))
    store.enqueue_trials(record.id, [TrialProposal(p, {}, {}, 0) for p in pipelines])
    return record


class _Worker:
    """``run_worker`` in a thread, as the local runner or a pod would run it."""

    started: list[_Worker] = []  # stopped after each test (``_stop_workers``)

    def __init__(self, store: Store, name: str, spool_dir: Path, **kwargs: Any) -> None:
        self.stop = threading.Event()
        self.done: int | None = None
        self.thread = threading.Thread(target=self._run, args=(store, name, spool_dir, kwargs))
        self.thread.start()
        _Worker.started.append(self)

    def _run(self, store: Store, name: str, spool_dir: Path, kwargs: dict[str, Any]) -> None:
        self.done = run_worker(store, name, "w-test", stop=self.stop, spool_dir=spool_dir,
                               poll_seconds=0.1, **kwargs)

    def join(self, timeout: float = 30.0) -> int | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not finish"
        return self.done


@pytest.fixture(autouse=True)
def _stop_workers() -> Iterator[None]:
    """A test that fails before its worker ends must not leave it serving: the worker
    would wait for work forever, and pytest for its thread."""
    yield
    while _Worker.started:
        worker = _Worker.started.pop()
        worker.stop.set()
        worker.thread.join(30)


def _take_over(store: Store, trial: TrialRecord, worker: str) -> ClaimedTrial | None:
    """``worker`` takes ``trial`` over: its hand-back and the new claim in one transaction.

    Two calls would leave it pending in between, and who claims it then is a matter of
    timing: the worker losing it claims again as soon as a heartbeat saw the loss.
    """
    with Session(write_engine(store.engine)) as session, session.begin():
        queue.release(session, trial.id, trial.attempt)
        return queue.claim(session, trial.search_id, worker, 60.0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _lease_end(store: Store, trial_id: int) -> float:
    """The trial's ``lease_expires_at`` as stored (not part of ``TrialRecord``)."""
    with store.engine.connect() as connection:
        statement = select(TRIALS.c.lease_expires_at).where(TRIALS.c.id == trial_id)
        return float(connection.execute(statement).scalar_one())


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_builtin_trials_run_and_report(store: Store, make_search: Make, tmp_path: Path) -> None:
    search = make_search({"dataset": {"trainSubset": 128, "validationSubset": 64}},
                         name=f"metrics-{uuid.uuid4().hex[:8]}")  # fresh metric labels
    record = _create(store, search, [{}, {"hpo": {"batch_size": 64}}])
    worker = _Worker(store, search.key, tmp_path, max_trials=2)
    assert worker.join(120) == 2
    labels = {"search": search.key}
    assert REGISTRY.get_sample_value("ma2ml_trials_finished_total",
                                     {**labels, "status": "completed"}) == 2
    assert REGISTRY.get_sample_value("ma2ml_trial_duration_seconds_count", labels) == 2
    assert REGISTRY.get_sample_value("ma2ml_worker_images_per_second",
                                     {**labels, "worker": "w-test"}) > 0
    trials = store.list_trials(record.id)
    assert [t.status for t in trials] == ["completed", "completed"]
    for trial in trials:
        assert trial.worker == "w-test"
        assert trial.reward == trial.metrics["accuracy"]
        assert trial.metrics["flops"] > 0 and trial.metrics["images_per_second"] > 0
    assert not list(tmp_path.rglob("*.pt"))  # checkpoints of finished trials are removed


class _StopOnceCheckpointed(threading.Event):
    """A worker stop (as SIGTERM sets it) that arrives once an epoch checkpoint exists."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def is_set(self) -> bool:
        return bool(list(self.directory.rglob("trial-*.pt")))


def test_preempted_trial_resumes_on_another_worker(store: Store, make_search: Make,
                                                   tmp_path: Path) -> None:
    shared = tmp_path / "shared-volume"
    search = make_search({"dataset": {"trainSubset": 384, "validationSubset": 64},
                          "budget": {"trialEpochs": 3},
                          "trainer": {"checkpointDir": str(shared)}})
    record = _create(store, search, [{"hpo": {"batch_size": 64}}])
    first = store.list_trials(record.id)[0].attempt
    stopped = run_worker(store, search.key, "preempted", stop=_StopOnceCheckpointed(shared),
                         spool_dir=tmp_path / "a")
    assert stopped == 0
    trial = store.list_trials(record.id)[0]
    assert (trial.status, trial.attempt, trial.failures) == ("pending", first + 1, 0)
    assert run_worker(store, search.key, "successor", max_trials=1, spool_dir=tmp_path / "b") == 1
    trial = store.list_trials(record.id)[0]
    assert (trial.status, trial.worker) == ("completed", "successor")
    assert trial.metrics["epochs"] == 3 and trial.metrics["resumed_from_epoch"] >= 1
    assert not list(shared.rglob("*.pt"))


def test_worker_exits_when_search_finishes(store: Store, make_search: Make, tmp_path: Path,
                                           watch_waits: Callable[[Store], Any]) -> None:
    search = _command_search(make_search, ["true"])
    record = _create(store, search, [])
    waits = watch_waits(store)
    worker = _Worker(store, search.key, tmp_path)
    waits.until_entered(3)  # three polls of the empty queue (poll_seconds 0.1)...
    assert worker.thread.is_alive()  # ...do not end the worker; only the search's end does
    store.move_search(record.id, SearchState.finished, by=Actor.learner)
    assert worker.join(10) == 0


def test_lease_expiry_hands_the_trial_over(store: Store, make_search: Make,
                                           tmp_path: Path) -> None:
    """A worker that died holding a lease: the learner's requeue hands the trial to a live
    worker, and the dead one's late report is refused (fencing)."""
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "go").touch()
    search = _command_search(make_search, _gated_trainer(gate))
    record = _create(store, search, [TINY_PIPELINE])
    dead = store.claim(record.id, "dead-worker", -1)  # a lease that has already run out
    assert dead is not None
    assert store.requeue_expired(record.id, max_retries=1) == (1, 0)
    assert _Worker(store, search.key, tmp_path, max_trials=1).join() == 1
    trial = store.get_trial(dead.id)
    assert (trial.status, trial.attempt, trial.worker, trial.reward) == (
        "completed", dead.attempt + 1, "w-test", 0.42)
    late = Report(dead.id, dead.attempt, "complete", 0.99, {"accuracy": 0.99})
    assert deliver(store, late, Spool(tmp_path / "spool"), threading.Event()) == "stale"
    assert store.get_trial(dead.id).reward == 0.42
    assert store.counts(record.id)["completed"] == 1


def test_lost_lease_stops_training(store: Store, make_search: Make, tmp_path: Path) -> None:
    """When another party takes the trial over, the heartbeat sees it and training stops
    at once; nothing is reported for the lost attempt."""
    gate = tmp_path / "gate"
    gate.mkdir()  # no 'go': the trainer would wait forever
    search = _command_search(make_search, _gated_trainer(gate), lease=1.5)
    record = _create(store, search, [TINY_PIPELINE])
    worker = _Worker(store, search.key, tmp_path)
    _wait_for((gate / "started").exists)
    running = store.list_trials(record.id)[0]
    thief = _take_over(store, running, "other-worker")  # behind the worker's back
    assert thief is not None and (thief.id, thief.attempt) == (running.id, running.attempt + 1)
    trainer = int((gate / "pid").read_text())
    _wait_for(lambda: not _alive(trainer))  # the next heartbeat saw the loss: trainer stopped
    worker.stop.set()
    assert worker.join() == 0
    trial = store.get_trial(running.id)
    assert (trial.status, trial.worker) == ("running", "other-worker")


def test_heartbeat_renews_the_lease(store: Store, make_search: Make) -> None:
    search = _command_search(make_search, ["true"])
    record = _create(store, search, [TINY_PIPELINE])
    claimed = store.claim(record.id, "w", 1.0)
    renewals: list[float] = [_lease_end(store, claimed.id)]
    beat = Heartbeat(store, claimed, 1.0, threading.Event(), threading.Event())
    beat.start()

    def renewed_twice() -> bool:
        end = _lease_end(store, claimed.id)
        if end > renewals[-1]:
            renewals.append(end)
        return len(renewals) >= 3

    _wait_for(renewed_twice)  # observed in the store, not inferred from a sleep
    beat.finish()
    assert not beat.lost and store.get_trial(claimed.id).status == "running"


def test_failing_command_is_not_retried(store: Store, make_search: Make,
                                        tmp_path: Path) -> None:
    search = _command_search(make_search, [sys.executable, "-c", "raise SystemExit(3)"],
                             retries=2)
    record = _create(store, search, [TINY_PIPELINE])
    first = store.list_trials(record.id)[0].attempt
    assert _Worker(store, search.key, tmp_path, max_trials=1).join() == 1
    trial = store.list_trials(record.id)[0]
    assert trial.status == "failed" and trial.attempt == first
    assert "exited with code 3" in trial.error


def test_infrastructure_errors_are_retried(store: Store, make_search: Make,
                                           tmp_path: Path) -> None:
    """A checkpoint directory that cannot be created (an unexpected OSError) is retryable."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    search = make_search({"dataset": {"trainSubset": 64, "validationSubset": 32},
                          "budget": {"trialEpochs": 2, "maxRetries": 1},
                          "trainer": {"checkpointDir": str(blocker / "checkpoints")}})
    record = _create(store, search, [{}])
    first = store.list_trials(record.id)[0].attempt
    assert _Worker(store, search.key, tmp_path, max_trials=2).join(60) == 2
    trial = store.list_trials(record.id)[0]
    assert (trial.status, trial.attempt, trial.failures) == ("failed", first + 1, 2)
    assert "NotADirectoryError" in trial.error or "FileExistsError" in trial.error


class _OutageStore(Store):
    """The real store, but every call raises ``StoreUnavailableError`` while ``outage`` is
    set. Used on both backends because a SQLite file has no server to lose; the PostgreSQL
    test below cuts a real connection instead."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.outage = threading.Event()
        self.refused = 0
        for name in ("get_search", "claim", "heartbeat", "complete", "fail", "release"):
            setattr(self, name, self._guard(getattr(self, name)))

    def _guard(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.outage.is_set():
                self.refused += 1
                raise StoreUnavailableError("database unavailable: injected outage")
            return method(*args, **kwargs)
        return guarded


def _report_through_outage(store: Store, direct: Store, search: PipelineSearch,
                           gate: Path, spool_dir: Path, cut: Callable[[], None],
                           restore: Callable[[], None]) -> None:
    record = _create(direct, search, [TINY_PIPELINE])
    worker = _Worker(store, search.key, spool_dir, max_trials=1)
    _wait_for((gate / "started").exists)
    cut()
    (gate / "go").touch()
    _wait_for(lambda: bool(list(spool_dir.rglob("trial-*.json"))))
    assert direct.list_trials(record.id)[0].status == "running"  # not reported yet
    restore()
    assert worker.join() == 1
    trial = direct.list_trials(record.id)[0]
    assert (trial.status, trial.reward) == ("completed", 0.42)
    assert not list(spool_dir.rglob("trial-*.json"))


def test_spooled_result_is_delivered_after_an_outage(
        database_url: str, make_search: Make, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    search = _command_search(make_search, _gated_trainer(gate))
    with _OutageStore(database_url) as store:
        _report_through_outage(store, store, search, gate, tmp_path / "spool",
                               store.outage.set, store.outage.clear)
        assert store.refused > 0


@pytest.mark.postgres
def test_spool_survives_a_real_postgres_outage(postgres_url: str, make_search: Make,
                                               tmp_path: Path) -> None:
    """The worker's connections go through a TCP proxy that the test cuts and restores."""
    url = make_url(postgres_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    gate = tmp_path / "gate"
    gate.mkdir()
    search = _command_search(make_search, _gated_trainer(gate))
    try:
        with Store(postgres_url) as direct, Store(
                url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)) as store:
            _report_through_outage(store, direct, search, gate, tmp_path / "spool",
                                   proxy.down, proxy.up)
    finally:
        proxy.close()


def test_spool_left_by_a_dead_worker_is_flushed(store: Store, make_search: Make,
                                                tmp_path: Path) -> None:
    search = _command_search(make_search, ["true"])
    record = _create(store, search, [TINY_PIPELINE])
    claimed = store.claim(record.id, "crashed-worker", 60.0)
    spool = Spool(Places.of(tmp_path, record).reports)
    spool.add(Report(claimed.id, claimed.attempt, "complete", 0.7, {"accuracy": 0.7}))
    store.move_search(record.id, SearchState.finished, by=Actor.learner)
    assert run_worker(store, search.key, "next-worker", spool_dir=tmp_path) == 0
    assert store.get_trial(claimed.id).reward == 0.7
    assert spool.pending() == []


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[tuple[str, Store]]:
    with Store(sqlite_url) as opened:
        yield sqlite_url, opened


def test_sigterm_releases_the_trial_and_exits_zero(
        sqlite_store: tuple[str, Store], make_search: Make, tmp_path: Path) -> None:
    url, store = sqlite_store
    gate = tmp_path / "gate"
    gate.mkdir()
    search = _command_search(make_search, _gated_trainer(gate))
    record = _create(store, search, [TINY_PIPELINE])
    first = store.list_trials(record.id)[0].attempt
    ma2ml = Path(sys.executable).with_name("ma2ml")
    process = subprocess.Popen(
        [str(ma2ml), "worker", "--search", search.key, "--db", url, "--worker-id", "pod-1",
         "--spool-dir", str(tmp_path / "spool")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for((gate / "started").exists, timeout=60)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    trial = store.list_trials(record.id)[0]
    assert (trial.status, trial.attempt, trial.failures) == ("pending", first + 1, 0)


def test_trainer_text_the_database_refuses_fails_that_trial_not_the_worker(
        store: Store, make_search: Make, tmp_path: Path) -> None:
    """A trainer that prints NUL bytes and exits 3: PostgreSQL refuses NUL in text, so
    the error tail is cleaned; the trial fails with its real error and the same worker
    goes on to the next trial."""
    noisy = [sys.executable, "-c",
             "import sys; sys.stdout.write('before\\x00after\\n'); sys.stdout.flush(); "
             "raise SystemExit(3)"]
    search = _command_search(make_search, noisy, retries=0)
    record = _create(store, search, [TINY_PIPELINE, {"trainer": {"wait": 1}}])
    assert _Worker(store, search.key, tmp_path, max_trials=2).join() == 2
    trials = store.list_trials(record.id)
    assert [t.status for t in trials] == ["failed", "failed"]
    assert all("exited with code 3" in (t.error or "") for t in trials)
    assert all("\x00" not in (t.error or "") for t in trials)


def test_a_report_the_store_refuses_fails_the_trial_with_the_reason(
        store: Store, make_search: Make, tmp_path: Path) -> None:
    search = _command_search(make_search, ["true"])
    record = _create(store, search, [TINY_PIPELINE])
    claimed = store.claim(record.id, "w", 30)
    oversized = Report(claimed.id, claimed.attempt, ReportKind.complete, 0.5,
                       {"curve": list(range(100_000))})
    assert send_report(store, oversized) == TrialOutcome.failed
    trial = store.get_trial(claimed.id)
    assert trial.status == "failed" and "MetricsTooLargeError" in trial.error


def test_spool_keeps_diverged_results_and_moves_corrupt_files_aside(
        store: Store, make_search: Make, tmp_path: Path) -> None:
    search = _command_search(make_search, ["true"])
    record = _create(store, search, [TINY_PIPELINE])
    claimed = store.claim(record.id, "w", 30)
    spool_dir = Places.of(tmp_path, record).reports
    spool = Spool(spool_dir)
    spool.add(Report(claimed.id, claimed.attempt, ReportKind.complete, float("nan"), {},
                     diverged=True))
    (spool_dir / "trial-99-attempt-1.json").write_text('{"trial_id": 99, "attem')
    (spool_dir / "trial-98-attempt-1.json").write_bytes(b"\xff\xfe not json")
    store.move_search(record.id, SearchState.finished, by=Actor.learner)
    assert run_worker(store, search.key, "next-worker", spool_dir=tmp_path) == 0
    assert store.get_trial(claimed.id).status == "diverged"
    assert sorted(p.name for p in spool_dir.iterdir()) == [
        "trial-98-attempt-1.corrupt", "trial-99-attempt-1.corrupt"]


# --------------------------------------------------------------------------- learning curves


ASHA = {"type": "asha", "minEpochs": 1, "reductionFactor": 2}


def _better_peer(store: Store, record: SearchRecord, search: PipelineSearch) -> None:
    """Claim the first queued trial and record 1.0 at epoch 1: any later trial is worse there,
    so ASHA (keep the best half) stops it at its first rung."""
    peer = store.claim(record.id, "peer", 60.0)
    assert peer is not None
    assert store.report_step(peer.id, peer.attempt, 1, 1.0, {}) == "continue"


def test_builtin_trial_records_a_point_per_epoch(store: Store, make_search: Make,
                                                 tmp_path: Path) -> None:
    search = make_search({"dataset": {"trainSubset": 128, "validationSubset": 64},
                          "budget": {"trialEpochs": 3}})
    record = _create(store, search, [{}])
    assert _Worker(store, search.key, tmp_path, max_trials=1).join(60) == 1
    [trial] = store.list_trials(record.id)
    curve = store.curves(record.id)[trial.id]
    assert [(s.step, s.decision) for s in curve] == [(1, "continue"), (2, "continue"),
                                                     (3, "continue")]
    assert [s.metrics["epoch"] for s in curve] == [1, 2, 3]
    assert all(s.value == s.metrics["accuracy"] for s in curve)
    assert trial.status == "completed" and trial.reward == curve[-1].value  # one evaluation
    assert trial.last_step == 3


def test_builtin_trial_stopped_by_the_store_ends_stopped(store: Store, make_search: Make,
                                                         tmp_path: Path) -> None:
    """The store says stop at epoch 1 of 3: the trial ends ``stopped`` with that result, no
    report, no checkpoint left, and the finished counter counts it as stopped."""
    search = make_search({"dataset": {"trainSubset": 128, "validationSubset": 64},
                          "budget": {"trialEpochs": 3}, "earlyStopping": ASHA},
                         name=f"stopped-{uuid.uuid4().hex[:8]}")  # fresh metric labels
    record = _create(store, search, [{}, {}])
    _better_peer(store, record, search)
    started = time.monotonic()
    assert _Worker(store, search.key, tmp_path, max_trials=1).join(60) == 1
    trial = store.list_trials(record.id)[1]
    [point] = store.curves(record.id)[trial.id]
    assert (point.step, point.decision) == (1, "stop")
    assert (trial.status, trial.reward, trial.last_step) == ("stopped", point.value, 1)
    assert trial.metrics["stopped_at_epoch"] == 1 and trial.error is None
    assert REGISTRY.get_sample_value("ma2ml_trials_finished_total",
                                     {"search": search.key, "status": "stopped"}) == 1
    assert not list(tmp_path.rglob("*.pt"))  # the epoch-1 checkpoint was never kept
    assert time.monotonic() - started < 20


def _stepping_trainer(gate: Path) -> list[str]:
    """wait=1: report 0.1 at epoch 1, then train 'forever'; wait=0: report 0.42 at once."""
    code = (f"import json, os, pathlib, time, ma2ml\n"
            f"d = pathlib.Path({str(gate)!r})\n"
            f"p = json.loads(os.environ['MA2ML_PIPELINE'])\n"
            f"if p['trainer']['wait']:\n"
            f"    (d / 'pid').write_text(str(os.getpid()))\n"
            f"    while not (d / 'go').exists(): time.sleep(0.02)\n"
            f"    ma2ml.report(accuracy=0.1, step=1)\n"
            f"    time.sleep(60)\n"
            f"ma2ml.report(accuracy=0.42)\n")
    return [sys.executable, "-c", code]


def _stepping_search(make_search: Make, gate: Path, name: str = "worker-test"
                     ) -> PipelineSearch:
    return make_search({
        "agents": [{"name": "trainer", "decisions": [{"name": "wait", "values": [0, 1]}]}],
        "trainer": {"type": "command", "command": _stepping_trainer(gate)},
        "budget": {"trialEpochs": 2}, "earlyStopping": ASHA}, name=name)


def test_stopped_custom_trainer_is_killed_and_the_next_trial_claimed_at_once(
        store: Store, make_search: Make, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "go").touch()
    search = _stepping_search(make_search, gate, f"custom-stop-{uuid.uuid4().hex[:8]}")
    record = _create(store, search, [{"trainer": {"wait": 0}}, {"trainer": {"wait": 1}},
                                     {"trainer": {"wait": 0}}])
    _better_peer(store, record, search)
    done: list[int] = []
    # A minute's poll: a worker that waited for the queue after the stop would time out.
    thread = threading.Thread(target=lambda: done.append(run_worker(
        store, search.key, "w-test", max_trials=2, spool_dir=tmp_path, poll_seconds=60)))
    started = time.monotonic()
    thread.start()
    thread.join(20)
    assert not thread.is_alive() and done == [2]
    assert time.monotonic() - started < 10
    _, stopped, following = store.list_trials(record.id)
    assert (stopped.status, stopped.reward) == ("stopped", 0.1)
    assert (following.status, following.reward) == ("completed", 0.42)
    assert not _alive(int((gate / "pid").read_text())), "the stopped trainer was killed"
    labels = {"search": search.key}
    assert REGISTRY.get_sample_value("ma2ml_trials_finished_total",
                                     {**labels, "status": "stopped"}) == 1
    assert REGISTRY.get_sample_value("ma2ml_trials_finished_total",
                                     {**labels, "status": "completed"}) == 1


def test_a_step_report_refused_as_stale_stops_training_like_a_lost_lease(
        store: Store, make_search: Make, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    search = _stepping_search(make_search, gate)
    record = _create(store, search, [{"trainer": {"wait": 1}}])
    claimed = store.claim(record.id, "w-test", 60.0)  # a long lease: no heartbeat notices
    assert claimed is not None
    outcome: list[TrialOutcome] = []
    thread = threading.Thread(target=lambda: outcome.append(run_claimed(
        store, search, search.key, claimed, "w-test", stop=threading.Event(),
        spool=Spool(tmp_path / "spool"), places=Places.of(tmp_path, record))))
    thread.start()
    _wait_for((gate / "pid").exists)
    store.release(claimed.id, claimed.attempt)  # handed over behind the worker's back
    assert store.claim(record.id, "thief", 60.0) is not None
    (gate / "go").touch()  # the trainer reports epoch 1 for an attempt that lost the trial
    thread.join(20)
    assert outcome == [TrialOutcome.lost]
    assert not _alive(int((gate / "pid").read_text()))
    trial = store.get_trial(claimed.id)
    assert (trial.status, trial.worker) == ("running", "thief")
    assert store.curves(record.id) == {}


def test_a_store_outage_during_a_step_report_does_not_stop_training(
        store: Store, make_search: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*args: Any) -> None:
        raise StoreUnavailableError("connection refused")

    search = make_search({"dataset": {"trainSubset": 128, "validationSubset": 64},
                          "budget": {"trialEpochs": 2}, "earlyStopping": ASHA})
    record = _create(store, search, [{}])
    monkeypatch.setattr(store, "report_step", unavailable)
    assert _Worker(store, search.key, tmp_path, max_trials=1).join(60) == 1
    [trial] = store.list_trials(record.id)
    assert trial.status == "completed" and trial.metrics["epochs"] == 2


def test_two_workers_flushing_one_spool_at_once_both_go_on(
        store: Store, make_search: Make, tmp_path: Path) -> None:
    """Workers of a search share its spool: while one delivers a report, another may
    deliver (and delete) the same file. Neither may crash on the file being gone."""
    search = _command_search(make_search, ["true"])
    record = _create(store, search, [TINY_PIPELINE])
    claimed = store.claim(record.id, "w", 30)
    directory = tmp_path / "reports"
    Spool(directory).add(Report(claimed.id, claimed.attempt, ReportKind.complete, 0.6, {}))

    class Racing:
        """The real store, but another worker flushes the spool just before each call."""

        def __getattr__(self, name: str) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                Spool(directory).flush(store)
                return getattr(store, name)(*args, **kwargs)
            return call

    assert Spool(directory).flush(Racing())  # type: ignore[arg-type]
    assert store.get_trial(claimed.id).reward == 0.6 and Spool(directory).pending() == []


@pytest.mark.postgres
def test_a_process_started_during_an_outage_waits_for_the_store(postgres_url: str) -> None:
    url = make_url(postgres_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.down()
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    opened: list[Store | None] = []
    try:
        opener = threading.Thread(target=lambda: opened.append(
            open_store(through, threading.Event())))
        opener.start()
        opener.join(1.5)
        assert opener.is_alive()  # still waiting (and retrying), not crashed
        proxy.up()
        opener.join(60)
        assert opened and opened[0] is not None
        opened[0].close()
        stopped = threading.Event()
        stopped.set()
        assert open_store(through, stopped) is None  # asked to stop: gives up at once
    finally:
        proxy.close()


# --------------------------------------------------------------------------- issue 25


def _remembering_trainer(gate: Path) -> list[str]:
    """A custom trainer that resumes from ``$MA2ML_CHECKPOINT_PATH`` (reporting what it found
    there as the metric ``resumed``), checkpoints its pipeline, then waits for ``gate/go``."""
    code = (f"import os, pathlib, time, ma2ml\n"
            f"ck = pathlib.Path(os.environ['MA2ML_CHECKPOINT_PATH'])\n"
            f"resumed = ck.read_text() if ck.exists() else ''\n"
            f"ck.parent.mkdir(parents=True, exist_ok=True)\n"
            f"ck.write_text(os.environ['MA2ML_PIPELINE'])\n"
            f"d = pathlib.Path({str(gate)!r})\n"
            f"(d / 'started').touch()\n"
            f"while not (d / 'go').exists(): time.sleep(0.02)\n"
            f"ma2ml.report(accuracy=0.5, resumed=resumed)\n")
    return [sys.executable, "-c", code]


def test_a_run_against_another_store_never_resumes_its_checkpoints(
        store: Store, make_search: Make, tmp_path: Path) -> None:
    """Issue 25, item 2: the same spec and spool folder, another database. Trial 1 of the
    first store leaves a checkpoint (its worker stopped mid-training); trial 1 of the
    second store is another pipeline and must train afresh, not from that checkpoint."""
    gate, spool_dir = tmp_path / "gate", tmp_path / "spool"
    gate.mkdir()
    search = _command_search(make_search, _remembering_trainer(gate))
    first = _create(store, search, [{"trainer": {"wait": 0}}])
    worker = _Worker(store, search.key, spool_dir)
    _wait_for((gate / "started").exists)
    worker.stop.set()  # the trial is handed back, its checkpoint kept for a resume
    worker.join()
    assert store.list_trials(first.id)[0].status == "pending"
    assert list((spool_dir / "checkpoints").rglob("trial-1.pt"))
    (gate / "go").touch()
    with Store(f"sqlite:///{tmp_path / 'other.db'}") as other:
        second = _create(other, search, [{"trainer": {"wait": 1}}])
        assert _Worker(other, search.key, spool_dir, max_trials=1).join() == 1
        trial = other.list_trials(second.id)[0]
    assert trial.status == "completed"
    assert trial.metrics["resumed"] == "", "resumed another store's trial of another pipeline"
    assert _Worker(store, search.key, spool_dir, max_trials=1).join() == 1  # its own: resumed
    resumed = store.list_trials(first.id)[0].metrics["resumed"]
    assert json.loads(resumed) == {"trainer": {"wait": 0}}


def test_a_checkpoint_of_another_pipeline_is_refused(store: Store, make_search: Make,
                                                      tmp_path: Path) -> None:
    search = _command_search(make_search, ["true"])
    record = _create(store, search, [{"trainer": {"wait": 0}}])
    claimed = store.claim(record.id, "w", 30)
    assert claimed is not None
    places = Places.of(tmp_path, record)
    path = places.checkpoint_path(search, claimed)
    path.parent.mkdir(parents=True)
    path.write_text("weights of another pipeline")
    pipeline_record(path).write_text(json.dumps({"trainer": {"wait": 1}}))
    assert places.checkpoint(search, claimed) == path and not path.exists()
    path.write_text("weights of this pipeline")  # recorded for this pipeline now: kept
    assert places.checkpoint(search, claimed) == path and path.exists()
    pipeline_record(path).unlink()  # a checkpoint whose pipeline nobody recorded
    assert places.checkpoint(search, claimed) == path and not path.exists()


def test_a_schema_bug_on_the_step_path_ends_the_worker_with_the_message(
        store: Store, make_search: Make, tmp_path: Path) -> None:
    """Issue 25, item 5: without the ``trial_steps`` table every step report fails. That is
    no trial's fault and no retry mends it: the worker hands its trial back untouched and
    ends with the database's own message (not SQLAlchemy's closing web link)."""
    code = "import ma2ml; ma2ml.report(accuracy=0.5, step=1); ma2ml.report(accuracy=0.5)"
    search = _command_search(make_search, [sys.executable, "-c", code], retries=3)
    record = _create(store, search, [TINY_PIPELINE, {"trainer": {"wait": 1}}])
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE trial_steps"))
    with pytest.raises(StoreFault, match="trial_steps") as raised:
        run_worker(store, search.key, "w-test", spool_dir=tmp_path, max_trials=2)
    assert "sqlalche.me" not in str(raised.value)
    trials = store.list_trials(record.id)
    assert [(t.status, t.failures) for t in trials] == [("pending", 0), ("pending", 0)]

    worker = subprocess.run(
        [sys.executable, "-m", "ma2ml", "worker", "--search", search.key, "--db",
         store.url, "--spool-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert worker.returncode == EXIT_STORE_FAULT, worker.stderr[-2000:]
    last = worker.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the store could not record epoch 1"), worker.stderr[-2000:]
    assert "trial_steps" in last and "sqlalche.me" not in last
    assert [t.failures for t in store.list_trials(record.id)] == [0, 0]
