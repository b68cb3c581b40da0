"""A wrong dataset path, a failed search and starting over (friction 3).

* ``ma2ml run`` and ``ma2ml validate --check-data`` read the data's headers before any
  trial: a wrong path is one error line, exit 2, and no trial (no store) at all.
* A failed search says why: the most common error among its failed trials.
* A fixed spec replaces a stored search that has no result; results of a different spec
  are never mixed in nor deleted unless the user asks (``run --restart``, ``delete``).

Real SQLite stores, real Fashion-MNIST headers, the real command line; the end-to-end
run uses a custom trainer (a real subprocess) so that failing and fixing cost seconds.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ma2ml.cli import app
from ma2ml.local.commands import failure_cause
from ma2ml.local.searches import SearchConflictError, prepare_search
from ma2ml.spec import Dataset, parse_spec
from ma2ml.store import SearchState, Store, TrialProposal
from ma2ml.trainer.data import DataError, check_data

from .test_run import ma2ml, tiny_spec, write

PROPOSAL = TrialProposal({"model": {"width": 1}}, {"model": [0]}, {"model": -0.7}, 0)


def command_spec(name: str, code: str, *, max_failed: int = 2) -> dict:
    return {
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": name},
        "spec": {
            "agents": [{"name": "model", "decisions": [{"name": "width", "values": [1, 2]}]}],
            "algorithm": {"name": "random", "seed": 1},
            "budget": {"maxTrials": 2, "maxFailedTrials": max_failed, "parallelism": 1,
                       "trialEpochs": 1, "maxRetries": 0},
            "trainer": {"type": "command", "command": ["python", "-c", code],
                        "timeoutSeconds": 60},
        },
    }


def test_check_data_reads_headers_and_names_the_wrong_path(tmp_path: Path) -> None:
    assert "60000 training images (28x28)" in check_data(Dataset())
    with pytest.raises(DataError, match=f"{tmp_path}/train-images-idx3-ubyte.gz: file not"):
        check_data(Dataset(root=str(tmp_path)))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="unreadable"):
        check_data(Dataset(root=str(tmp_path)))
    with pytest.raises(DataError, match="is not a directory"):
        check_data(Dataset(root=str(tmp_path / "nope")))
    with pytest.raises(DataError, match="validationSize: 60000 leaves no training images"):
        check_data(Dataset(validation_size=60000))


def test_validate_check_data_refuses_a_wrong_path(tmp_path: Path) -> None:
    document = tiny_spec("wrongpath")
    document["spec"]["dataset"]["root"] = str(tmp_path / "fashion")
    spec = write(tmp_path / "wrong.yaml", document)
    assert CliRunner().invoke(app, ["validate", str(spec)]).exit_code == 0
    checked = CliRunner().invoke(app, ["validate", "--check-data", str(spec)])
    assert checked.exit_code == 2
    assert f"dataset.root: {tmp_path / 'fashion'} is not a directory" in checked.output


def test_run_refuses_a_wrong_path_before_any_trial(tmp_path: Path) -> None:
    document = tiny_spec("wrongpath")
    document["spec"]["dataset"]["root"] = str(tmp_path)
    spec = write(tmp_path / "wrong.yaml", document)
    result = ma2ml("run", str(spec), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path}/train-images-idx3-ubyte.gz: file not found; expected an IDX "
        f"file of unsigned bytes with 3 dimension(s) (gzip)"]
    assert not (tmp_path / "wrong.db").exists(), "no store, no trial"


def _fail_trials(store: Store, search_id: int, errors: list[str]) -> None:
    store.enqueue_trials(search_id, [PROPOSAL] * len(errors))
    for error in errors:
        trial = store.claim(search_id, "w", 30)
        assert trial is not None
        store.fail(trial.id, trial.attempt, error, retryable=False, max_retries=0)


def test_the_failure_cause_is_the_most_common_last_line(tmp_path: Path) -> None:
    search = parse_spec(command_spec("cause", "pass"))
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        record = store.create_search(search.key, command_spec("cause", "pass"))
        assert failure_cause(store, record.id) is None
        _fail_trials(store, record.id, [
            "trainer.command exited with code 1; output tail:\nTraceback...\n"
            "ModuleNotFoundError: No module named 'ma2ml'\n",
            "trainer.command timed out after 60 s; output tail:\n",
            "exited 1; output tail:\nModuleNotFoundError: No module named 'ma2ml'"])
        assert failure_cause(store, record.id) == (
            "ModuleNotFoundError: No module named 'ma2ml' (2 of the 3 failed trials read)")


def test_a_fixed_spec_replaces_a_search_without_results_only(tmp_path: Path) -> None:
    broken = parse_spec(command_spec("fixme", "raise SystemExit(1)"))
    fixed = parse_spec(command_spec("fixme", "import ma2ml; ma2ml.report(accuracy=0.5)"))
    notes: list[str] = []
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        first = prepare_search(store, broken)
        _fail_trials(store, first.id, ["boom", "boom"])
        store.move_search(first.id, SearchState.failed, by=first_actor(), message="2 failed")
        again = prepare_search(store, broken, on_note=notes.append)
        assert again.id == first.id and again.state == SearchState.failed and not notes
        replaced = prepare_search(store, fixed, on_note=notes.append)
        assert replaced.created_at > first.created_at and replaced.state == SearchState.running
        assert store.counts(replaced.id).total == 0
        assert notes == ["replaced the stored search default/fixme: its spec.trainer "
                         "differed and none of its 2 trials had a result"]

        trial = store.enqueue_trials(replaced.id, [PROPOSAL])[0]
        claimed = store.claim(replaced.id, "w", 30)
        assert claimed is not None and claimed.id == trial
        store.complete(trial, claimed.attempt, 0.5, {"accuracy": 0.5})
        with pytest.raises(SearchConflictError, match=r"1 trial results of a different "
                           r"spec.trainer; `ma2ml run --restart SPEC` deletes them"):
            prepare_search(store, broken)
        assert store.counts(replaced.id).completed == 1, "nothing lost"
        restarted = prepare_search(store, broken, restart=True, on_note=notes.append)
        assert store.counts(restarted.id).total == 0
        assert notes[-1] == ("--restart: deleted the stored search default/fixme "
                             "(1 trials, 1 with results)")


def first_actor():
    from ma2ml.store import Actor

    return Actor.learner


def test_delete_asks_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with Store(url) as store:
        store.create_search("default/old", command_spec("old", "pass"))
    refused = CliRunner().invoke(app, ["delete", "old", "--db", url])
    assert refused.exit_code == 2 and "add --yes to confirm" in refused.output
    declined = CliRunner().invoke(app, ["delete", "old", "--db", url], input="n\n")
    deleted = CliRunner().invoke(app, ["delete", "old", "--db", url, "--yes"])
    assert deleted.exit_code == 0, deleted.output
    assert "deleted search default/old (running): 0 trials" in deleted.output
    with Store(url) as store:
        assert store.get_search("default/old") is None
    assert declined.exit_code != 0


def test_a_failed_run_says_why_and_the_fixed_spec_runs(tmp_path: Path) -> None:
    failing = write(tmp_path / "s.yaml", command_spec(
        "journey", "import sys; sys.exit('no data in /data/fashion')"))
    failed = ma2ml("run", str(failing), cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "search default/journey: failed" in failed.stdout
    # Every failed trial (2 or more: a prefetched one may fail too) gives the same cause.
    assert re.search(r"cause:  no data in /data/fashion \((\d) of the \1 failed trials read\)",
                     failed.stdout), failed.stdout
    assert f"`ma2ml run --restart {failing}`" in failed.stdout

    write(failing, command_spec("journey", "import ma2ml; ma2ml.report(accuracy=0.5)"))
    fixed = ma2ml("run", str(failing), cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr[-3000:]
    assert "note: replaced the stored search default/journey" in fixed.stdout
    assert "search default/journey: finished (MaxTrialsReached), 2/2 trials" in fixed.stdout
    assert sys.executable  # the bare `python` above is this interpreter (custom.py)
