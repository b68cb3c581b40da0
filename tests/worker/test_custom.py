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
from typing import Any

import pytest

import ma2ml
from ma2ml.spec import PipelineSearch, spec_to_document
from ma2ml.trainer.errors import TrialError
from ma2ml.worker.custom import StepWatcher, remove_stale_trial_dirs, run_command, tail

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
        assert _wait_for(lambda: not _running(trainer), 30), "the trainer outlived its worker"
        # Only the trainer gets the parent-death signal; its guard kills the rest of the
        # group and removes the folder, before any later worker starts (issue 25, item 8).
        assert _wait_for(lambda: not _running(grandchild), 30), \
            "the trainer's child outlived the worker"
        assert _wait_for(lambda: not folder.exists(), 30), "the trial folder was left"
        assert remove_stale_trial_dirs(tmp_path) == []
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


# --------------------------------------------------------------------------- intermediate results


class _Curve:
    """An epoch callback that records every call and says stop after ``stop_after``."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple[int, float, dict[str, Any]]] = []
        self.stop_after = stop_after

    def __call__(self, epoch: int, reward: float, metrics: dict[str, Any]) -> bool:
        self.calls.append((epoch, reward, metrics))
        return epoch != self.stop_after


def test_steps_reach_the_epoch_callback_and_the_final_report_stays_the_result(
        make_search: Make, python_trainer: Callable[[str], list[str]]) -> None:
    """Steps are shaped like the final result (FLOPs target), a repeated step is relayed
    once, and the final call without ``step`` is the trial's result."""
    code = ("import ma2ml\n"
            "ma2ml.report(accuracy=0.5, flops=1e6, step=1, loss=0.9)\n"
            "ma2ml.report(accuracy=0.5, flops=1e6, step=1)\n"  # repeated, as after a resume
            "ma2ml.report(0.7, step=2)\n"
            "ma2ml.report(accuracy=0.8, flops=2e6, step=3)\n"
            "ma2ml.report(accuracy=0.8, flops=2e6)\n")
    search = _search(make_search, python_trainer(code), budget={"trialEpochs": 3},
                     objective={"flopsTarget": 1e6, "flopsExponent": -0.07})
    curve = _Curve()
    result = run_command(search, PIPELINE, on_epoch=curve)
    assert [epoch for epoch, _, _ in curve.calls] == [1, 2, 3]
    assert [reward for _, reward, _ in curve.calls] == [
        pytest.approx(0.5), 0.7, pytest.approx(0.8 * 2 ** -0.07)]
    metrics = curve.calls[0][2]
    assert (metrics["accuracy"], metrics["loss"]) == (0.5, 0.9) and metrics["train_seconds"] > 0
    assert not result.stopped and result.reward == pytest.approx(0.8 * 2 ** -0.07)


def test_a_stop_kills_the_trainer_and_its_children_at_once(
        make_search: Make, python_trainer: Callable[[str], list[str]], tmp_path: Path) -> None:
    """The trainer goes on training after its step report; the callback's stop kills its
    whole process group without the SIGTERM grace, and the result is the step's."""
    pid_file = tmp_path / "pids"
    code = ("import os, signal, subprocess, sys, time, ma2ml\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"  # no grace is waited for
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}\\n')\n"
            "ma2ml.report(accuracy=0.1, step=1)\n"
            "time.sleep(60)\n"
            "ma2ml.report(accuracy=0.9)\n")
    search = _search(make_search, python_trainer(code), budget={"trialEpochs": 4})
    curve = _Curve(stop_after=1)
    started = time.monotonic()
    result = run_command(search, PIPELINE, on_epoch=curve)
    elapsed = time.monotonic() - started
    assert result.stopped and result.reward == 0.1
    assert result.metrics["accuracy"] == 0.1 and result.metrics["stopped_at_epoch"] == 1
    trainer, child = _pids(pid_file)
    assert not _running(trainer) and _wait_for(lambda: not _running(child))
    assert elapsed < 5, f"stopping took {elapsed:.1f} s"


def test_a_step_written_just_before_exit_is_still_relayed(
        make_search: Make, python_trainer: Callable[[str], list[str]]) -> None:
    """The steps file is read once more after the command exits: its last step is judged,
    and a stop there makes the trial stopped even though a final result exists."""
    code = "import ma2ml; ma2ml.report(accuracy=0.2, step=1); ma2ml.report(accuracy=0.9)"
    curve = _Curve(stop_after=1)
    result = run_command(_search(make_search, python_trainer(code), budget={"trialEpochs": 2}),
                         PIPELINE, on_epoch=curve)
    assert [epoch for epoch, _, _ in curve.calls] == [1]
    assert result.stopped and result.reward == 0.2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"step": 0, "accuracy": 0.5}',
         r"line 1: step report field 'step' must be a whole number in \[1, 3\] "
         r"\(budget.trialEpochs\), got 0"),
        ('{"step": 4, "accuracy": 0.5}', r"field 'step' must be a whole number in \[1, 3\]"),
        ('{"step": 1.5, "accuracy": 0.5}', r"field 'step' must be a whole number"),
        ('{"step": 1, "accuracy": 7.5}',
         r"line 1: step report field 'accuracy' must be in \[0, 1\], got 7.5"),
        ('{"step": 1, "loss": 0.1}', r"line 1: step report has neither 'reward' nor 'accuracy'"),
        ('{"step": 1, "reward": 1, "metrics": {"loss": [1]}}',
         r"step report field 'metrics.loss' must be a number"),
        ('{"step": 1, "reward": 0, "diverged": true}', r"a step report cannot be diverged"),
        ("[1, 2]", r"line 1: step report must be a JSON object, got list"),
        ("not json", r"line 1: unreadable step report"),
    ],
    ids=["step-zero", "step-beyond-epochs", "step-fraction", "accuracy-high", "no-reward",
         "metric-list", "diverged", "not-object", "not-json"],
)
def test_malformed_steps_fail_the_trial_naming_the_line_and_field(
        make_search: Make, python_trainer: Callable[[str], list[str]], line: str,
        message: str) -> None:
    code = ("import os, time\n"
            f"open(os.environ['MA2ML_STEPS_FILE'], 'a').write({line!r} + '\\n')\n"
            "time.sleep(60)\n")
    curve = _Curve()
    with pytest.raises(TrialError, match=message) as err:
        run_command(_search(make_search, python_trainer(code), budget={"trialEpochs": 3}),
                    PIPELINE, on_epoch=curve)
    assert not err.value.retryable and curve.calls == []


def test_report_with_step_appends_a_line_and_checks_it_in_the_trainer(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    steps = tmp_path / "steps.jsonl"
    monkeypatch.setenv("MA2ML_STEPS_FILE", str(steps))
    monkeypatch.setenv("MA2ML_TRIAL_EPOCHS", "3")
    monkeypatch.setenv("MA2ML_RESULT_FILE", str(tmp_path / "result.json"))
    ma2ml.report(accuracy=0.5, step=1, loss=0.2)
    ma2ml.report(0.6, step=2)
    assert [json.loads(line) for line in steps.read_text().splitlines()] == [
        {"step": 1, "accuracy": 0.5, "metrics": {"loss": 0.2}},
        {"step": 2, "reward": 0.6, "metrics": {}}]
    for kwargs, message in [
            ({"accuracy": 0.5, "step": 4}, r"step must be a whole number in \[1, 3\]"),
            ({"accuracy": 0.5, "step": True}, r"step must be a whole number"),
            ({"accuracy": 0.5, "step": 0}, r"step must be a whole number"),
            ({"diverged": True, "step": 1}, r"a step cannot be diverged"),
            ({"loss": 0.1, "step": 1}, r"a step needs reward or accuracy"),
            ({"accuracy": 1.5, "step": 1}, r"accuracy must be a finite number in \[0, 1\]")]:
        with pytest.raises(ValueError, match=message):
            ma2ml.report(**kwargs)
    assert len(steps.read_text().splitlines()) == 2  # nothing written by a refused call
    assert not (tmp_path / "result.json").exists()  # a step is never the final result
    monkeypatch.delenv("MA2ML_STEPS_FILE")
    with pytest.raises(RuntimeError, match="MA2ML_STEPS_FILE is not set"):
        ma2ml.report(0.5, step=1)


def test_step_watcher_waits_for_whole_lines_and_reads_a_bounded_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ma2ml.spec import Objective

    path = tmp_path / "steps.jsonl"
    curve = _Curve()
    watcher = StepWatcher(path, Objective(), 100, curve, time.monotonic())
    watcher.poll()  # no file yet: nothing to relay
    path.write_bytes(b'{"step": 1, "accuracy": 0.5}\n{"step": 2, "acc')
    watcher.poll()
    assert [epoch for epoch, _, _ in curve.calls] == [1]  # the torn line waits
    with path.open("ab") as stream:
        stream.write(b'uracy": 0.6}\n\n')
    watcher.poll()
    assert [epoch for epoch, _, _ in curve.calls] == [1, 2]
    monkeypatch.setattr("ma2ml.worker.custom.MAX_STEP_REPORTS", 4)  # 3 lines read so far
    with path.open("ab") as stream:
        stream.write(b"".join(b'{"step": %d, "accuracy": 0.5}\n' % s for s in range(3, 9)))
    watcher.poll()
    watcher.poll()
    assert [epoch for epoch, _, _ in curve.calls] == [1, 2, 3]  # the rest is ignored
    path.write_bytes(b"x" * (2 * 1024 * 1024))
    huge = StepWatcher(path, Objective(), 100, curve, time.monotonic())
    with pytest.raises(TrialError, match="a step report larger than 1048576 bytes"):
        huge.poll()


def test_the_exit_event_fires_on_exit_and_leaves_the_child_unreaped() -> None:
    """The wait loop wakes on the exit itself; the pid stays ours until we reap it."""
    import os

    from ma2ml.worker.custom import _exit_event

    process = subprocess.Popen(["sleep", "0.2"])
    exited = _exit_event(process.pid)
    assert not exited.is_set()
    assert exited.wait(timeout=30)
    assert os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    assert process.wait() == 0
