"""``ma2ml run`` stopped from outside: SIGTERM stops it as Ctrl-C does, and a run killed
outright (SIGKILL) does not leave its workers training for nobody.

Real ``ma2ml run`` processes, real worker processes, the real SQLite store; the trainer
is a command that sleeps, so a trial stays running until it is stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ma2ml.store import Store


def _spec(tmp_path: Path) -> Path:
    document = {
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "sleepy"},
        "spec": {
            "agents": [{"name": "trainer", "decisions": [{"name": "n", "values": [0, 1, 2]}]}],
            "algorithm": {"name": "random", "seed": 0},
            "budget": {"maxTrials": 6, "parallelism": 2, "leaseSeconds": 30},
            "trainer": {"type": "command", "command": ["sleep", "600"]},
        },
    }
    path = tmp_path / "sleepy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ignore_sigint() -> None:
    """As a non-interactive shell starts a background job: SIGINT ignored, across exec."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_with_two_running(tmp_path: Path, *, sigint_ignored: bool = False
                            ) -> tuple[subprocess.Popen[str], set[int]]:
    """A run whose two workers each train a trial; returns it and its worker pids."""
    # Output goes to a file: a pipe nobody reads while the run works could fill and block it.
    with open(tmp_path / "run.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "ma2ml", "run", str(_spec(tmp_path))],
                                   cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True,
                                   preexec_fn=_ignore_sigint if sigint_ignored else None)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, _log_tail(tmp_path)
        if _running_trials(tmp_path) >= 2:
            return process, _children(process.pid)
        time.sleep(0.2)
    process.kill()
    process.wait()
    raise AssertionError("two trials never ran: " + _log_tail(tmp_path))


def _log_tail(tmp_path: Path) -> str:
    return (tmp_path / "run.log").read_text(errors="replace")[-3000:]


def _running_trials(tmp_path: Path) -> int:
    db = tmp_path / "sleepy.db"
    if not db.exists():
        return 0
    try:
        with Store(f"sqlite:///{db}", create=False) as store:
            record = store.get_search("default/sleepy")
            return store.counts(record.id)["running"] if record else 0
    except Exception:  # the file exists a moment before its tables
        return 0


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return {p for p in pids if _alive(p)}


def _stops_cleanly_on(tmp_path: Path, sig: signal.Signals, *, sigint_ignored: bool = False
                      ) -> None:
    """``sig`` stops a run with two trials training as Ctrl-C does: exit 130, its workers
    gone and their trials handed back."""
    process, workers = _start_with_two_running(tmp_path, sigint_ignored=sigint_ignored)
    assert len(workers) >= 2, workers
    try:
        process.send_signal(sig)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, _log_tail(tmp_path)
    # Polled: returns as soon as they are gone; the bound only allows for a busy machine.
    assert not _wait_gone(workers, 30), "workers outlived the run"
    assert _running_trials(tmp_path) == 0, "running trials were handed back"


def test_sigterm_stops_the_run_like_ctrl_c(tmp_path: Path) -> None:
    _stops_cleanly_on(tmp_path, signal.SIGTERM)


def test_sigint_stops_a_run_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A background job of a non-interactive shell (CI, a test harness) starts with SIGINT
    ignored; ``ma2ml run`` still stops on it, like Ctrl-C."""
    _stops_cleanly_on(tmp_path, signal.SIGINT, sigint_ignored=True)


def test_a_killed_run_takes_its_workers_with_it(tmp_path: Path) -> None:
    process, workers = _start_with_two_running(tmp_path)
    trainers = set().union(*(_children(w) for w in workers))
    try:
        process.kill()  # no cleanup in the parent at all
        process.wait(timeout=30)
        left = _wait_gone(workers | trainers, 60)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the trainers have their own sessions
        for pid in workers | trainers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after the run was killed: {sorted(left)}"
    assert _running_trials(tmp_path) == 0, "the workers handed their trials back as they stopped"
