"""The shared reward of a trained pipeline (DESIGN.md section 3)."""

from __future__ import annotations

from ma2ml.spec import Objective


def compute_reward(accuracy: float, flops: float, objective: Objective) -> float:
    """Validation accuracy, or MnasNet's ``acc * (flops / target) ** w`` with a FLOPs target.

    ``w <= 0``: a pipeline above the target is penalised, one below it
    slightly rewarded (Tan et al. 2019, soft constraint). An accuracy outside
    [0, 1] is a trainer's bug, never a reward: it raises ``ValueError``.
    """
    if not 0.0 <= accuracy <= 1.0:  # also refuses NaN
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy!r}")
    if objective.flops_target is None:
        return float(accuracy)
    if flops <= 0:
        raise ValueError(f"flops must be positive to shape the reward, got {flops}")
    return float(accuracy * (flops / objective.flops_target) ** objective.flops_exponent)
