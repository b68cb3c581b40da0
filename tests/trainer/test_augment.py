"""Augmentation ops and policies on real batched tensors (Fashion-MNIST and random RGB)."""

from __future__ import annotations

import pytest
import torch

from ma2ml.spaces import AUGMENT_OPS
from ma2ml.trainer.augment import (
    MAX_MAGNITUDE,
    OPS,
    SIGNED,
    Policy,
    Step,
    apply_policy,
    apply_step,
    magnitude_value,
)

#: Ops without a magnitude, so magnitude 0 is not the identity for them.
NO_MAGNITUDE = {"autoContrast", "invert", "equalize"}


def _batch(channels: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(channels)
    return torch.randint(0, 256, (6, channels, 28, 28), dtype=torch.uint8, generator=generator)


def test_every_preset_op_is_implemented() -> None:
    assert set(OPS) == set(AUGMENT_OPS)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op", AUGMENT_OPS)
def test_op_keeps_shape_dtype_and_range(op: str, channels: int) -> None:
    images = _batch(channels)
    signs = torch.tensor([1.0, -1.0] * 3)
    for magnitude in (0, 5, MAX_MAGNITUDE):
        out = apply_step(images, Step(op, 1.0, magnitude), signs)
        assert out.shape == images.shape
        assert out.dtype == torch.uint8  # uint8 also bounds the range to 0..255
        assert out.device == images.device


@pytest.mark.parametrize("op", sorted(set(AUGMENT_OPS) - NO_MAGNITUDE))
def test_magnitude_zero_is_identity(op: str) -> None:
    images = _batch(3)
    out = apply_step(images, Step(op, 1.0, 0), torch.tensor([1.0, -1.0] * 3))
    assert torch.equal(out, images)


@pytest.mark.parametrize("op", sorted(set(AUGMENT_OPS) - NO_MAGNITUDE - {"identity"}))
def test_full_magnitude_changes_the_image(op: str) -> None:
    images = _batch(3)
    out = apply_step(images, Step(op, 1.0, MAX_MAGNITUDE), torch.ones(6))
    assert not torch.equal(out, images)


def test_autoaugment_ranges() -> None:
    assert magnitude_value("rotate", 9, 28) == pytest.approx(30.0)
    assert magnitude_value("shearX", 9, 28) == pytest.approx(0.3)
    assert magnitude_value("translateX", 9, 331) == pytest.approx(150.0)
    assert magnitude_value("posterize", 0, 28) == 8 and magnitude_value("posterize", 9, 28) == 4
    assert magnitude_value("solarize", 9, 28) == 0.0
    assert magnitude_value("brightness", 9, 28) == pytest.approx(0.9)
    assert set(AUGMENT_OPS) >= SIGNED


def test_signs_rotate_opposite_ways() -> None:
    image = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    image[..., 2:6, 10:18] = 255  # a bar near the top
    both = image.expand(2, -1, -1, -1).contiguous()
    out = apply_step(both, Step("rotate", 1.0, 9), torch.tensor([1.0, -1.0]))
    assert not torch.equal(out[0], out[1])
    assert torch.equal(out[0].flip(-1), out[1])  # mirror images of each other


def test_policy_draws_one_sub_policy_per_image() -> None:
    policy = Policy(((Step("invert", 1.0, 0),), (Step("identity", 1.0, 0),)))
    images = _batch(1).repeat(20, 1, 1, 1)
    out = policy(images, torch.Generator().manual_seed(0))
    inverted = (out == 255 - images).flatten(1).all(1)
    unchanged = (out == images).flatten(1).all(1)
    assert bool((inverted | unchanged).all())
    assert 0 < int(inverted.sum()) < len(images)  # both sub-policies were drawn


def test_probability_zero_and_one() -> None:
    images = _batch(1)
    never = Policy(((Step("invert", 0.0, 0),),))
    always = Policy(((Step("invert", 1.0, 0),),))
    assert torch.equal(never(images), images)
    assert torch.equal(always(images), 255 - images)


def test_policy_is_reproducible_with_a_seed() -> None:
    decisions = {"sp0_op0": "rotate", "sp0_prob0": 0.5, "sp0_mag0": 7,
                 "sp0_op1": "cutout", "sp0_prob1": 0.5, "sp0_mag1": 5,
                 "sp1_op0": "solarize", "sp1_prob0": 0.8, "sp1_mag0": 4,
                 "sp1_op1": "posterize", "sp1_prob1": 0.6, "sp1_mag1": 9}
    policy = Policy.from_decisions(decisions)
    assert len(policy.sub_policies) == 2 and len(policy.sub_policies[0]) == 2
    images = _batch(1).repeat(8, 1, 1, 1)
    first = policy(images, torch.Generator().manual_seed(1))
    second = policy(images, torch.Generator().manual_seed(1))
    assert torch.equal(first, second)
    assert not torch.equal(first, images)


def test_empty_policy_is_identity() -> None:
    images = _batch(1)
    assert torch.equal(Policy.from_decisions({})(images), images)


def test_bad_decisions_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"aug\.sp0_op0: unknown op 'blur'"):
        Policy.from_decisions({"sp0_op0": "blur"})
    with pytest.raises(ValueError, match=r"aug\.sp0_mag0: must be in \[0, 9\]"):
        Policy.from_decisions({"sp0_op0": "rotate", "sp0_prob0": 1.0, "sp0_mag0": 12})


def test_apply_policy_refuses_float_batches() -> None:
    with pytest.raises(ValueError, match="expected a uint8 batch"):
        apply_policy(torch.zeros(2, 1, 8, 8), Policy(((Step("invert", 1.0, 0),),)))
