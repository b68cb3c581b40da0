"""The SQLite file of a running ``ma2ml run`` deleted or replaced (issue 25, item 4):
the run stops with an error naming the file, and nothing creates a fresh empty store.

Real ``ma2ml run`` processes with real workers on a real SQLite file; the trainer
sleeps, so trials are running when the file goes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ma2ml.local.dbfile import DatabaseFileError, DatabaseFileWatch
from ma2ml.store import Store

pytestmark = pytest.mark.slow


def _spec(tmp_path: Path) -> Path:
    document = {
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "gone"},
        "spec": {
            "agents": [{"name": "trainer", "decisions": [{"name": "n", "values": [0, 1, 2]}]}],
            "algorithm": {"name": "random", "seed": 0},
            "budget": {"maxTrials": 6, "parallelism": 1, "leaseSeconds": 30},
            "trainer": {"type": "command", "command": ["sleep", "600"]},
        },
    }
    path = tmp_path / "gone.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _running(db: Path) -> int:
    try:
        with Store(f"sqlite:///{db}", create=False) as store:
            record = store.get_search("default/gone")
            return store.counts(record.id)["running"] if record else 0
    except Exception:  # the file exists a moment before its tables
        return 0


def _replace(db: Path) -> None:
    """Another store file moved over the path, as a restore from a backup does."""
    copy = db.with_name("backup.db")
    shutil.copyfile(db, copy)
    os.replace(copy, db)


@pytest.mark.parametrize(("change", "said"), [(Path.unlink, "was deleted"),
                                              (_replace, "was replaced by another file")])
def test_the_database_file_going_away_stops_the_run_loudly(tmp_path: Path, change,
                                                             said: str) -> None:
    spec = _spec(tmp_path)
    db = tmp_path / "gone.db"
    with open(tmp_path / "run.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "ma2ml", "run", str(spec)],
                                   cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _running(db) < 1:
            assert process.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial ever ran"
            time.sleep(0.2)
        identity = os.stat(db).st_ino
        change(db)
        process.wait(timeout=180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = (tmp_path / "run.log").read_text()
    assert process.returncode == 1, output[-3000:]
    assert f"error: the database file {db} {said} during the run" in output
    if said == "was deleted":
        assert not db.exists(), "the end of the run created a fresh store"
    else:
        assert os.stat(db).st_ino != identity and "search default/gone:" not in output


def test_a_watch_sees_only_a_change_of_the_file(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with Store(f"sqlite:///{db}"):
        pass
    watch = DatabaseFileWatch(f"sqlite:///{db}")
    with Store(f"sqlite:///{db}") as store:  # writes change the content, not the file
        store.create_search("default/x", {"spec": {}})
    watch.check()
    DatabaseFileWatch("postgresql://nobody@127.0.0.1:1/none").check()  # no file: nothing
    db.unlink()
    with pytest.raises(DatabaseFileError, match="was deleted"):
        watch.check()
