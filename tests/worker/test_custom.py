"""Custom trainers: real subprocesses running this interpreter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

import ma2ml
from ma2ml.spec import PipelineSearch, spec_to_document
from ma2ml.worker.custom import remove_stale_trial_dirs, run_command, tail
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


# --------------------------------------------------------------------------- bad results


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import ma2ml; ma2ml.report(accuracy=-5)",
         r"exited with code 1(?s:.*)ma2ml.report: accuracy must be a finite number in \[0, 1\], "
         r"got -5"),
        ("import ma2ml; ma2ml.report(accuracy=7.5)",
         r"ma2ml.report: accuracy must be a finite number in \[0, 1\], got 7.5"),
        ("import json, os; json.dump({'accuracy': 7.5}, "
         "open(os.environ['MA2ML_RESULT_FILE'], 'w'))",
         r"result field 'accuracy' must be in \[0, 1\], got 7.5"),
        ("import json, os; json.dump({'accuracy': -5}, "
         "open(os.environ['MA2ML_RESULT_FILE'], 'w'))",
         r"result field 'accuracy' must be in \[0, 1\], got -5"),
        ("import json, os; json.dump({'reward': 1, 'metrics': 'abc'}, "
         "open(os.environ['MA2ML_RESULT_FILE'], 'w'))",
         r"result field 'metrics' must be a JSON object of metric names to numbers or strings, "
         r"got 'abc'"),
        ("import json, os; json.dump({'reward': 1, 'metrics': {'loss': [1, 2]}}, "
         "open(os.environ['MA2ML_RESULT_FILE'], 'w'))",
         r"result field 'metrics.loss' must be a number, a string, true/false or null"),
        ("import os; open(os.environ['MA2ML_RESULT_FILE'], 'w').write("
         "'{\"reward\": 1, \"metrics\": {\"loss\": NaN}}')",
         r"result field 'metrics.loss' must be a finite number, got nan"),
        ("import json, os; json.dump({'reward': 1, 'diverged': 'no'}, "
         "open(os.environ['MA2ML_RESULT_FILE'], 'w'))",
         r"result field 'diverged' must be true or false, got 'no'"),
        ("import os; open(os.environ['MA2ML_RESULT_FILE'], 'w').write('{\"reward\": 1, "
         "\"pad\": \"' + 'x' * 2_000_000 + '\"}')",
         r"result is larger than 1048576 bytes"),
    ],
    ids=["report-accuracy-low", "report-accuracy-high", "file-accuracy-high", "file-accuracy-low",
         "metrics-not-object", "metric-list", "metric-nan", "diverged-not-bool", "huge-result"],
)
def test_malformed_results_fail_the_trial_naming_the_field(
        make_search: Make, python_trainer: Callable[[str], list[str]], code: str,
        message: str) -> None:
    with pytest.raises(TrialError, match=message) as err:
        run_command(_search(make_search, python_trainer(code)), PIPELINE)
    assert not err.value.retryable  # the trainer's bug: another attempt fails the same way


def test_reward_stays_free(make_search: Make, python_trainer: Callable[[str], list[str]]) -> None:
    code = "import ma2ml; ma2ml.report(-5.0, accuracy=1.0)"
    result = run_command(_search(make_search, python_trainer(code)), PIPELINE)
    assert result.reward == -5.0 and result.metrics["accuracy"] == 1.0


def test_tail_reads_only_the_end_of_a_huge_log(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    with log.open("wb") as stream:  # a sparse 2 GB file: reading it whole would take 2 GB
        stream.seek(2 * 1024**3)
        stream.write(b"the end\n")
    tracemalloc.start()
    try:
        text = tail(log, 100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text.endswith("the end\n") and len(text) == 100
    assert peak < 100_000


# --------------------------------------------------------------------------- process lifetime


WRAPPER = """
import json, sys
from ma2ml.spec import parse_spec
from ma2ml.worker.custom import run_command
document = json.loads(sys.argv[1])
run_command(parse_spec(document), {"trainer": {"lr": 0.1}})
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's pid 1 may never reap an orphan)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def _wait_for(predicate: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _start_worker(make_search: Make, tmp_path: Path, code: str) -> subprocess.Popen[bytes]:
    """A stand-in worker process running ``code`` as its custom trainer, trial folders in tmp."""
    search = _search(make_search, [sys.executable, "-c", code])
    document = spec_to_document(search)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.Popen([sys.executable, "-c", WRAPPER, json.dumps(document)], env=env)


def _pids(path: Path) -> list[int]:
    assert _wait_for(lambda: path.exists() and path.read_text().endswith("\n")), "no pid file"
    return [int(p) for p in path.read_text().split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_trainer_dies_with_its_worker_and_the_folder_is_cleaned(
        make_search: Make, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    # The trainer starts a child of its own (as a shell wrapper or a data
    # loader would), then both would train for a minute.
    code = ("import os, subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}\\n')\n"
            "time.sleep(60)\n")
    worker = _start_worker(make_search, tmp_path, code)
    try:
        trainer, grandchild = _pids(pid_file)
        [folder] = tmp_path.glob("ma2ml-trial-*")
        assert folder.name.startswith(f"ma2ml-trial-{worker.pid}-")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        assert _wait_for(lambda: not _running(trainer)), "the trainer outlived its worker"
        assert _running(grandchild)  # only the direct child gets the parent-death signal
        assert remove_stale_trial_dirs(tmp_path) == [folder]
        assert not folder.exists()
        assert _wait_for(lambda: not _running(grandchild)), "the trainer's child was left running"
    finally:
        worker.kill()
        worker.wait()


def test_stale_folder_clean_up_spares_live_workers_and_unknown_folders(tmp_path: Path) -> None:
    live = tmp_path / f"ma2ml-trial-{os.getpid()}-abc"
    unknown = tmp_path / "ma2ml-trial-abc"
    dead_pid = _dead_pid()
    dead = tmp_path / f"ma2ml-trial-{dead_pid}-xyz"
    for folder in (live, unknown, dead):
        folder.mkdir()
        (folder / "output.log").write_text("log")
    assert remove_stale_trial_dirs(tmp_path) == [dead]
    assert live.exists() and unknown.exists() and not dead.exists()


def test_a_reused_pid_does_not_keep_a_folder(tmp_path: Path) -> None:
    # The pid is alive (this process) but started at another time than the owner.
    folder = tmp_path / f"ma2ml-trial-{os.getpid()}-abc"
    folder.mkdir()
    (folder / "owner.json").write_text(json.dumps({"pid": os.getpid(), "start": 1}))
    assert remove_stale_trial_dirs(tmp_path) == [folder]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftover_children_are_killed_when_the_trainer_exits(
        make_search: Make, python_trainer: Callable[[str], list[str]], tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    code = ("import subprocess, sys, ma2ml\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(pid_file)!r}, 'w').write(f'{{child.pid}}\\n')\n"
            "ma2ml.report(0.5)\n")
    run_command(_search(make_search, python_trainer(code)), PIPELINE)
    [child] = _pids(pid_file)
    assert _wait_for(lambda: not _running(child)), "a background child outlived the trial"


def test_timeout_kills_the_trainers_children(
        make_search: Make, python_trainer: Callable[[str], list[str]], tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(pid_file)!r}, 'w').write(f'{{child.pid}}\\n')\n"
            "time.sleep(60)\n")
    with pytest.raises(TrialError, match="timed out"):
        run_command(_search(make_search, python_trainer(code), timeout=2.0), PIPELINE)
    [child] = _pids(pid_file)
    assert _wait_for(lambda: not _running(child))


def test_report_refuses_metrics_the_worker_would_refuse(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("MA2ML_RESULT_FILE", str(tmp_path / "result.json"))
    with pytest.raises(ValueError, match=r"'metrics.history' must be a number, a string"):
        ma2ml.report(0.5, history=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"'metrics.note': a text of 5000 characters"):
        ma2ml.report(0.5, note="x" * 5000)
    assert not (tmp_path / "result.json").exists()
