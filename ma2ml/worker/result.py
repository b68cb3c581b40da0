"""The result of a trial, shared by the built-in and custom trainers (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrialResult:
    """What a trial reports: the reward, its metrics (JSON-able) and whether it diverged."""

    reward: float
    metrics: dict[str, Any] = field(default_factory=dict)
    diverged: bool = False
