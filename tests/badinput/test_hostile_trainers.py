"""Hostile trainers and hostile files on the worker's side (issue 25, items 6, 7 and 9).

Real trainer subprocesses, a real store (SQLite and PostgreSQL), real FIFOs.
Each case once wedged or crashed a worker, or let through what the store then
refused after the training: now each fails its trial (or is moved aside) and
the worker goes on.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import ma2ml
from ma2ml.limits import MAX_METRICS_BYTES
from ma2ml.spec import PipelineSearch, parse_spec, spec_to_document
from ma2ml.store import Store, TrialProposal
from ma2ml.trainer.errors import TrialError
from ma2ml.worker.custom import run_command
from ma2ml.worker.loop import run_worker
from ma2ml.worker.places import Places

#: Seconds a case may take on a loaded machine before it counts as wedged.
WEDGED_SECONDS = 90


def _search(command: list[str], *, epochs: int = 1, retries: int = 2) -> PipelineSearch:
    return parse_spec({
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "hostile"},
        "spec": {"agents": [{"name": "trainer", "decisions": [{"name": "n", "values": [0, 1]}]}],
                 "budget": {"trialEpochs": epochs, "maxRetries": retries, "prefetch": 0},
                 "trainer": {"type": "command", "command": command,
                             "timeoutSeconds": 60}}})


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# --------------------------------------------------------------------------- item 7: FIFOs

FIFO_TRAINERS = {
    # A FIFO where the worker reads steps, while the trainer trains on.
    "steps": "import os, time; os.mkfifo(os.environ['MA2ML_STEPS_FILE']); time.sleep(300)",
    # A FIFO where the worker reads the result, after the trainer exited 0.
    "result": "import os; os.mkfifo(os.environ['MA2ML_RESULT_FILE'])",
    # The output log replaced by a FIFO, read for the error's tail after exit 3.
    "log": ("import os, sys; p = os.path.join(os.environ['MA2ML_TRIAL_DIR'], 'output.log'); "
            "os.unlink(p); os.mkfifo(p); sys.exit(3)"),
}


@pytest.mark.parametrize("where", sorted(FIFO_TRAINERS))
def test_a_fifo_from_the_trainer_fails_its_trial_and_never_blocks_the_worker(
        where: str, tmp_path: Path) -> None:
    outcome: list[BaseException | object] = []

    def trial() -> None:
        try:
            outcome.append(run_command(_search(_python(FIFO_TRAINERS[where])), {},
                                       trial_dir=tmp_path / "trial", on_epoch=lambda *_: True))
        except BaseException as exc:  # noqa: BLE001 - what the worker would have to handle
            outcome.append(exc)

    thread = threading.Thread(target=trial, daemon=True)  # daemon: a wedged one is left
    thread.start()
    thread.join(WEDGED_SECONDS)
    assert not thread.is_alive(), f"the worker is wedged on a FIFO ({where})"
    [error] = outcome
    assert isinstance(error, TrialError) and not error.retryable, error
    assert "FIFO" in str(error), error
    if where == "log":
        assert "exited with code 3" in str(error)


# --------------------------------------------------------------------------- item 6: spool

DEEP = "[" * 200_000 + "]" * 200_000

SPOOL_ENTRIES: dict[str, Any] = {
    "array": "[]", "null": "null", "number": "42", "deep": DEEP,
    "wrong-type": json.dumps({"trial_id": "1", "attempt": 1, "kind": "complete"}),
    "unknown-field": json.dumps({"trial_id": 1, "attempt": 1, "kind": "complete", "x": 1}),
    "directory": None, "fifo": None,
}


@pytest.mark.parametrize("entry", sorted(SPOOL_ENTRIES))
def test_anything_unreadable_in_the_spool_is_moved_aside_and_the_worker_trains(
        entry: str, store: Store, tmp_path: Path) -> None:
    search = _search(_python("import ma2ml; ma2ml.report(accuracy=0.5)"))
    record = store.create_search(search.key, spec_to_document(search))
    store.enqueue_trials(record.id, [TrialProposal({"trainer": {"n": 0}}, {}, {}, 0)])
    reports = Places.of(tmp_path, record).reports
    reports.mkdir(parents=True)
    path = reports / "trial-1-attempt-1.json"
    if entry == "directory":
        path.mkdir()
    elif entry == "fifo":
        os.mkfifo(path)
    else:
        path.write_text(SPOOL_ENTRIES[entry])

    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(run_worker(
        store, search.key, "w", spool_dir=tmp_path, max_trials=1, poll_seconds=0.1)),
        daemon=True)
    worker.start()
    worker.join(WEDGED_SECONDS)
    assert not worker.is_alive(), "the worker is wedged on its spool"
    assert done == [1], "the worker did not train"
    assert store.list_trials(record.id)[0].status == "completed"
    assert [p.name for p in reports.iterdir()] == ["trial-1-attempt-1.corrupt"]


# --------------------------------------------------------------------------- item 9: metrics


def test_report_refuses_metrics_the_store_would_refuse(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    """256 metrics of 4,000 characters each pass every per-metric limit, but not the
    store's size limit: refused in the trainer, before the training is lost."""
    monkeypatch.setenv("MA2ML_RESULT_FILE", str(tmp_path / "result.json"))
    monkeypatch.setenv("MA2ML_STEPS_FILE", str(tmp_path / "steps.jsonl"))
    wide = {f"m{i}": "x" * 4000 for i in range(256)}
    with pytest.raises(ValueError, match=f"limit {MAX_METRICS_BYTES - 256}"):
        ma2ml.report(accuracy=0.5, **wide)
    with pytest.raises(ValueError, match="bytes as JSON"):
        ma2ml.report(accuracy=0.5, step=1, **wide)
    assert not (tmp_path / "result.json").exists() and not (tmp_path / "steps.jsonl").exists()


HUGE_WRITERS = {
    # Written by hand (past ma2ml.report): the worker checks the same limits.
    "result": ("import json, os\n"
               "m = {f'm{i}': 'x' * 4000 for i in range(256)}\n"
               "json.dump({'accuracy': 0.5, 'metrics': m}, open(os.environ['MA2ML_RESULT_FILE'], "
               "'w'))\n"),
    "step": ("import json, os, ma2ml\n"
             "m = {f'm{i}': 'x' * 4000 for i in range(25)}\n"  # 100 KB, each within limits
             "line = {'step': 1, 'accuracy': 0.5, 'metrics': m}\n"
             "open(os.environ['MA2ML_STEPS_FILE'], 'a').write(json.dumps(line) + '\\n')\n"
             "import time; time.sleep(300)\n"),
}


@pytest.mark.parametrize("what", sorted(HUGE_WRITERS))
def test_huge_metrics_fail_their_trial_once_as_the_trainers_error(
        what: str, store: Store, tmp_path: Path) -> None:
    """A result or a step with more metrics than the store keeps is a trial error (not
    retried), named by the worker where it reads the report; the next trial trains."""
    search = _search(_python(HUGE_WRITERS[what]), retries=2)
    record = store.create_search(search.key, spec_to_document(search))
    store.enqueue_trials(record.id, [TrialProposal({"trainer": {"n": 0}}, {}, {}, 0)])
    assert run_worker(store, search.key, "w", spool_dir=tmp_path, max_trials=1) == 1
    trial = store.list_trials(record.id)[0]
    assert (trial.status, trial.attempt, trial.failures) == ("failed", 1, 0), trial.error
    assert "bytes as JSON" in (trial.error or "")
    assert "MetricsTooLargeError" not in (trial.error or "")
