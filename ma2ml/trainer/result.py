"""The result of a trial, shared by the built-in and custom trainers (no torch import)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: ``on_epoch(epoch, reward, metrics) -> continue?``: a trainer calls it with its validation
#: result after every epoch (``epoch`` counts from 1); False ends the trial as stopped.
EpochCallback = Callable[[int, float, dict[str, Any]], bool]


@dataclass
class TrialResult:
    """What a trial reports: the reward, its metrics (JSON-able) and how it ended.

    ``diverged``: the loss blew up (reward 0, still a result). ``stopped``: the
    epoch callback said stop (early stopping); reward and metrics are those of
    the last epoch reported, which the store already holds, so the worker
    sends no report for it.
    """

    reward: float
    metrics: dict[str, Any] = field(default_factory=dict)
    diverged: bool = False
    stopped: bool = False
