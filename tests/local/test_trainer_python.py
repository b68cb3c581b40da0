"""``trainer.command: [python, ...]`` runs the worker's own interpreter, not the first
``python`` on PATH (friction: ``.venv/bin/ma2ml`` without an activated venv ran the
system python, which cannot ``import ma2ml``). A real command in a real subprocess; the
"system python" is a script on PATH that fails the way the real one did."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ma2ml.spec import parse_spec
from ma2ml.worker.custom import resolve_python, run_command

TRAINER = "import ma2ml, sys; ma2ml.report(accuracy=0.75, flops=sys.version_info[0])"


def spec(command: list[str]):
    return parse_spec({
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "python"},
        "spec": {
            "agents": [{"name": "model", "decisions": [{"name": "width", "values": [1, 2]}]}],
            "budget": {"maxTrials": 1, "trialEpochs": 1},
            "trainer": {"type": "command", "command": command, "timeoutSeconds": 60},
        },
    })


@pytest.fixture
def system_python_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH starts with a ``python`` and ``python3`` that cannot import ma2ml."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "python3"):
        fake = bin_dir / name
        fake.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'ma2ml'\"\n"
                        "exit 1\n")
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


@pytest.mark.parametrize("bare", ["python", "python3"])
def test_a_bare_python_is_the_workers_own_interpreter(bare: str, system_python_first: Path
                                                      ) -> None:
    result = run_command(spec([bare, "-c", TRAINER]), {"model": {"width": 1}})
    assert result.metrics["accuracy"] == 0.75


def test_a_path_runs_as_written(system_python_first: Path) -> None:
    written = str(system_python_first / "python")
    assert resolve_python([written, "train.py"]) == [written, "train.py"]
    assert resolve_python(["python", "train.py"]) == [sys.executable, "train.py"]
    assert resolve_python(["uv", "run", "python"]) == ["uv", "run", "python"]
