"""Custom trainers: a user's command trains the pipeline and reports a reward.

The command (``trainer.command``, an argument list run without a shell)
gets the sampled pipeline as JSON twice over: in the file named by
``MA2ML_PIPELINE_FILE`` and inline in ``MA2ML_PIPELINE``. It reports by
writing ``{"reward": ..., "metrics": {...}}`` (or ``"accuracy"`` and
``"flops"``, shaped by the spec's objective) to ``MA2ML_RESULT_FILE``,
most simply by calling ``ma2ml.report(...)``. A timeout, a non-zero exit, a
missing result or a malformed one (an accuracy outside [0, 1], metrics that
are not a mapping of names to numbers or strings) fails the trial with a
message naming the field, plus the tail of the command's output.

Intermediate results (``ma2ml.report(..., step=epoch)``) are JSON lines
appended to ``MA2ML_STEPS_FILE`` in the trial folder: one ``write`` with
``O_APPEND`` each, so a line is never interleaved, and the worker only
reads lines that end with a newline. The worker's wait loop, which already
polls the command every 50 ms, reads the new lines (``StepWatcher``;
bounded: steps in [1, trialEpochs], ``MAX_STEP_REPORTS`` lines, each within
``MAX_RESULT_BYTES``), checks them by the final result's rules and hands
each new step to the epoch callback. A file rather than a pipe or a socket:
it needs nothing from the trainer but an append, works from any language,
and a trainer that reports faster than the worker reads never blocks. When
the callback says stop, the command's process group is killed at once
(SIGKILL, no grace: the trial is over and its checkpoint is not wanted) and
the result is the stopped step's, marked ``stopped``.

Every file the worker reads from the trial folder (result, steps, output
tail, owner) is opened through ``untrusted``: a trainer that turns one into a
FIFO or a directory fails its trial at once instead of wedging the worker.

A bare ``python`` or ``python3`` as the command's first word means the
worker's own interpreter (``sys.executable``): started as ``.venv/bin/ma2ml``
without an activated venv, ``python`` on PATH is the system one, which
cannot ``import ma2ml``. A path (``/usr/bin/python3``) runs as written.

The command runs in the worker's working directory (``ma2ml run``: the spec
file's folder; a worker pod: its container's working directory), so relative
paths in it (``[python, train.py]``) mean what they mean there.

The command runs in its own process group, with its files in a folder
``$TMPDIR/ma2ml-trial-<worker pid>-*`` (``$MA2ML_TRIAL_DIR``). On Linux it gets a parent-death
signal, so a worker killed with -9 takes its trainer along, and a
``GroupGuard`` then kills the rest of its group (what the trainer started)
and removes the folder; on a stop, a
timeout or when the command exits, the whole group is killed, so nothing it
started keeps training. ``remove_stale_trial_dirs`` (called when a worker
starts) removes the folders of dead workers and kills what their trainers
left running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ma2ml.limits import (
    MAX_METRIC_NAME_CHARS,
    MAX_METRIC_TEXT_CHARS,
    MAX_METRICS,
    MAX_METRICS_BYTES,
    metrics_bytes,
)
from ma2ml.spec import Objective, PipelineSearch
from ma2ml.trainer.errors import TrialError, TrialInterrupted, TrialStopped
from ma2ml.trainer.result import EpochCallback, TrialResult
from ma2ml.trainer.reward import compute_reward
from ma2ml.worker.parent_death import GroupGuard, die_with_parent
from ma2ml.worker.untrusted import NotRegularFileError, read_regular, read_tail, write_new

log = logging.getLogger(__name__)

ENV_PIPELINE = "MA2ML_PIPELINE"
ENV_PIPELINE_FILE = "MA2ML_PIPELINE_FILE"
ENV_RESULT_FILE = "MA2ML_RESULT_FILE"
ENV_SEED = "MA2ML_SEED"
ENV_TRIAL_DIR = "MA2ML_TRIAL_DIR"
ENV_CHECKPOINT = "MA2ML_CHECKPOINT_PATH"
ENV_EPOCHS = "MA2ML_TRIAL_EPOCHS"
ENV_STEPS_FILE = "MA2ML_STEPS_FILE"
#: Characters of the command's output quoted in a trial error.
TAIL_CHARS = 2000
#: Seconds between SIGTERM and SIGKILL when a command must stop.
KILL_GRACE_SECONDS = 5.0
#: Trial folders are ``<tmp>/ma2ml-trial-<worker pid>-<random>``.
TRIAL_DIR_PREFIX = "ma2ml-trial-"
#: In a trial folder: who owns it (worker pid, its start time, the trainer's group).
OWNER_FILE = "owner.json"
#: Bytes of a result file: a result is a few numbers, never megabytes.
MAX_RESULT_BYTES = 1024 * 1024
#: Bytes of JSON kept free in a result's metrics for those the worker adds
#: (accuracy, flops, train_seconds, stopped_at_epoch): the store takes at most
#: ``MAX_METRICS_BYTES`` of the whole (limits owned by ``ma2ml.limits``).
_WORKER_METRICS_BYTES = 256
#: Bytes of JSON a trainer's own metrics may take.
MAX_REPORTED_METRICS_BYTES = MAX_METRICS_BYTES - _WORKER_METRICS_BYTES
#: Bytes of an owner file read (a few numbers).
_OWNER_BYTES = 4096
#: Intermediate reports the worker reads from one command; later lines are ignored.
MAX_STEP_REPORTS = 10_000
#: Bytes the worker reads from the steps file per look.
_STEP_CHUNK = 64 * 1024

_TRIAL_DIR_NAME = re.compile(rf"^{TRIAL_DIR_PREFIX}(\d+)-")


def report(reward: float | None = None, *, accuracy: float | None = None,
           flops: float | None = None, diverged: bool = False, step: int | None = None,
           **metrics: Any) -> None:
    """Report a custom trainer's result to the ma2ml worker that started it.

    Give ``reward`` (any finite number), or ``accuracy`` (in [0, 1]; and
    ``flops`` when the search has a FLOPs target) for the worker to shape.
    Extra keyword arguments are kept as metrics (JSON numbers or strings).
    A value out of range raises ``ValueError`` here, in the trainer, where
    the traceback points at the call.

    With ``step`` (the epoch just finished, 1 to ``$MA2ML_TRIAL_EPOCHS``) the
    call reports an intermediate result: the worker records it on the trial's
    learning curve and, under ``spec.earlyStopping``, may stop the trial
    there, killing this process. The final call, without ``step``, is the
    trial's result.
    """
    path = os.environ.get(ENV_STEPS_FILE if step is not None else ENV_RESULT_FILE)
    if not path:
        raise RuntimeError(f"ma2ml.report() must be called by a trainer started by an ma2ml "
                           f"worker ({ENV_STEPS_FILE if step is not None else ENV_RESULT_FILE} "
                           f"is not set)")
    problem = _metrics_problem(metrics)
    if problem is not None:
        raise ValueError(f"ma2ml.report: {problem}")
    result = {"reward": _checked_number(reward, "reward"),
              "accuracy": _checked_number(accuracy, "accuracy", 0.0, 1.0),
              "flops": _checked_number(flops, "flops", 0.0),
              "diverged": bool(diverged), "metrics": metrics}
    if step is not None:
        _append_step(path, _checked_step(step, diverged, reward, accuracy), result)
        return
    partial = Path(path + ".partial")
    partial.write_text(json.dumps({k: v for k, v in result.items() if v is not None},
                                  allow_nan=False))
    partial.replace(path)


def _checked_step(step: Any, diverged: bool, reward: float | None, accuracy: float | None
                  ) -> int:
    epochs = os.environ.get(ENV_EPOCHS, "")
    limit = int(epochs) if epochs.isdigit() else None
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or int(step) < 1 \
            or (limit is not None and int(step) > limit):
        bounds = f"in [1, {limit}] ({ENV_EPOCHS})" if limit is not None else ">= 1"
        raise ValueError(f"ma2ml.report: step must be a whole number {bounds}, "
                         f"got {_brief(step)}")
    if diverged:
        raise ValueError("ma2ml.report: a step cannot be diverged; report divergence as the "
                         "final result, without step")
    if reward is None and accuracy is None:
        raise ValueError("ma2ml.report: a step needs reward or accuracy")
    return int(step)


def _append_step(path: str, step: int, result: dict[str, Any]) -> None:
    line = {"step": step, **{k: v for k, v in result.items()
                             if v is not None and k != "diverged"}}
    data = (json.dumps(line, allow_nan=False) + "\n").encode()
    # One write with O_APPEND: the line lands whole at the end of the file, even
    # when the worker reads it at the same moment.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def _checked_number(value: Any, name: str, low: float = -math.inf, high: float = math.inf
                    ) -> float | None:
    if value is None:
        return None
    # numbers.Real admits numpy scalars, which json cannot write: store a float.
    number = _as_float(value) if isinstance(value, numbers.Real) else None
    if isinstance(value, bool) or number is None or not math.isfinite(number) \
            or not low <= number <= high:
        bounds = "" if (low, high) == (-math.inf, math.inf) else \
            f" in [{low:g}, {high:g}]" if high < math.inf else f" >= {low:g}"
        raise ValueError(f"ma2ml.report: {name} must be a finite number{bounds}, "
                         f"got {_brief(value)}")
    return number


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (OverflowError, TypeError, ValueError):  # an integer beyond any float
        return None


def run_command(search: PipelineSearch, pipeline: Mapping[str, Any], *, seed: int = 0,
                stop: threading.Event | None = None, trial_dir: Path | None = None,
                checkpoint_path: Path | None = None, on_epoch: EpochCallback | None = None,
                on_started: Callable[[], None] | None = None) -> TrialResult:
    """Run ``trainer.command`` for one pipeline (raises ``TrialError``, ``TrialInterrupted``).

    ``on_epoch`` gets the command's intermediate reports; when it says stop the
    command is killed and the result is marked ``stopped``. ``on_started`` is called
    once the command's process exists (the worker then does its other work while
    the command runs).
    """
    owned = trial_dir is None
    # The worker's pid in the name lets a later worker see whether the folder is stale.
    trial_dir = Path(tempfile.mkdtemp(prefix=f"{TRIAL_DIR_PREFIX}{os.getpid()}-")) \
        if trial_dir is None else Path(trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    try:
        result_file, steps_file = trial_dir / "result.json", trial_dir / "steps.jsonl"
        for stale in (result_file, steps_file):  # an earlier attempt's files are no result
            stale.unlink(missing_ok=True)
        env = _environment(search, pipeline, seed, trial_dir, result_file, checkpoint_path)
        env[ENV_STEPS_FILE] = str(steps_file)
        started = time.monotonic()
        watcher = None if on_epoch is None else StepWatcher(
            steps_file, search.spec.objective, search.spec.budget.trial_epochs, on_epoch,
            started)
        try:
            _execute(search.spec.trainer.command, env, trial_dir,
                     search.spec.trainer.timeout_seconds, stop,
                     owner_file=trial_dir / OWNER_FILE if owned else None, watcher=watcher,
                     on_started=on_started)
            if watcher is not None:  # steps written just before the command exited
                watcher.poll()
        except TrialStopped as stopped:
            return TrialResult(stopped.reward, {**stopped.metrics,
                                                "stopped_at_epoch": stopped.epoch}, stopped=True)
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


#: First words of ``trainer.command`` that mean this worker's own Python.
BARE_PYTHONS = frozenset({"python", "python3"})


def resolve_python(command: list[str]) -> list[str]:
    """``command`` with a bare ``python``/``python3`` replaced by ``sys.executable``."""
    if command and command[0] in BARE_PYTHONS and sys.executable:
        return [sys.executable, *command[1:]]
    return list(command)


def _execute(command: list[str], env: dict[str, str], trial_dir: Path, timeout: float,
             stop: threading.Event | None, owner_file: Path | None = None,
             watcher: StepWatcher | None = None,
             on_started: Callable[[], None] | None = None) -> None:
    command = resolve_python(command)
    log_path = trial_dir / "output.log"
    with log_path.open("wb") as log:
        try:
            # Own session, so its process group (the command and everything it
            # starts) can be killed as one.
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       cwd=None, start_new_session=True,
                                       preexec_fn=die_with_parent(os.getpid()))
        except OSError as exc:
            raise TrialError(f"trainer.command: cannot start {command[0]!r} ({exc})") from None
        # Kills the group (the trainer's children too) should this worker die meanwhile.
        guard = GroupGuard(process.pid, trial_dir if owner_file is not None else None)
        try:
            if owner_file is not None:
                _write_owner(owner_file, process.pid)
            if on_started is not None:
                on_started()
            _wait(process, timeout, stop, log_path, watcher)
        except BaseException as exc:
            # A stopped trial is over: nothing it could save on SIGTERM is wanted.
            _terminate(process, 0.0 if isinstance(exc, TrialStopped) else KILL_GRACE_SECONDS)
            raise
        finally:
            guard.release()  # the group is dead and reaped: nothing left to guard
    if process.returncode != 0:
        raise TrialError(f"trainer.command exited with code {process.returncode}; output tail:\n"
                         f"{tail(log_path)}")


def _wait(process: subprocess.Popen[bytes], timeout: float, stop: threading.Event | None,
          log_path: Path, watcher: StepWatcher | None = None) -> None:
    deadline = time.monotonic() + timeout
    exited = _exit_event(process.pid)
    while not exited.is_set():
        if stop is not None and stop.is_set():
            raise TrialInterrupted("stop requested")
        if time.monotonic() > deadline:
            raise TrialError(f"trainer.command timed out after {timeout:g} s; output tail:\n"
                             f"{tail(log_path)}")
        if watcher is not None:
            watcher.poll()  # raises TrialStopped when the callback says stop
        exited.wait(0.05)
    # Whatever the command left running in its group would train on unseen.
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _exit_event(pid: int) -> threading.Event:
    """An event set the moment the child exits (a thread blocked in ``waitid``).

    The wait loop wakes on it at once instead of noticing the exit at its next
    50 ms look: for short trials that look was a quarter of the gap between two
    trials. ``WNOWAIT`` leaves the child unreaped, as ``_exited`` does.
    """
    exited = threading.Event()

    def watch() -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        exited.set()

    threading.Thread(target=watch, name=f"trainer-{pid}-exit", daemon=True).start()
    return exited


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it.

    An unreaped child keeps its pid, so signalling its process group
    afterwards can never reach a stranger that was given the pid again.
    """
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _terminate(process: subprocess.Popen[bytes], grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM the command's group, give it ``grace`` seconds, then SIGKILL the group."""
    _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not _exited(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_group(process.pid, signal.SIGKILL)  # also children that ignored SIGTERM
    process.wait()


def tail(path: Path, chars: int = TAIL_CHARS) -> str:
    """The last ``chars`` characters of a log, read from its end (the log may be gigabytes)."""
    try:  # UTF-8 takes at most 4 bytes a character
        text = read_tail(path, 4 * chars).decode(errors="replace")[-chars:]
    except NotRegularFileError as exc:  # the trainer replaced its log (a FIFO would block)
        return f"(no output: {exc})"
    except OSError:
        return "(no output)"
    return text or "(no output)"


# --------------------------------------------------------------------------- stale folders


def remove_stale_trial_dirs(root: Path | None = None) -> list[Path]:
    """Remove the trial folders of workers that died (kill -9, OOM), and their leftovers.

    Looks at ``root/ma2ml-trial-<pid>-*`` (default: the temporary directory).
    A folder is stale when its worker pid is not alive, or is alive but
    started later than the worker that made the folder (the pid was reused).
    Before removing it, whatever its trainer's process group still runs is
    killed (a trainer's own children outlive it when only it got the
    parent-death signal). Folders of live workers, of workers in another pid
    namespace and of unknown layout are left alone. Returns the removed ones.
    """
    root = Path(root) if root is not None else Path(tempfile.gettempdir())
    removed = []
    for folder in sorted(root.glob(f"{TRIAL_DIR_PREFIX}*")):
        match = _TRIAL_DIR_NAME.match(folder.name)
        if match is None or folder.is_symlink() or not folder.is_dir():
            continue
        owner = _read_owner(folder / OWNER_FILE)
        if owner.get("pidns", _pid_namespace()) != _pid_namespace():
            continue  # another container's pids: this one cannot tell whether it is alive
        if _alive(int(match.group(1)), owner.get("start")):
            continue
        trainer = owner.get("trainer")
        if isinstance(trainer, int) and trainer > 1:
            _kill_orphans(trainer, owner.get("trainer_start"))
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _write_owner(path: Path, trainer: int) -> None:
    owner = {"pid": os.getpid(), "start": _start_time(os.getpid()), "pidns": _pid_namespace(),
             "trainer": trainer, "trainer_start": _start_time(trainer)}
    with contextlib.suppress(OSError):  # only a later clean-up needs it
        write_new(path, json.dumps(owner).encode())  # the trainer runs in this folder


def _read_owner(path: Path) -> dict[str, Any]:
    try:  # the dead trainer may have left anything there, a FIFO included
        owner = json.loads(read_regular(path, _OWNER_BYTES))
    except (OSError, ValueError, RecursionError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: count fields after it.
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _alive(pid: int, started: Any) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    now = _start_time(pid)
    return started is None or now is None or now == started


def _kill_orphans(pgid: int, started: Any) -> None:
    # The trainer's pid names its process group. While the trainer is alive
    # with the recorded start time, or gone while members of its group live
    # on, the group is the trainer's; a live process with that pid and
    # another start time means the group is gone and the pid was reused.
    leader = _start_time(pgid)
    if leader is not None and (started is None or leader != started):
        return
    if leader is None and _pid_exists(pgid):
        return  # alive but unreadable (no /proc): cannot tell it is ours
    _signal_group(pgid, signal.SIGKILL)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- result


def read_result(path: Path, objective: Objective, seconds: float, log_path: Path
                ) -> TrialResult:
    """Parse the command's result file into a ``TrialResult``.

    Every problem is the trainer's, so it fails the trial (not retryable)
    with a message naming the field.
    """
    try:
        raw = read_regular(path, MAX_RESULT_BYTES + 1)
    except FileNotFoundError:
        raise TrialError(f"trainer.command exited 0 but wrote no result to {ENV_RESULT_FILE} "
                         f"(call ma2ml.report(...)); output tail:\n{tail(log_path)}") from None
    except OSError as exc:
        raise TrialError(f"{ENV_RESULT_FILE}: unreadable result ({exc})") from None
    if len(raw) > MAX_RESULT_BYTES:
        raise TrialError(f"{path}: result is larger than {MAX_RESULT_BYTES} bytes")
    data = _json_object(raw, str(path), "result")
    return _parse(data, objective, str(path), "result", seconds)


def _json_object(raw: bytes, where: str, noun: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise TrialError(f"{where}: unreadable {noun} ({_brief(str(exc))})") from None
    if not isinstance(data, dict):
        raise TrialError(f"{where}: {noun} must be a JSON object, got {type(data).__name__}")
    return data


def _parse(data: dict[str, Any], objective: Objective, where: str, noun: str,
           seconds: float) -> TrialResult:
    """A result (``noun`` 'result') or an intermediate one ('step report'), by one set of rules.

    ``where`` (the file, and the line of a step) starts every message.
    """
    diverged = data.get("diverged", False)
    if not isinstance(diverged, bool):
        raise TrialError(f"{where}: {noun} field 'diverged' must be true or false, "
                         f"got {_brief(diverged)}")
    metrics = _metrics(data.get("metrics"), where, noun)
    if "accuracy" in data:
        metrics["accuracy"] = _number(data["accuracy"], "accuracy", where, noun, 0.0, 1.0)
    if "flops" in data:
        metrics["flops"] = _number(data["flops"], "flops", where, noun, 0.0)
    metrics["train_seconds"] = seconds
    reward = _reward(data, metrics, objective, diverged, where, noun)
    return TrialResult(reward, metrics, diverged=diverged)


def _metrics(value: Any, where: str, noun: str) -> dict[str, Any]:
    """The result's metrics: a JSON object of names to numbers, strings, booleans or null."""
    if value is None:
        return {}
    problem = _metrics_problem(value)
    if problem is not None:
        raise TrialError(f"{where}: {noun} field {problem}")
    return dict(value)


def _metrics_problem(metrics: Any) -> str | None:
    """What is wrong with a result's metrics (``'metrics...' must ...``), or None.

    The same rules hold in ``ma2ml.report`` (in the trainer) and when the
    worker reads the result file or a step report; the limits are the store's
    (``store.text``), so a report checked here is never refused later.
    """
    if not isinstance(metrics, dict):
        return (f"'metrics' must be a JSON object of metric names to numbers or strings, "
                f"got {_brief(metrics)}")
    if len(metrics) > MAX_METRICS:
        return f"'metrics' has {len(metrics)} metrics (limit {MAX_METRICS})"
    for key, item in metrics.items():
        name = key if len(key) <= 60 and key.isprintable() else _brief(key, 60)
        field = f"'metrics.{name}'"
        if len(key) > MAX_METRIC_NAME_CHARS:
            return f"{field}: a metric name of {len(key)} characters " \
                   f"(limit {MAX_METRIC_NAME_CHARS})"
        if isinstance(item, str) and len(item) > MAX_METRIC_TEXT_CHARS:
            return f"{field}: a text of {len(item)} characters (limit {MAX_METRIC_TEXT_CHARS})"
        if isinstance(item, float) and not math.isfinite(item):
            return f"{field} must be a finite number, got {item!r}"
        if not (item is None or isinstance(item, str | int | float | bool)):
            return f"{field} must be a number, a string, true/false or null, got {_brief(item)}"
    size = metrics_bytes(metrics)
    if size > MAX_REPORTED_METRICS_BYTES:  # the store would refuse them after the training
        return f"'metrics' take {size} bytes as JSON (limit {MAX_REPORTED_METRICS_BYTES})"
    return None


def _reward(data: dict[str, Any], metrics: dict[str, Any], objective: Objective,
            diverged: bool, where: str, noun: str) -> float:
    if "reward" in data:
        return _number(data["reward"], "reward", where, noun)
    if diverged:
        return 0.0
    if "accuracy" not in metrics:
        raise TrialError(f"{where}: {noun} has neither 'reward' nor 'accuracy'")
    if objective.flops_target is not None and not metrics.get("flops"):
        raise TrialError(f"{where}: objective.flopsTarget is set, so a {noun} without 'reward' "
                         f"needs 'flops' > 0")
    try:
        return compute_reward(metrics["accuracy"], metrics.get("flops", 0.0), objective)
    except ValueError as exc:  # the trainer's numbers, not the infrastructure: no retry
        raise TrialError(f"{where}: {exc}") from None


def _number(value: Any, key: str, where: str, noun: str, low: float = -math.inf,
            high: float = math.inf) -> float:
    number = _as_float(value) if isinstance(value, int | float) else None
    if isinstance(value, bool) or number is None or not math.isfinite(number):
        raise TrialError(f"{where}: {noun} field {key!r} must be a finite number, "
                         f"got {_brief(value)}")
    if not low <= number <= high:
        bounds = f"in [{low:g}, {high:g}]" if high < math.inf else f">= {low:g}"
        raise TrialError(f"{where}: {noun} field {key!r} must be {bounds}, got {_brief(value)}")
    return number


# --------------------------------------------------------------------------- steps


class StepWatcher:
    """Relays a running command's intermediate reports (the steps file) to ``on_epoch``.

    ``poll`` reads the complete lines appended since the last look, checks
    each by the final result's rules (a bad one fails the trial, naming the
    line and the field) and hands every step not seen before to
    ``on_epoch``; it raises ``TrialStopped`` when the callback says stop.
    """

    def __init__(self, path: Path, objective: Objective, max_epochs: int,
                 on_epoch: EpochCallback, started: float) -> None:
        self.path, self.objective, self.max_epochs = path, objective, max_epochs
        self.on_epoch, self.started = on_epoch, started
        self.offset = 0  # bytes of the file read so far
        self.pending = b""  # read, not yet a complete line
        self.lines = 0
        self.seen: set[int] = set()

    def poll(self) -> None:
        """Relay every new complete line (``TrialStopped``, ``TrialError``)."""
        while self.lines < MAX_STEP_REPORTS:
            line = self._next_line()
            if line is None:
                return
            self.lines += 1  # blank lines count too: the cap bounds the worker's reading
            if not line.strip():
                continue
            where = f"{self.path} line {self.lines}"
            step, result = self._step(_json_object(line, where, "step report"), where)
            if step in self.seen:  # a resumed trainer re-reporting: the store has it
                continue
            self.seen.add(step)
            if not self.on_epoch(step, result.reward, dict(result.metrics)):
                raise TrialStopped(step, result.reward, result.metrics)
        if self.lines == MAX_STEP_REPORTS:
            self.lines += 1  # warn once
            log.warning("%s: more than %d step reports; the rest are ignored", self.path,
                        MAX_STEP_REPORTS)

    def _step(self, data: dict[str, Any], where: str) -> tuple[int, TrialResult]:
        step = data.get("step")
        if isinstance(step, bool) or not isinstance(step, int) \
                or not 1 <= step <= self.max_epochs:
            raise TrialError(f"{where}: step report field 'step' must be a whole number in "
                             f"[1, {self.max_epochs}] (budget.trialEpochs), got {_brief(step)}")
        if data.get("diverged", False) is not False:
            raise TrialError(f"{where}: a step report cannot be diverged (report divergence "
                             f"as the final result, without step)")
        result = _parse(data, self.objective, where, "step report",
                        time.monotonic() - self.started)
        return step, result

    def _next_line(self) -> bytes | None:
        """The next complete line, without its newline; None until one is complete."""
        newline = self.pending.find(b"\n")
        while newline < 0:
            if len(self.pending) > MAX_RESULT_BYTES:
                raise TrialError(f"{self.path} line {self.lines + 1}: a step report larger "
                                 f"than {MAX_RESULT_BYTES} bytes")
            chunk = self._read()
            if not chunk:
                return None
            self.pending += chunk
            newline = self.pending.find(b"\n", len(self.pending) - len(chunk))
        line, self.pending = self.pending[:newline], self.pending[newline + 1:]
        return line

    def _read(self) -> bytes:
        try:
            chunk = read_regular(self.path, _STEP_CHUNK, self.offset)
        except FileNotFoundError:  # no step reported yet
            return b""
        except OSError as exc:  # a FIFO or a directory too: reading it could block
            raise TrialError(f"{ENV_STEPS_FILE}: unreadable step reports ({exc})") from None
        self.offset += len(chunk)
        return chunk


def _brief(value: Any, limit: int = 80) -> str:
    """A repr for an error message, never longer than ``limit`` (a result may be a megabyte)."""
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'} of {len(value)} items"
    text = repr(value[:limit] if isinstance(value, str) else value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
