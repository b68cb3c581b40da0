"""Local workers of ``ma2ml run``: capped at the machine's CPUs (issue 25, item 13), run
beside the spec so a custom trainer's relative paths work (item 18), and the run's
progress view and parallelism follower wait out an unreachable database (item 1).

Real ``ma2ml run`` processes with real workers and custom trainers on real SQLite
files; the unreachable database is a real PostgreSQL URL on a port nobody listens on.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from ma2ml.local.pool import WorkerCount, local_worker_count, machine_cpus
from ma2ml.local.progress import ProgressView
from ma2ml.local.runner import _parallelism
from ma2ml.store import Store

UNREACHABLE = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"


def _spec(name: str, command: list[str], parallelism: int = 1, max_trials: int = 2
          ) -> dict:
    return {
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": name},
        "spec": {
            "agents": [{"name": "hpo", "decisions": [{"name": "lr", "values": [0.1, 0.01]}]}],
            "algorithm": {"name": "random", "seed": 1},
            "budget": {"maxTrials": max_trials, "parallelism": parallelism},
            "trainer": {"type": "command", "command": command},
        },
    }


def _run(spec: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ma2ml", "run", str(spec)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_the_worker_count_is_capped_at_the_cpus_and_says_so() -> None:
    notes: list[str] = []
    count = WorkerCount(None, notes.append, cpus=2)
    assert count(16) == 2 and count(16) == 2 and count(1) == 1
    assert notes == ["budget.parallelism is 16 but this machine has 2 CPUs: running 2 "
                     "worker processes (--workers N runs N)"]  # once per capped value
    assert WorkerCount(5, notes.append, cpus=2)(16) == 5  # --workers: as asked
    assert local_worker_count(1024, cpus=4) == 4 and local_worker_count(3, cpus=64) == 3
    assert 1 <= machine_cpus() <= (os.cpu_count() or 1)


@pytest.mark.slow
def test_ma2ml_run_starts_no_more_workers_than_cpus(tmp_path: Path) -> None:
    cpus = machine_cpus()
    spec = tmp_path / "wide.yaml"
    spec.write_text(yaml.safe_dump(_spec("wide", [sys.executable, "-c",
                                                  "import ma2ml; ma2ml.report(accuracy=0.5)"],
                                         parallelism=cpus + 3, max_trials=3)))
    result = _run(spec, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f"budget.parallelism is {cpus + 3} but this machine has {cpus} CPU"
            in result.stdout), result.stdout
    with Store(f"sqlite:///{tmp_path / 'wide.db'}", create=False) as store:
        record = store.get_search("default/wide")
        assert record is not None
        slots = {int(t.worker.rsplit("-", 1)[1]) for t in store.list_trials(record.id)
                 if t.worker}
    assert slots and max(slots) < cpus, slots


TRAIN = """\
import sys

import ma2ml

with open(sys.argv[1]) as data:  # a path relative to the spec's folder
    ma2ml.report(accuracy=float(data.read()))
"""


@pytest.mark.slow
def test_a_relative_trainer_command_runs_beside_the_spec(tmp_path: Path) -> None:
    """The README's own ``command: [python, train.py]``, the spec in another folder than
    the one ``ma2ml run`` is started from."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "train.py").write_text(TRAIN)
    (project / "data" / "value.txt").write_text("0.75")
    spec = project / "search.yaml"
    spec.write_text(yaml.safe_dump(_spec("relative", ["python", "train.py", "data/value.txt"])))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _run(Path("..") / "project" / "search.yaml", elsewhere)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with Store(f"sqlite:///{project / 'search.db'}", create=False) as store:
        record = store.get_search("default/relative")
        assert record is not None
        trials = store.list_trials(record.id)
    assert [t.status for t in trials] == ["completed", "completed"], [t.error for t in trials]
    assert all(t.metrics["accuracy"] == 0.75 for t in trials)
    assert not list(elsewhere.iterdir()), "nothing is written where the run was started"


def test_the_view_and_the_parallelism_follower_wait_out_an_unreachable_database() -> None:
    out = io.StringIO()
    with Store(UNREACHABLE, migrate=False) as store:
        view = ProgressView(Console(file=out))
        view(store, 1)  # says it waits, raises nothing
        view(store, 1)
        record = type("Record", (), {"id": 1, "spec": {}})()
        assert _parallelism(store, record, 3) == 3  # the workers stay as they are
