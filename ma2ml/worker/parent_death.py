"""Processes that do not outlive the process that started them (Linux ``PR_SET_PDEATHSIG``).

Two users: a worker's trainer command (SIGKILL when its worker dies, set in the
forked child before exec) and the worker processes of ``ma2ml run`` (SIGTERM
when ``ma2ml run`` dies, so a killed run does not leave workers training for
nobody; SIGTERM lets them hand their trials back). Elsewhere than Linux both
are no-ops.

The parent-death signal reaches only the trainer itself, not the processes it
started (a shell wrapper's Python, a data loader): after ``kill -9`` of a
worker they trained on for nobody. ``GroupGuard`` closes that gap: a tiny
``sh`` in its own session, reading a pipe whose only writer is the worker.
When the worker dies, however it dies, the kernel closes the pipe, the guard
reads end-of-file and kills the trainer's whole process group and removes the
trial folder. A worker that ends the trial itself says ``done`` first.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux), looked up once in the parent, never in a forked child."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                         ctypes.c_ulong]
    function.restype = ctypes.c_int
    return function


def signal_on_parent_death(sig: signal.Signals, parent: int) -> None:
    """Ask Linux to send ``sig`` to this process when ``parent`` dies.

    The request follows the parent *thread* that started this process, so the
    parent must start it from a thread that lives as long as the parent does.
    If ``parent`` died before the request took effect, the signal is sent now.
    """
    prctl = _prctl()
    if prctl is None:
        return
    prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the command when ``parent`` dies.

    Runs in the forked child before exec, so it only calls what the parent
    prepared (``preexec_fn`` must not take locks another thread may hold):
    ``_prctl`` is looked up here, in the parent. The signal follows the thread
    that starts the command; that thread waits for the command, so it outlives
    it unless the worker dies.
    """
    if _prctl() is None:
        return None
    return lambda: signal_on_parent_death(signal.SIGKILL, parent)


#: The guard: wait for a line or end-of-file on stdin; anything but ``done`` (the
#: worker died) kills the group ``$1`` and removes the folder ``$2`` (if given).
_GUARD_SCRIPT = ('IFS= read -r word; [ "$word" = done ] && exit 0; '
                 'kill -s KILL -- "-$1" 2>/dev/null; [ -n "$2" ] && rm -rf -- "$2"; exit 0')
#: Seconds a released guard gets to exit before it is killed (it exits at once).
_GUARD_EXIT_SECONDS = 5.0


class GroupGuard:
    """Kills process group ``pgid`` (and removes ``folder``) if this process dies before
    ``release``. Without ``/bin/sh`` it logs once per guard and guards nothing."""

    def __init__(self, pgid: int, folder: Path | None = None) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        read, self._write = os.pipe()  # both ends close-on-exec: no other child holds them
        try:
            self._process = subprocess.Popen(
                ["/bin/sh", "-c", _GUARD_SCRIPT, "ma2ml-guard", str(pgid),
                 str(folder) if folder is not None else ""],
                stdin=read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)  # a signal to the worker's group spares it
        except OSError as exc:
            log.warning("no guard for trainer group %d (%s): its children may outlive a "
                        "killed worker", pgid, exc)
            os.close(self._write)
            self._write = -1
        finally:
            os.close(read)

    def release(self) -> None:
        """The worker ended the trial itself: the guard exits without killing anything."""
        if self._write < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self._write, b"done\n")
        os.close(self._write)
        self._write = -1
        if self._process is not None:
            try:
                self._process.wait(_GUARD_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
