"""The training recipe from the hpo agent's decisions: optimizer, schedule, regularisation.

Decision names follow ``ma2ml/spaces/presets.py``; anything absent (a search
without an hpo agent, or a custom hpo agent lacking a name) takes the
default of ``Recipe``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from ma2ml.spaces import Scalar

#: Base learning rates that ``lr_scale`` multiplies.
BASE_LR = {"sgd": 0.1, "adamw": 1e-3}
SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class Recipe:
    """Hyperparameters of one trial."""

    optimizer: str = "sgd"
    lr: float = 0.1
    weight_decay: float = 5e-5
    batch_size: int = 128
    label_smoothing: float = 0.0
    warmup_fraction: float = 0.0
    schedule: str = "cosine"
    dropout: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    ema: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in BASE_LR:
            raise ValueError(f"hpo.optimizer: unknown optimizer {self.optimizer!r} "
                             f"(known: {', '.join(BASE_LR)})")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"hpo.schedule: unknown schedule {self.schedule!r} "
                             f"(known: {', '.join(SCHEDULES)})")
        if self.batch_size < 1:
            raise ValueError(f"hpo.batch_size: must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"hpo.dropout: must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_decisions(cls, decisions: Mapping[str, Scalar] | None) -> Recipe:
        decisions = dict(decisions or {})
        optimizer = str(decisions.get("optimizer", cls.optimizer))
        if "lr" not in decisions and optimizer in BASE_LR:
            decisions["lr"] = BASE_LR[optimizer] * float(decisions.get("lr_scale", 1.0))
        kwargs: dict[str, Any] = {}  # each converted to its field's type below
        for field in fields(cls):
            if field.name in decisions:
                kwargs[field.name] = _convert(field.name, decisions[field.name],
                                              type(getattr(cls, field.name)))
        return cls(**kwargs)


def _convert(name: str, value: Scalar, kind: type) -> Scalar:
    try:
        return kind(value) if kind is not bool else _boolean(value)
    except (TypeError, ValueError):
        raise ValueError(f"hpo.{name}: expected {kind.__name__}, got {value!r}") from None


def _boolean(value: Scalar) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ValueError(value)


def build_optimizer(recipe: Recipe, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    params = list(params)
    # No weight decay on BatchNorm scales and biases (1-d tensors), as in
    # torchvision's references with --norm-weight-decay 0.
    groups: list[dict[str, Any]] = [{"params": [p for p in params if p.ndim > 1]},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True,
                               weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)


def lr_factor(step: int, total: int, recipe: Recipe) -> float:
    """Multiplier of the base lr at ``step``: linear warm-up, then the schedule."""
    warmup = int(recipe.warmup_fraction * total)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    if recipe.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if recipe.schedule == "step":
        return 0.1 ** (int(progress >= 0.5) + int(progress >= 0.75))
    return 1.0


def build_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, total_steps: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule (a trial is only a few epochs long)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, recipe))


def ema_decay(total_steps: int) -> float:
    """EMA decay for a run of ``total_steps``: 0.999, but never averaging over more than
    a tenth of the run (a short trial would otherwise evaluate mostly its random init)."""
    return min(0.999, 1.0 - 10.0 / max(total_steps, 11))
