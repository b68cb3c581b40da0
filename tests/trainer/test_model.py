"""The MBConv builder: every sampled nas decision set builds and runs; FLOPs track width."""

from __future__ import annotations

import random

import pytest
import torch

from ma2ml.spaces import build_agent
from ma2ml.trainer.model import build_model, count_flops, count_params

SAMPLES = 50


def _sample(preset: str, seed: int, options: dict[str, int] | None = None) -> list[dict]:
    space = build_agent("nas", preset, options)
    rng = random.Random(seed)
    return [space.decode([rng.randrange(n) for n in space.sizes]) for _ in range(SAMPLES)]


@pytest.mark.parametrize(("preset", "channels", "classes"),
                         [("mbconv-small", 1, 10), ("mbconv-imagenet", 3, 1000)])
def test_sampled_decisions_build_and_run_forward(preset: str, channels: int,
                                                 classes: int) -> None:
    """Each of 50 sampled decision sets builds and runs a 2-image forward pass at its own
    sampled resolution (160..256 px for the ImageNet preset)."""
    for decisions in _sample(preset, seed=len(preset)):
        model = build_model(decisions, in_channels=channels, num_classes=classes,
                            family=preset, dropout=0.1).eval()
        size = int(decisions["resolution"])
        assert model.resolution == size
        with torch.no_grad():
            logits = model(torch.randn(2, channels, size, size))
        assert logits.shape == (2, classes)
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("stages", [1, 5])
def test_stage_count_option(stages: int) -> None:
    for decisions in _sample("mbconv-small", seed=stages, options={"stages": stages})[:5]:
        model = build_model(decisions, in_channels=3, num_classes=10)
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("preset", ["mbconv-small", "mbconv-imagenet"])
def test_flops_and_params_grow_with_width(preset: str) -> None:
    base = {"s0_kernel": 3, "s0_expand": 4, "s0_depth": 2, "s1_kernel": 5, "s1_expand": 6,
            "s1_depth": 2, "s2_kernel": 3, "s2_expand": 3, "s2_depth": 1}
    flops, params = [], []
    for width in (0.75, 1.0, 1.25):
        model = build_model({**base, "width_mult": width}, in_channels=3, num_classes=10,
                            family=preset)
        flops.append(count_flops(model, 3, 64))
        params.append(count_params(model))
    assert flops == sorted(flops) and len(set(flops)) == 3
    assert params == sorted(params) and len(set(params)) == 3


def test_flops_grow_with_resolution_kernel_and_depth() -> None:
    def flops(**decisions: object) -> int:
        model = build_model(decisions, in_channels=1, num_classes=10)
        return count_flops(model, 1, model.resolution)

    assert flops(resolution=24) < flops(resolution=32)
    assert flops(s0_kernel=3) < flops(s0_kernel=7)
    assert flops(s1_depth=1) < flops(s1_depth=3)


def test_flop_count_matches_a_hand_count() -> None:
    """Stem only: a 3x3 conv of 1 -> 16 channels at stride 2 on 28 px is 14*14*16*9 MACs."""
    model = build_model({}, in_channels=1, num_classes=10)
    stem = model.features[0][0]
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        stem(torch.zeros(1, 1, 28, 28))
    assert counter.get_total_flops() == 2 * 14 * 14 * 16 * 9


def test_bad_family_and_too_many_stages() -> None:
    with pytest.raises(ValueError, match="unknown family 'resnet'"):
        build_model({}, in_channels=1, num_classes=10, family="resnet")
    too_deep = {f"s{i}_kernel": 3 for i in range(6)}
    with pytest.raises(ValueError, match="6 stages, but mbconv-small has at most 5"):
        build_model(too_deep, in_channels=1, num_classes=10)
