"""Training recipes from hpo decisions, and the reward."""

from __future__ import annotations

import pytest
import torch

from ma2ml.spec import Objective
from ma2ml.trainer.recipe import Recipe, build_optimizer, ema_decay, lr_factor
from ma2ml.trainer.reward import compute_reward


def test_defaults_when_no_hpo_agent() -> None:
    assert Recipe.from_decisions(None) == Recipe()


def test_lr_scale_multiplies_the_optimizer_base_rate() -> None:
    assert Recipe.from_decisions({"optimizer": "sgd", "lr_scale": 0.5}).lr == pytest.approx(0.05)
    assert Recipe.from_decisions({"optimizer": "adamw", "lr_scale": 4.0}).lr == pytest.approx(4e-3)
    assert Recipe.from_decisions({"optimizer": "adamw", "lr": 3e-4}).lr == pytest.approx(3e-4)


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"hpo.optimizer: unknown optimizer 'lamb' \(known: sgd, "
                                         r"adamw\)"):
        Recipe.from_decisions({"optimizer": "lamb"})
    with pytest.raises(ValueError, match=r"hpo.schedule: unknown schedule 'poly'"):
        Recipe.from_decisions({"schedule": "poly"})
    with pytest.raises(ValueError, match=r"hpo.batch_size: expected int, got 'big'"):
        Recipe.from_decisions({"batch_size": "big"})


def test_optimizers() -> None:
    params = list(torch.nn.Linear(4, 2).parameters())
    sgd = build_optimizer(Recipe(weight_decay=1e-4), params)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    assert [g["weight_decay"] for g in sgd.param_groups] == [1e-4, 0.0]  # none on biases
    adamw = build_optimizer(Recipe(optimizer="adamw", lr=1e-3), params)
    assert isinstance(adamw, torch.optim.AdamW)


def test_schedules() -> None:
    cosine = Recipe(warmup_fraction=0.1)
    assert lr_factor(0, 100, cosine) < lr_factor(9, 100, cosine) <= 1.0  # warm-up
    assert lr_factor(10, 100, cosine) == pytest.approx(1.0)
    assert lr_factor(99, 100, cosine) < 0.01
    step = Recipe(schedule="step")
    assert [lr_factor(s, 100, step) for s in (0, 60, 80)] == pytest.approx([1.0, 0.1, 0.01])
    assert lr_factor(99, 100, Recipe(schedule="constant")) == 1.0


def test_ema_decay_suits_short_runs() -> None:
    assert ema_decay(100) == pytest.approx(0.9)
    assert ema_decay(1_000_000) == 0.999


def test_reward_is_accuracy_or_mnasnet_shaped() -> None:
    assert compute_reward(0.8, 1e6, Objective()) == 0.8
    shaped = Objective(flops_target=1e6, flops_exponent=-0.07)
    assert compute_reward(0.8, 1e6, shaped) == pytest.approx(0.8)
    assert compute_reward(0.8, 2e6, shaped) == pytest.approx(0.8 * 2 ** -0.07)
    assert compute_reward(0.8, 5e5, shaped) > 0.8
