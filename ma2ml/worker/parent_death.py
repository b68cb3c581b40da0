"""Processes that do not outlive the process that started them (Linux ``PR_SET_PDEATHSIG``).

Two users: a worker's trainer command (SIGKILL when its worker dies, set in the
forked child before exec) and the worker processes of ``ma2ml run`` (SIGTERM
when ``ma2ml run`` dies, so a killed run does not leave workers training for
nobody; SIGTERM lets them hand their trials back). Elsewhere than Linux both
are no-ops.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from functools import cache

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
    return function  # type: ignore[no-any-return]


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
