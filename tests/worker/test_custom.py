"""Custom trainers: real subprocesses running this interpreter."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import ma2ml
from ma2ml.spec import PipelineSearch
from ma2ml.worker.custom import run_command
from ma2ml.worker.errors import TrialError

PIPELINE = {"trainer": {"lr": 0.1, "layers": 2}}

Make = Callable[..., PipelineSearch]


def _search(make_search: Make, command: list[str], timeout: float = 60.0, **spec: object
            ) -> PipelineSearch:
    return make_search({
        "agents": [{"name": "trainer", "decisions": [{"name": "lr", "values": [0.1, 0.01]},
                                                     {"name": "layers", "values": [1, 2]}]}],
        "trainer": {"type": "command", "command": command, "timeoutSeconds": timeout},
        **spec})


def test_report_reaches_the_worker(make_search: Make, python_trainer: Callable[[str], list[str]],
                                   tmp_path: Path) -> None:
    code = ("import json, os, ma2ml\n"
            "p = json.load(open(os.environ['MA2ML_PIPELINE_FILE']))\n"
            "assert p == json.loads(os.environ['MA2ML_PIPELINE'])\n"
            "ma2ml.report(accuracy=0.5 + p['trainer']['lr'], loss=0.3, "
            "seed=int(os.environ['MA2ML_SEED']))\n")
    result = run_command(_search(make_search, python_trainer(code)), PIPELINE, seed=7,
                         trial_dir=tmp_path)
    assert result.reward == pytest.approx(0.6)
    assert result.metrics["accuracy"] == pytest.approx(0.6)
    assert result.metrics["loss"] == 0.3 and result.metrics["seed"] == 7
    assert not result.diverged


def test_result_file_with_flops_is_shaped(make_search: Make,
                                          python_trainer: Callable[[str], list[str]]) -> None:
    code = ("import json, os\n"
            "json.dump({'accuracy': 0.8, 'flops': 2e6}, "
            "open(os.environ['MA2ML_RESULT_FILE'], 'w'))\n")
    search = _search(make_search, python_trainer(code),
                     objective={"flopsTarget": 1e6, "flopsExponent": -0.07})
    result = run_command(search, PIPELINE)
    assert result.reward == pytest.approx(0.8 * 2 ** -0.07)


def test_explicit_reward_and_divergence(make_search: Make,
                                        python_trainer: Callable[[str], list[str]]) -> None:
    code = "import ma2ml; ma2ml.report(diverged=True)"
    result = run_command(_search(make_search, python_trainer(code)), PIPELINE)
    assert result.diverged and result.reward == 0.0


def test_non_zero_exit_quotes_the_output(make_search: Make,
                                         python_trainer: Callable[[str], list[str]]) -> None:
    code = "import sys; print('loading data'); sys.exit('CUDA out of memory, pretend')"
    with pytest.raises(TrialError, match=r"exited with code 1; output tail:\n"
                                         r"(?s:.*)loading data(?s:.*)CUDA out of memory") as err:
        run_command(_search(make_search, python_trainer(code)), PIPELINE)
    assert not err.value.retryable


def test_timeout_kills_the_command(make_search: Make,
                                   python_trainer: Callable[[str], list[str]]) -> None:
    code = "import time; print('epoch 1', flush=True); time.sleep(60)"
    started = time.monotonic()
    with pytest.raises(TrialError, match=r"timed out after 1 s; output tail:\nepoch 1"):
        run_command(_search(make_search, python_trainer(code), timeout=1.0), PIPELINE)
    assert time.monotonic() - started < 10


def test_missing_result_is_an_error(make_search: Make,
                                    python_trainer: Callable[[str], list[str]]) -> None:
    code = "print('trained, but forgot to report')"
    with pytest.raises(TrialError, match=r"wrote no result(?s:.*)forgot to report"):
        run_command(_search(make_search, python_trainer(code)), PIPELINE)


def test_result_without_reward_or_accuracy(make_search: Make,
                                           python_trainer: Callable[[str], list[str]]) -> None:
    code = "import ma2ml; ma2ml.report(loss=0.1)"
    with pytest.raises(TrialError, match="neither 'reward' nor 'accuracy'"):
        run_command(_search(make_search, python_trainer(code)), PIPELINE)


def test_missing_executable(make_search: Make) -> None:
    with pytest.raises(TrialError, match="cannot start '/nonexistent/train'"):
        run_command(_search(make_search, ["/nonexistent/train"]), PIPELINE)


def test_report_outside_a_trial_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MA2ML_RESULT_FILE", raising=False)
    with pytest.raises(RuntimeError, match="MA2ML_RESULT_FILE is not set"):
        ma2ml.report(0.5)


def test_report_writes_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    monkeypatch.setenv("MA2ML_RESULT_FILE", str(target))
    ma2ml.report(0.9, epochs=3)
    assert json.loads(target.read_text()) == {"reward": 0.9, "diverged": False,
                                              "metrics": {"epochs": 3}}
