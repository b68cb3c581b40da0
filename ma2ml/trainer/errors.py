"""Why a trial did not produce a result, and whether running it again could help.

Shared by the built-in trainer and the worker's custom-command runner; no torch
import. (``StoreFault``, the worker's own error, is in ``ma2ml.worker.errors``.)
"""

from __future__ import annotations

from typing import Any


class TrialError(RuntimeError):
    """A trial that failed. ``retryable``: another attempt (maybe elsewhere) might succeed.

    Deterministic problems (a missing dataset, a pipeline the trainer cannot
    build, a custom command that exits non-zero, times out or reports
    nothing) are not retryable: every attempt would fail the same way.
    Anything unexpected (out of memory, a CUDA fault, a full disk) is treated
    as retryable by the worker loop, bounded by ``budget.maxRetries``.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class DataError(TrialError):
    """A dataset that is missing or unreadable; the message names the path.

    Defined here, not in ``data.py`` (which imports torch), so that ``ma2ml run`` can
    catch it without loading torch before the search exists.
    """


class TrialInterrupted(Exception):
    """Training stopped on request (SIGTERM or a lost lease); the last epoch checkpoint stays."""


class TrialStopped(Exception):
    """The epoch callback said stop after ``epoch`` (early stopping).

    Raised inside a trainer to unwind its training (a custom command's wait
    loop kills the command's process group on the way out); ``run_trial``
    turns it into a ``TrialResult`` with ``stopped`` set and the ``reward``
    and ``metrics`` of that epoch.
    """

    def __init__(self, epoch: int, reward: float, metrics: dict[str, Any]) -> None:
        super().__init__(f"stopped early after epoch {epoch}")
        self.epoch, self.reward, self.metrics = epoch, reward, metrics
