"""Long-lived processes as a Deployment runs them: started, killed, restarted, logged.

Each ``Managed`` process writes stdout and stderr to one log file (a header
line per run), so a failing test can print what every run said.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass
class Run:
    """One run of a managed process."""

    pid: int
    started: float
    ended: float | None = None
    returncode: int | None = None
    killed: bool = False
    #: Where this run's output starts in the process's log file.
    log_offset: int = 0


class Managed:
    """A process that the test starts, may kill -9 and restarts (``restart_at``)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path,
                 log_path: Path) -> None:
        self.name, self.argv, self.env, self.cwd, self.log_path = name, argv, env, cwd, log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.runs: list[Run] = []
        self.restart_at = 0.0
        self._log: BinaryIO | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, now: float) -> None:
        log = self.log_path.open("ab")
        try:
            log.write(f"===== {self.name} run {len(self.runs) + 1} at "
                      f"{time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            offset = log.tell()
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=self.env,
                                            cwd=self.cwd)
        except BaseException:
            log.close()
            raise
        self._log = log
        self.runs.append(Run(self.process.pid, now, log_offset=offset))

    def reap(self, now: float) -> Run | None:
        """The run that has just ended (its log closed), or None while it runs."""
        if self.process is None or self.process.poll() is None:
            return None
        return self._ended(now)

    def kill(self, now: float) -> int:
        """kill -9 (the fault); returns the pid. The ended run is returned by ``reap``."""
        assert self.process is not None, f"{self.name} is not running"
        self.runs[-1].killed = True
        pid = self.process.pid
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        return pid

    def close(self, now: float) -> Run | None:
        """End of the test: kill -9 whatever still runs; returns that run, if any."""
        if self.process is None:
            return None
        leftover = self.process.poll() is None
        if leftover:
            self.process.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        run = self._ended(now)
        return run if leftover else None

    def output(self, run: Run) -> str:
        """What one run wrote (its part of the log file)."""
        index = self.runs.index(run)
        end = self.runs[index + 1].log_offset if index + 1 < len(self.runs) else None
        with self.log_path.open("rb") as log:
            log.seek(run.log_offset)
            data = log.read() if end is None else log.read(end - run.log_offset)
        return data.decode(errors="replace")

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _ended(self, now: float) -> Run:
        assert self.process is not None
        run = self.runs[-1]
        run.ended, run.returncode = now, self.process.returncode
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return run


def processes_running(script: Path) -> list[int]:
    """Pids of live processes whose command line has ``script`` as an argument (/proc)."""
    needle = os.fsencode(script)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if needle in arguments:
            found.append(int(entry.name))
    return sorted(found)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
