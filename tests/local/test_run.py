"""``ma2ml run`` end to end: real Fashion-MNIST, real torch training in real
worker processes, the real SQLite store, the real command line."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml

from ma2ml.store import Store


def tiny_spec(name: str = "tiny", max_trials: int = 4, **budget: Any) -> dict[str, Any]:
    """A real search small enough to finish in seconds: few images, one stage, 1 epoch."""
    return {
        "apiVersion": "ma2ml.io/v1alpha1",
        "kind": "PipelineSearch",
        "metadata": {"name": name},
        "spec": {
            "dataset": {"name": "fashion-mnist", "trainSubset": 256, "validationSize": 256},
            "agents": [
                {"name": "aug", "preset": "autoaugment", "options": {"subPolicies": 1}},
                {"name": "nas", "preset": "mbconv-small", "options": {"stages": 1}},
                {"name": "hpo", "preset": "recipe-adamw"},
            ],
            "algorithm": {"name": "ma2ml", "seed": 1},
            "budget": {"maxTrials": max_trials, "parallelism": 2, "trialEpochs": 1,
                       "leaseSeconds": 30, **budget},
            "trainer": {"device": "cpu"},
        },
    }


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def ma2ml(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real command line in a subprocess (not a TTY, so logs are JSON lines)."""
    return subprocess.run([sys.executable, "-m", "ma2ml", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


@pytest.mark.slow  # over 10 s on two cores
def test_run_to_completion_then_inspect_export(tmp_path: Path) -> None:
    spec = write(tmp_path / "tiny.yaml", tiny_spec())
    result = ma2ml("run", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best:" in result.stdout and "random:" in result.stdout
    assert (tmp_path / "tiny.db").exists(), "the default store is a SQLite file beside the spec"

    status = ma2ml("status", str(spec), cwd=tmp_path)
    assert status.returncode == 0 and "default/tiny" in status.stdout and "4/4" in status.stdout

    listed = json.loads(ma2ml("trials", str(spec), "--json", cwd=tmp_path).stdout)
    finished = [t for t in listed if t["status"] in ("completed", "diverged")]
    assert len(finished) == 4
    best = json.loads(ma2ml("best", str(spec), "--json", cwd=tmp_path).stdout)
    assert best["reward"] == max(t["reward"] for t in listed if t["status"] == "completed")
    assert set(best["pipeline"]) == {"aug", "nas", "hpo"}
    assert 0.0 <= best["metrics"]["accuracy"] <= 1.0

    by_name = ma2ml("best", "tiny", "--db", f"sqlite:///{tmp_path / 'tiny.db'}", cwd=tmp_path)
    assert by_name.returncode == 0 and "best trial" in by_name.stdout

    report = ma2ml("report", str(spec), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    for name in ("index.html", "best_so_far.png", "rewards.png", "entropy.png", "credit.png",
                 "augment_preview.png"):
        path = tmp_path / "report" / name
        assert path.exists() and path.stat().st_size > 2000, name

    out = tmp_path / "export"
    exported = ma2ml("export", str(spec), "--out", str(out), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["pipeline"] == best["pipeline"]
    # The exported script is standalone: run it (smoke-sized) from another directory.
    retrain = subprocess.run(
        [sys.executable, str(out / "retrain.py"), "--epochs", "1", "--train-subset", "256",
         "--test-subset", "256", "--json"],
        cwd=tmp_path / "report", text=True, capture_output=True, timeout=300)
    assert retrain.returncode == 0, retrain.stderr[-3000:]
    metrics = json.loads(retrain.stdout.strip().splitlines()[-1])
    assert metrics["split"] == "test" and 0.0 <= metrics["test_accuracy"] <= 1.0


def _finished_rows(db: Path) -> dict[int, tuple]:
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT number, status, reward, metrics, finished_seq FROM trials "
            "WHERE status IN ('completed', 'diverged', 'failed')").fetchall()
    return {row[0]: row[1:] for row in rows}


def _wait_for_finished(db: Path, count: int, process: subprocess.Popen, timeout: float,
                       also: Callable[[], bool] = lambda: True) -> None:
    """Poll the store a running `ma2ml run` writes until `count` trials have finished (and
    ``also()`` holds).

    The file appears a moment before its tables do, so "no such table" means "not yet".
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if db.exists() and len(_finished_rows(db)) >= count and also():
                return
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
        time.sleep(0.1)
    raise AssertionError(f"the run did not finish {count} trials in time "
                         f"(exit code {process.poll()})")


#: A trainer whose first three runs report at once and every later one waits, in training,
#: until the test creates ``go`` in the folder given as its argument. So the search cannot
#: end before the test's Ctrl-C however slow or fast the machine: the test interrupts a
#: run with exactly three trials finished and others mid-training. The resumed run finds
#: ``go`` and trains the rest straight through. (A slot is taken with O_EXCL: two
#: workers never take the same one.)
GATED_TRAINER = """
import json, os, sys, time, ma2ml
gate = sys.argv[1]
for slot in range(3):
    try:
        os.close(os.open(os.path.join(gate, f"slot{slot}"), os.O_CREAT | os.O_EXCL))
        break
    except FileExistsError:
        pass
else:
    open(os.path.join(gate, f"waiting-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + 600  # never left behind for long, whatever happens
    while not os.path.exists(os.path.join(gate, "go")):
        if time.monotonic() > deadline:
            sys.exit("never let go")
        time.sleep(0.02)
pipeline = json.loads(os.environ["MA2ML_PIPELINE"])
ma2ml.report(accuracy=0.1 + 0.1 * pipeline["model"]["width"] + 0.05 * pipeline["hpo"]["lr"])
"""


def _gated_spec(gate: Path) -> dict[str, Any]:
    return {
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "resume"},
        "spec": {
            "agents": [{"name": "model", "decisions": [{"name": "width", "values": [1, 2, 3]}]},
                       {"name": "hpo", "decisions": [{"name": "lr", "values": [1, 2, 3]}]}],
            "algorithm": {"name": "ma2ml", "seed": 1},
            "budget": {"maxTrials": 8, "parallelism": 2, "leaseSeconds": 30},
            "trainer": {"type": "command", "timeoutSeconds": 900,
                        "command": [sys.executable, "-c", GATED_TRAINER, str(gate)]},
        },
    }


@pytest.mark.slow  # over 10 s on two cores
def test_sigint_then_resume_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """Ctrl-C with three trials finished and two mid-training, then the same command again:
    the three stay as they were, the interrupted ones train again, nothing twice.
    Independent of timing: the trainer holds every trial after the third until ``go``."""
    gate = tmp_path / "gate"
    gate.mkdir()
    spec = write(tmp_path / "resume.yaml", _gated_spec(gate))
    db = tmp_path / "resume.db"

    def both_workers_held() -> bool:
        return len(list(gate.glob("waiting-*"))) >= 2

    with subprocess.Popen([sys.executable, "-m", "ma2ml", "run", str(spec)], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            _wait_for_finished(db, 3, process, timeout=240, also=both_workers_held)
        except BaseException:
            process.kill()
            process.communicate()
            raise
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    before = _finished_rows(db)
    assert len(before) == 3, before
    with Store(f"sqlite:///{db}") as store:
        record = store.get_search("default/resume")
        assert store.counts(record.id)["running"] == 0, "leases were handed back on Ctrl-C"

    (gate / "go").touch()
    again = ma2ml("run", str(spec), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    after = _finished_rows(db)
    assert len([r for r in after.values() if r[0] in ("completed", "diverged")]) == 8
    assert all(after[n] == row for n, row in before.items()), "finished results untouched"
    with closing(sqlite3.connect(db)) as conn:
        numbers = [n for (n,) in conn.execute("SELECT number FROM trials")]
        seqs = sorted(s for (s,) in conn.execute(
            "SELECT finished_seq FROM trials WHERE finished_seq IS NOT NULL"))
    assert len(numbers) == len(set(numbers)), "no trial appears twice"
    assert seqs == list(range(1, len(seqs) + 1))


def test_bad_spec_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    document = tiny_spec()
    document["spec"]["budget"]["maxTrials"] = 0
    document["spec"]["agents"][1]["preset"] = "mbconv-huge"
    spec = write(tmp_path / "bad.yaml", document)
    result = ma2ml("run", str(spec), cwd=tmp_path)
    assert result.returncode == 2
    assert "spec.budget.maxTrials: must be >= 1, got 0" in result.stderr
    assert "spec.agents[1].preset: unknown preset 'mbconv-huge'" in result.stderr
    assert list(tmp_path.iterdir()) == [spec], "nothing written to any store"


@pytest.mark.slow  # over 10 s on two cores
def test_bad_spec_for_an_existing_search_keeps_the_store(tmp_path: Path) -> None:
    """Changing the search space of a stored search is refused; stored trials stay."""
    spec = write(tmp_path / "keep.yaml", tiny_spec("keep", max_trials=2))
    assert ma2ml("run", str(spec), cwd=tmp_path).returncode == 0
    before = _finished_rows(tmp_path / "keep.db")
    document = tiny_spec("keep", max_trials=2)
    document["spec"]["agents"][2]["preset"] = "recipe-sgd"
    write(spec, document)
    result = ma2ml("run", str(spec), cwd=tmp_path)
    assert result.returncode == 2
    assert "different spec.agents" in result.stderr
    assert _finished_rows(tmp_path / "keep.db") == before


#: A custom trainer that only takes time: each trial "trains" a fifth of a second.
SLEEPING_TRAINER = "import time, ma2ml; time.sleep(0.2); ma2ml.report(accuracy=0.5)"


def test_max_duration_ends_the_run_and_the_summary_says_why(tmp_path: Path) -> None:
    """The clock ends a search whose maxTrials it would take minutes to reach; the run
    exits 0 and its summary names the limit. No bound on the wall-clock time is asserted:
    the search may end after any number of trials below maxTrials, even none."""
    document = {
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "clock"},
        "spec": {
            "agents": [{"name": "hpo", "decisions": [{"name": "lr", "values": [1, 2, 3]},
                                                     {"name": "wd", "values": [1, 2, 3]}]}],
            "algorithm": {"name": "random", "seed": 1},
            "budget": {"maxTrials": 1000, "maxDuration": "6s", "parallelism": 2,
                       "leaseSeconds": 30},
            "trainer": {"type": "command", "command": [sys.executable, "-c", SLEEPING_TRAINER],
                        "timeoutSeconds": 60},
        },
    }
    spec = write(tmp_path / "clock.yaml", document)
    result = ma2ml("run", str(spec), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    head = next(line for line in result.stdout.splitlines() if line.startswith("search "))
    assert head.startswith("search default/clock: finished (MaxDurationReached), "), head
    done = int(head.split(", ")[1].split("/")[0])
    assert done < 1000
    assert "reason: search ran " in result.stdout and "(maxDuration 6s)" in result.stdout
    assert "time:   ran " in result.stdout and " of 6s, trained " in result.stdout

    with Store(f"sqlite:///{tmp_path / 'clock.db'}") as store:
        record = store.get_search("default/clock")
        assert record is not None and record.state == "finished"
        assert store.counts(record.id).results == done
        assert store.usage(record.id).elapsed_seconds >= 6

    status = ma2ml("status", str(spec), cwd=tmp_path)
    assert status.returncode == 0 and " of 6s" in status.stdout
    again = ma2ml("run", str(spec), cwd=tmp_path)  # resumed: the same clock, still spent
    assert again.returncode == 0 and "finished (MaxDurationReached)" in again.stdout
