"""``ma2ml run`` against PostgreSQL through a database outage (issue 25, item 1).

What is real: a private PostgreSQL cluster the suite starts and stops
(``postgres.py``), the ``ma2ml run`` command in its own process (its learner
thread, its progress view, its worker processes), a custom trainer script that
trains for 0.5-1.5 s and reports with ``ma2ml.report``. Nothing is patched.

The database is stopped (``pg_ctl stop -m fast``) while trials train, once
some results are in, and started again after 3 x ``leaseSeconds``: the run must
stay up through the outage (the old one exited 2 on its first read, abandoning
its running and held trials), then finish the search with every trial
completed once and ``finished_seq`` without gaps, and exit 0.
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

from ma2ml.store import SearchState, Store, StoreUnavailableError, TrialStatus

from .postgres import PrivateCluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LEASE_SECONDS = 3.0
OUTAGE_SECONDS = 3 * LEASE_SECONDS
MAX_TRIALS = 16
#: Results in before the database is stopped (the run is well under way).
RESULTS_BEFORE_OUTAGE = 3
START_DEADLINE_SECONDS = 180.0
FINISH_DEADLINE_SECONDS = 300.0

TRAINER = '''\
"""Outage trainer: a marker file while it trains, then the result."""
import os, pathlib, time

import ma2ml

number = int(os.environ["MA2ML_SEED"])
marker = pathlib.Path(os.environ["MA2ML_OUTAGE_DIR"]) / f"{os.getpid()}.training"
marker.touch()
time.sleep(0.5 + (number * 0.618034) % 1.0)
marker.unlink()
ma2ml.report(accuracy=0.05 + (number % 10) / 10)
'''


def _spec(tmp_path: Path) -> Path:
    trainer = tmp_path / "outage_trainer.py"
    trainer.write_text(TRAINER)
    values = list(range(10))
    document = {
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "run-outage"},
        "spec": {
            "agents": [{"name": "alpha", "decisions": [{"name": "x", "values": values}]},
                       {"name": "beta", "decisions": [{"name": "y", "values": values}]}],
            "algorithm": {"name": "random", "seed": 3},
            # An outage must never fail a trial, let alone the search.
            "budget": {"maxTrials": MAX_TRIALS, "maxFailedTrials": MAX_TRIALS,
                       "maxRetries": 20, "parallelism": 2, "prefetch": 1,
                       "leaseSeconds": LEASE_SECONDS},
            "trainer": {"type": "command", "command": [sys.executable, str(trainer)],
                        "timeoutSeconds": 60},
        },
    }
    path = tmp_path / "run-outage.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _results(store: Store) -> int:
    try:
        record = store.get_search("default/run-outage")
        return store.counts(record.id).results if record else 0
    except StoreUnavailableError:
        return 0


@pytest.mark.serial
def test_ma2ml_run_waits_out_a_database_outage(private_postgres: PrivateCluster,
                                               tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    training = tmp_path / "training"
    training.mkdir()
    log_path = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MA2ML_")}
    env.update(MA2ML_OUTAGE_DIR=str(training), PYTHONUNBUFFERED="1",
               TYPER_STANDARD_TRACEBACK="1")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ma2ml", "run", str(spec), "--db", private_postgres.url],
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True)
    store = Store(private_postgres.url)

    def output() -> str:
        return log_path.read_text(errors="replace")[-5000:]

    try:
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        # The outage starts once the run is under way and a trainer is mid-training.
        while _results(store) < RESULTS_BEFORE_OUTAGE or not any(training.iterdir()):
            assert process.poll() is None, output()
            assert time.monotonic() < deadline, f"the run never got going:\n{output()}"
            time.sleep(0.05)
        private_postgres.stop("fast")
        down = time.monotonic()
        while time.monotonic() - down < OUTAGE_SECONDS:
            assert process.poll() is None, f"ma2ml run exited during the outage:\n{output()}"
            time.sleep(0.2)
        private_postgres.start()
        process.wait(timeout=FINISH_DEADLINE_SECONDS)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if not private_postgres.running():
            private_postgres.start()  # the next test needs its database
        store.close()  # its pooled connections died with the server: read with a new one
    assert process.returncode == 0, output()
    with Store(private_postgres.url) as store:
        record = store.get_search("default/run-outage")
        assert record is not None and record.state == SearchState.finished, \
            (record, output())
        trials = store.list_trials(record.id)
        completed = [t for t in trials if t.status == TrialStatus.completed]
        assert len(completed) == MAX_TRIALS, [(t.number, t.status, t.error) for t in trials]
        assert not [t for t in trials if t.status == TrialStatus.failed]
        seqs = sorted(t.finished_seq for t in trials if t.finished_seq is not None)
        assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert "store unavailable" in log_path.read_text(errors="replace"), \
        "the run said nothing about the outage"
