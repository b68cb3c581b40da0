"""One learner per search (issue 25, item 3): ``LearnerLock`` on both backends, and a
second ``ma2ml run`` of a search that is running refuses with one line.

Real SQLite files and a real PostgreSQL server; the end-to-end test runs two real
``ma2ml run`` processes with real workers whose trainer sleeps, so the first run's
trials stay running while the second one starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import Store
from ma2ml.store.errors import LearnerBusyError
from ma2ml.store.learner_lock import LearnerLock, lock_key


def test_a_search_has_one_learner_at_a_time(store: Store) -> None:
    with LearnerLock(store, "default/a"):
        with pytest.raises(LearnerBusyError, match="default/a .* already has a learner"):
            LearnerLock(store, "default/a").acquire()
        with LearnerLock(store, "default/b"):  # another search: its own lock
            pass
    with LearnerLock(store, "default/a"):  # released with the first holder
        pass


def test_a_learner_process_that_dies_leaves_no_lock(database_url: str) -> None:
    """kill -9 of the holder frees the lock (the server ends its session; the kernel
    drops its flock): no stale lock needs clearing by hand."""
    with Store(database_url):
        pass  # create the schema (and the SQLite file) first
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from ma2ml.store import Store\n"
         "from ma2ml.store.learner_lock import LearnerLock\n"
         "store = Store(sys.argv[1])\n"
         "LearnerLock(store, 'default/a').acquire()\n"
         "print('held', flush=True)\n"
         "time.sleep(600)\n", database_url],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with Store(database_url) as store:
            with pytest.raises(LearnerBusyError):
                LearnerLock(store, "default/a").acquire()
            holder.kill()
            holder.wait(timeout=60)
            deadline = time.monotonic() + 60  # the server notices the closed socket
            while True:
                try:
                    LearnerLock(store, "default/a").acquire()
                    break
                except LearnerBusyError:
                    assert time.monotonic() < deadline, "the dead holder's lock stayed"
                    time.sleep(0.2)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


@pytest.mark.postgres
def test_a_lock_lost_with_its_session_is_taken_again_or_refused(postgres_url: str) -> None:
    """An outage ends the lock's session: ``keep`` takes the lock again once the database
    answers, and raises when another learner has taken it meanwhile. (The session is
    ended with pg_terminate_backend, as a server restart ends it.)"""
    with Store(postgres_url) as store:
        lock = LearnerLock(store, "default/a")
        lock.acquire()
        try:
            _end_session(store, lock)
            lock.keep()  # retaken: nobody else wanted it
            with pytest.raises(LearnerBusyError):
                LearnerLock(store, "default/a").acquire()
            _end_session(store, lock)
            other = LearnerLock(store, "default/a")
            other.acquire()
            with pytest.raises(LearnerBusyError, match="took it over"):
                lock.keep()
            other.release()
        finally:
            lock.release()


def _end_session(store: Store, lock: LearnerLock) -> None:
    assert lock._connection is not None
    pid = lock._connection.execute(text("SELECT pg_backend_pid()")).scalar()
    lock._connection.commit()
    _terminate(store, pid)


def _holder(store: Store, search: str) -> int | None:
    """The server process (session) holding ``search``'s lock, if any. A bigint advisory
    lock is listed as its high and low 32 bits (classid, objid) with objsubid 1."""
    key = lock_key(search) & 0xFFFF_FFFF_FFFF_FFFF
    with store.engine.connect() as connection:
        return connection.execute(
            text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                 "AND classid = :high AND objid = :low AND objsubid = 1"),
            {"high": key >> 32, "low": key & 0xFFFF_FFFF}).scalar()


def _terminate(store: Store, pid: int) -> None:
    """End the session ``pid`` (as a server restart ends it) and wait until it is gone."""
    with store.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()
        deadline = time.monotonic() + 60  # the signal is asynchronous: wait until it is gone
        while admin.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                            {"pid": pid}).scalar():
            admin.commit()
            assert time.monotonic() < deadline, "the session was not ended"
            time.sleep(0.05)


def _sleepy_spec(tmp_path: Path) -> Path:
    document = {
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "twice"},
        "spec": {
            "agents": [{"name": "trainer", "decisions": [{"name": "n", "values": [0, 1, 2]}]}],
            "algorithm": {"name": "random", "seed": 0},
            "budget": {"maxTrials": 6, "parallelism": 1, "leaseSeconds": 30},
            "trainer": {"type": "command", "command": ["sleep", "600"]},
        },
    }
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.postgres
@pytest.mark.slow
def test_a_second_ma2ml_run_of_a_running_search_refuses(tmp_path: Path,
                                                         postgres_url: str) -> None:
    spec = _sleepy_spec(tmp_path)
    command = [sys.executable, "-m", "ma2ml", "run", str(spec), "--db", postgres_url]
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        with Store(postgres_url) as store:
            deadline = time.monotonic() + 120
            while True:
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                record = store.get_search("default/twice")
                if record is not None and store.counts(record.id)["running"] >= 1:
                    break
                assert time.monotonic() < deadline, "the first run never trained a trial"
                time.sleep(0.2)
            second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                                    timeout=120)
            assert second.returncode == 2, second.stdout + second.stderr
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: search default/twice"), \
                second.stderr
            assert "already has a learner" in lines[0]
            assert first.poll() is None, "the second run must not disturb the first"
            numbers = [t.number for t in store.list_trials(record.id)]
            assert len(numbers) == len(set(numbers))
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGTERM)
            try:
                first.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(first.pid, signal.SIGKILL)
                first.wait()


@pytest.mark.slow
def test_a_learner_process_waits_while_another_learner_drives_the_search(
        database_url: str, tmp_path: Path) -> None:
    """``ma2ml learner`` (the learner pod) started while another learner holds the search
    waits, proposing nothing, and drives the search once that one is gone."""
    document = yaml.safe_load(_sleepy_spec(tmp_path).read_text())
    log_path = tmp_path / "learner.log"
    with Store(database_url) as store:
        record = store.create_search("default/twice", spec_to_document(parse_spec(document)))
        held = LearnerLock(store, "default/twice")
        held.acquire()
        with log_path.open("wb") as log:
            learner = subprocess.Popen(
                [sys.executable, "-m", "ma2ml", "learner", "--search", "default/twice",
                 "--db", database_url], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while "already has a learner" not in log_path.read_text(errors="replace"):
                assert learner.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the learner never said it waits"
                time.sleep(0.2)
            assert store.counts(record.id).total == 0, "a waiting learner proposed trials"
            held.release()
            while store.counts(record.id).total == 0:
                assert learner.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline + 120, "the learner never took over"
                time.sleep(0.2)
            learner.send_signal(signal.SIGTERM)
            assert learner.wait(timeout=120) == 0, log_path.read_text()[-3000:]
        finally:
            held.release()
            if learner.poll() is None:
                learner.kill()
                learner.wait()


@pytest.mark.postgres
@pytest.mark.slow
def test_a_learner_process_keeps_its_lock_through_a_lost_session_or_stops(
        postgres_url: str, tmp_path: Path) -> None:
    """``ma2ml learner`` re-checks its lock as ``ma2ml run`` does (``LearnerLock.keep``):
    its session ended (an outage), it takes the lock again and goes on; ended again while
    another learner takes it, it stops instead of driving the search beside that one."""
    document = yaml.safe_load(_sleepy_spec(tmp_path).read_text())
    log_path = tmp_path / "learner.log"
    with Store(postgres_url) as store:
        record = store.create_search("default/twice", spec_to_document(parse_spec(document)))
        with log_path.open("wb") as log:
            learner = subprocess.Popen(
                [sys.executable, "-m", "ma2ml", "learner", "--search", "default/twice",
                 "--db", postgres_url], stdout=log, stderr=subprocess.STDOUT)
        other = LearnerLock(store, "default/twice")
        try:
            deadline = time.monotonic() + 120

            def alive() -> None:
                assert learner.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.1)

            while (first := _holder(store, "default/twice")) is None or \
                    store.counts(record.id).total == 0:
                alive()  # until it holds the lock and drives the search
            _terminate(store, first)
            while (_holder(store, "default/twice") or first) == first:
                alive()  # until it has taken the lock again, in a new session
            assert learner.poll() is None, "a learner that retook its lock goes on"
            while True:  # end its session again, and take the lock before it does
                pid = _holder(store, "default/twice")
                if pid is not None:
                    _terminate(store, pid)
                try:
                    other.acquire()
                    break
                except LearnerBusyError:
                    alive()
            assert learner.wait(timeout=120) == 0, log_path.read_text()[-3000:]
            assert "another learner took it over" in log_path.read_text()
        finally:
            other.release()
            if learner.poll() is None:
                learner.kill()
                learner.wait()
