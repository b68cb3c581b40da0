"""Custom trainers: a user's command trains the pipeline and reports a reward.

The command (``trainer.command``, an argument list run without a shell)
gets the sampled pipeline as JSON twice over: in the file named by
``MA2ML_PIPELINE_FILE`` and inline in ``MA2ML_PIPELINE``. It reports by
writing ``{"reward": ..., "metrics": {...}}`` (or ``"accuracy"`` and
``"flops"``, shaped by the spec's objective) to ``MA2ML_RESULT_FILE``,
most simply by calling ``ma2ml.report(...)``. A timeout, a non-zero exit or
a missing result fails the trial with the tail of the command's output.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ma2ml.spec import Objective, PipelineSearch
from ma2ml.worker.errors import TrialError, TrialInterrupted
from ma2ml.worker.result import TrialResult
from ma2ml.worker.reward import compute_reward

ENV_PIPELINE = "MA2ML_PIPELINE"
ENV_PIPELINE_FILE = "MA2ML_PIPELINE_FILE"
ENV_RESULT_FILE = "MA2ML_RESULT_FILE"
ENV_SEED = "MA2ML_SEED"
ENV_TRIAL_DIR = "MA2ML_TRIAL_DIR"
ENV_CHECKPOINT = "MA2ML_CHECKPOINT_PATH"
ENV_EPOCHS = "MA2ML_TRIAL_EPOCHS"
#: Characters of the command's output quoted in a trial error.
TAIL_CHARS = 2000
#: Seconds between SIGTERM and SIGKILL when a command must stop.
KILL_GRACE_SECONDS = 5.0


def report(reward: float | None = None, *, accuracy: float | None = None,
           flops: float | None = None, diverged: bool = False, **metrics: Any) -> None:
    """Report a custom trainer's result to the ma2ml worker that started it.

    Give ``reward``, or ``accuracy`` (and ``flops`` when the search has a
    FLOPs target) for the worker to shape. Extra keyword arguments are kept
    as metrics (JSON numbers or strings).
    """
    path = os.environ.get(ENV_RESULT_FILE)
    if not path:
        raise RuntimeError(f"ma2ml.report() must be called by a trainer started by an ma2ml "
                           f"worker ({ENV_RESULT_FILE} is not set)")
    result = {"reward": reward, "accuracy": accuracy, "flops": flops, "diverged": diverged,
              "metrics": metrics}
    partial = Path(path + ".partial")
    partial.write_text(json.dumps({k: v for k, v in result.items() if v is not None},
                                  allow_nan=False))
    partial.replace(path)


def run_command(search: PipelineSearch, pipeline: Mapping[str, Any], *, seed: int = 0,
                stop: threading.Event | None = None, trial_dir: Path | None = None,
                checkpoint_path: Path | None = None) -> TrialResult:
    """Run ``trainer.command`` for one pipeline (raises ``TrialError``, ``TrialInterrupted``)."""
    owned = trial_dir is None
    trial_dir = Path(tempfile.mkdtemp(prefix="ma2ml-trial-")) if owned else Path(trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    try:
        result_file = trial_dir / "result.json"
        result_file.unlink(missing_ok=True)  # a stale file from an earlier attempt is no result
        env = _environment(search, pipeline, seed, trial_dir, result_file, checkpoint_path)
        started = time.monotonic()
        _execute(search.spec.trainer.command, env, trial_dir, search.spec.trainer.timeout_seconds,
                 stop)
        return read_result(result_file, search.spec.objective, time.monotonic() - started,
                           trial_dir / "output.log")
    finally:
        if owned:
            shutil.rmtree(trial_dir, ignore_errors=True)


def _environment(search: PipelineSearch, pipeline: Mapping[str, Any], seed: int,
                 trial_dir: Path, result_file: Path, checkpoint_path: Path | None
                 ) -> dict[str, str]:
    text = json.dumps(pipeline, sort_keys=True)
    pipeline_file = trial_dir / "pipeline.json"
    pipeline_file.write_text(text)
    env = {**os.environ, ENV_PIPELINE: text, ENV_PIPELINE_FILE: str(pipeline_file),
           ENV_RESULT_FILE: str(result_file), ENV_SEED: str(seed),
           ENV_TRIAL_DIR: str(trial_dir), ENV_EPOCHS: str(search.spec.budget.trial_epochs)}
    if checkpoint_path is not None:
        env[ENV_CHECKPOINT] = str(checkpoint_path)
    return env


def _execute(command: list[str], env: dict[str, str], trial_dir: Path, timeout: float,
             stop: threading.Event | None) -> None:
    log_path = trial_dir / "output.log"
    with log_path.open("wb") as log:
        try:
            # Own session: a timeout kills the command's whole process group.
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       cwd=trial_dir, start_new_session=True)
        except OSError as exc:
            raise TrialError(f"trainer.command: cannot start {command[0]!r} ({exc})") from None
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if stop is not None and stop.is_set():
                _terminate(process)
                raise TrialInterrupted("stop requested")
            if time.monotonic() > deadline:
                _terminate(process)
                raise TrialError(f"trainer.command timed out after {timeout:g} s; output tail:\n"
                                 f"{tail(log_path)}")
            time.sleep(0.05)
    if process.returncode != 0:
        raise TrialError(f"trainer.command exited with code {process.returncode}; output tail:\n"
                         f"{tail(log_path)}")


def _terminate(process: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, chars: int = TAIL_CHARS) -> str:
    try:
        text = path.read_bytes()[-chars:].decode(errors="replace")
    except OSError:
        return "(no output)"
    return text or "(no output)"


def read_result(path: Path, objective: Objective, seconds: float, log_path: Path
                ) -> TrialResult:
    """Parse the command's result file into a ``TrialResult``."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TrialError(f"trainer.command exited 0 but wrote no result to {ENV_RESULT_FILE} "
                         f"(call ma2ml.report(...)); output tail:\n{tail(log_path)}") from None
    except (OSError, ValueError) as exc:
        raise TrialError(f"{path}: unreadable result ({exc})") from None
    if not isinstance(data, dict):
        raise TrialError(f"{path}: result must be a JSON object, got {type(data).__name__}")
    diverged = bool(data.get("diverged", False))
    metrics = dict(data.get("metrics") or {})
    for key in ("accuracy", "flops"):
        if key in data:
            metrics[key] = _number(data[key], key, path)
    metrics["train_seconds"] = seconds
    reward = _reward(data, metrics, objective, diverged, path)
    return TrialResult(reward, metrics, diverged=diverged)


def _reward(data: dict[str, Any], metrics: dict[str, Any], objective: Objective,
            diverged: bool, path: Path) -> float:
    if "reward" in data:
        return _number(data["reward"], "reward", path)
    if diverged:
        return 0.0
    if "accuracy" not in metrics:
        raise TrialError(f"{path}: result has neither 'reward' nor 'accuracy'")
    if objective.flops_target is not None and "flops" not in metrics:
        raise TrialError(f"{path}: objective.flopsTarget is set, so a result without 'reward' "
                         f"needs 'flops'")
    return compute_reward(metrics["accuracy"], metrics.get("flops", 0.0), objective)


def _number(value: Any, key: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TrialError(f"{path}: result field {key!r} must be a finite number, got {value!r}")
    return float(value)
