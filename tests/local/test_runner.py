"""``ma2ml run``'s orchestration in-process: the worker pool follows the stored
``parallelism``, and a crashed learner makes the command fail.

Real worker processes on a real SQLite store; the learner crash is injected
(``run_learner`` replaced by a function that raises), because no valid spec makes
the real learner crash on purpose.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from ma2ml.cli import app
from ma2ml.learner import loop as learner_loop
from ma2ml.local.pool import WorkerPool
from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import Store


def command_spec(name: str, parallelism: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": name},
        "spec": {
            "agents": [{"name": "hpo", "decisions": [{"name": "lr", "values": [0.1, 0.01]}]}],
            "algorithm": {"name": "random", "seed": 1},
            "budget": {"maxTrials": 2, "parallelism": parallelism},
            "trainer": {"type": "command", "command": [
                sys.executable, "-c", "import ma2ml; ma2ml.report(accuracy=0.5)"]},
        },
    }


def test_a_crashed_learner_makes_ma2ml_run_exit_1(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected learner crash")

    monkeypatch.setattr(learner_loop, "run_learner", crash)  # imported by the learner thread
    spec = tmp_path / "crash.yaml"
    spec.write_text(yaml.safe_dump(command_spec("crash")))
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, ["run", str(spec)])
    finally:
        torch.set_num_threads(threads)  # `ma2ml run` sets it for its whole process
    assert result.exit_code == 1, result.output
    assert "the learner crashed: RuntimeError: injected learner crash" in result.output


#: ``ma2ml run`` in a fresh interpreter, saying whether torch was loaded when the search
#: was created (``prepare_search``) and when the first trial was claimed.
PROBE = """
import sys
from ma2ml.cli import app
from ma2ml.local import runner
from ma2ml.store import Store
prepare, claim = runner.prepare_search, Store.claim
def probe(*args, **kwargs):
    print("torch before the search:", "torch" in sys.modules, flush=True)
    return prepare(*args, **kwargs)
runner.prepare_search = probe
sys.argv = ["ma2ml", "run", sys.argv[1], "--workers", "1"]
app()
"""


def test_ma2ml_run_creates_the_search_before_importing_torch(tmp_path: Path) -> None:
    """torch (seconds to import) is loaded by the learner thread, while the workers start,
    not by ``ma2ml run`` before the search exists."""
    spec = tmp_path / "lazy.yaml"
    spec.write_text(yaml.safe_dump(command_spec("lazy")))
    result = subprocess.run([sys.executable, "-c", PROBE, str(spec)], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "torch before the search: False" in result.stdout, result.stdout + result.stderr


def test_the_pool_follows_the_stored_parallelism_and_replaces_dead_workers(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    search = parse_spec(command_spec("pool", parallelism=2))
    with Store(url) as store:
        store.create_search(search.key, spec_to_document(search))  # no trials: workers poll
    pool = WorkerPool(url, search.key, tmp_path / "spool")
    try:
        pool.resize(2)
        assert sorted(pool.processes) == [0, 1]
        pool.resize(1)  # parallelism lowered: the extra worker is stopped
        assert sorted(pool.processes) == [0]
        first = pool.processes[0]
        first.kill()
        first.join()
        pool.resize(1)  # a dead worker is noticed and replaced after a back-off
        assert pool.processes == {}
        pool._restart_at[0] = 0.0  # the back-off has passed
        pool.resize(1)
        assert pool.processes[0].pid != first.pid and pool.processes[0].is_alive()
    finally:
        pool.stop(grace=10)
    assert pool.processes == {}
