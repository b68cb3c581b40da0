"""A broken store ends ``ma2ml run`` with the worker's one line (issue 25, item 5).

Without the ``trial_steps`` table every step report fails: no trial's fault, and no
restart mends it. A worker hands its trial back and exits ``EXIT_STORE_FAULT``; the
run's pool does not restart it (it restarts a worker that exits any other way), and the
run stops with that worker's message, its trials handed back, nothing finished lost.

Real ``ma2ml run`` processes with real workers and a real custom trainer, on SQLite and
PostgreSQL; the table is dropped after the store was created, as a schema bug leaves it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from sqlalchemy import text

from ma2ml.store import Store
from ma2ml.worker.errors import EXIT_STORE_FAULT

#: Reports epoch 1 (which the broken store cannot record), then a result.
TRAINER = "import ma2ml; ma2ml.report(accuracy=0.5, step=1); ma2ml.report(accuracy=0.5)"


def test_a_missing_trial_steps_table_ends_ma2ml_run_with_the_message(
        database_url: str, tmp_path: Path) -> None:
    with Store(database_url) as store, store.engine.begin() as connection:
        connection.execute(text("DROP TABLE trial_steps"))
    spec = tmp_path / "broken.yaml"
    spec.write_text(yaml.safe_dump({
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "broken"},
        "spec": {
            "agents": [{"name": "hpo", "decisions": [{"name": "n", "values": [0, 1, 2]}]}],
            "algorithm": {"name": "random", "seed": 0},
            "budget": {"maxTrials": 4, "parallelism": 2, "maxRetries": 3},
            "trainer": {"type": "command", "command": [sys.executable, "-c", TRAINER]},
        },
    }))
    # Before: the pool restarted the workers, each ending alike, for as long as one waited.
    run = subprocess.run([sys.executable, "-m", "ma2ml", "run", str(spec), "--db",
                          database_url, "--workers", "2"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert run.returncode == 1, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the store could not record epoch 1 of trial "), \
        run.stderr[-3000:]
    assert "trial_steps" in last and "sqlalche.me" not in last, last
    assert "restarting it" not in run.stderr, "a worker with a broken store was restarted"
    with Store(database_url, create=False) as store:
        record = store.get_search("default/broken")
        assert record is not None
        trials = store.list_trials(record.id)
        # Handed back untouched: no trial failed, none finished (nothing was lost).
        assert trials and all(t.failures == 0 and t.status in ("pending", "running")
                              for t in trials), [(t.status, t.failures) for t in trials]


def test_the_worker_command_exits_with_the_documented_code() -> None:
    """``ma2ml worker --help`` says what exit 3 means; the pool and the command share it."""
    assert EXIT_STORE_FAULT == 3
    shown = subprocess.run([sys.executable, "-m", "ma2ml", "worker", "--help"],
                           capture_output=True, text=True, timeout=60).stdout
    assert "Exits 3 when the store itself is broken" in " ".join(shown.split())
