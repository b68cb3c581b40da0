"""Retraining an exported winner (friction 1): the README's `python winner/retrain.py`
works with a Python that cannot import ma2ml (it re-runs itself with the interpreter that
exported it), `ma2ml retrain winner/` does the same, and both show progress with the time
left. Real torch on a few real Fashion-MNIST images; a real store to export from.

The "system python" is this interpreter with ``-I -S``: no site-packages, so no ma2ml
and no torch, as the system python beside a virtualenv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ma2ml.local.export import ConsoleProgress, export_best
from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import Store, TrialProposal

from .test_run import tiny_spec

SMOKE = ["--epochs", "2", "--train-subset", "512", "--test-subset", "256"]


def exported(tmp_path: Path) -> Path:
    """A store with one completed trial of the tiny search, exported to ``winner/``."""
    search = parse_spec(tiny_spec("winner"))
    space = search.spec.search_space()
    action = {agent.name: [0] * len(agent.decisions) for agent in space.agents}
    pipeline = space.decode(action)
    with Store(f"sqlite:///{tmp_path / 'w.db'}") as store:
        record = store.create_search(search.key, spec_to_document(search))
        store.enqueue_trials(record.id, [TrialProposal(pipeline, action, {}, 0)])
        trial = store.claim(record.id, "w", 30)
        assert trial is not None
        store.complete(trial.id, trial.attempt, 0.5, {"accuracy": 0.5})
        written = export_best(store, record, tmp_path / "winner")
    assert written.script == tmp_path / "winner" / "retrain.py"
    return tmp_path / "winner"


def test_python_retrain_py_works_without_ma2ml_on_that_python(tmp_path: Path) -> None:
    winner = exported(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    bare = subprocess.run([sys.executable, "-I", "-S", "-c", "import ma2ml"], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert "No module named 'ma2ml'" in bare.stderr, "the stand-in must lack ma2ml"
    result = subprocess.run([sys.executable, "-I", "-S", str(winner / "retrain.py"), *SMOKE,
                             "--json"], env=env, capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["split"] == "test" and metrics["epochs"] == 2
    assert metrics["train_images"] == 512 and metrics["test_images"] == 256
    # Not a terminal: plain progress lines on stderr, each epoch with the time left.
    assert "retraining for 2 epochs on 512 images, then testing on 256" in result.stderr
    assert "epoch 1/2 done (" in result.stderr and " left)" in result.stderr
    assert "epoch 2/2 done (" in result.stderr and "testing on the test split" in result.stderr


def test_ma2ml_retrain_and_its_progress_bar(tmp_path: Path) -> None:
    from rich.console import Console

    from ma2ml.local.export import retrain_exported

    winner = exported(tmp_path)
    terminal = Console(file=open(tmp_path / "bar.txt", "w"), force_terminal=True,  # noqa: SIM115
                       width=120)
    with ConsoleProgress(terminal) as progress:
        metrics = retrain_exported(winner, epochs=1, train_subset=128, test_subset=64,
                                   progress=progress)
    terminal.file.close()
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test_accuracy"] <= 1.0
    bar = (tmp_path / "bar.txt").read_text()
    assert "epoch 1/1" in bar and "batches" in bar and "left" in bar

    from typer.testing import CliRunner

    from ma2ml.cli import app

    cli = CliRunner().invoke(app, ["retrain", str(tmp_path)])
    assert cli.exit_code == 2 and "recipe.json: no such file" in cli.output
