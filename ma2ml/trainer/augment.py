"""AutoAugment-style policies applied to whole batches on the training device.

A policy is K sub-policies of (op, probability, magnitude) steps, read from
the aug agent's decisions ``sp{k}_op{j}``, ``sp{k}_prob{j}``, ``sp{k}_mag{j}``.
Each image draws one sub-policy; each step applies with its probability.
Rather than looping over images, the images that share a (step, sign) are
transformed together with one ``torchvision.transforms.v2.functional`` call,
so a batch costs at most ``K * steps * 2`` kernel launches and no PIL work.

Magnitudes 0..9 map to AutoAugment's published ranges (Cubuk et al. 2019;
torchvision's ``AutoAugment`` table): magnitude 0 leaves the image unchanged
for every op that has a magnitude.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as F

from ma2ml.spaces import Scalar

MAX_MAGNITUDE = 9
#: Ops whose magnitude is applied with a random sign per image.
SIGNED = frozenset({"shearX", "shearY", "translateX", "translateY", "rotate",
                    "contrast", "color", "brightness", "sharpness"})


def magnitude_value(op: str, magnitude: int, image_size: int) -> float:
    """The op's parameter at a 0..9 magnitude (AutoAugment's ranges)."""
    m = magnitude / MAX_MAGNITUDE
    if op in ("shearX", "shearY"):
        return 0.3 * m  # shear factor; degrees = atan(factor)
    if op in ("translateX", "translateY"):
        return 150 / 331 * image_size * m  # pixels
    if op == "rotate":
        return 30.0 * m  # degrees
    if op in ("contrast", "color", "brightness", "sharpness"):
        return 0.9 * m  # enhancement factor is 1 +- this
    if op == "posterize":
        return float(8 - round(magnitude / (MAX_MAGNITUDE / 4)))  # bits kept, 8..4
    if op == "solarize":
        return 256.0 * (1 - m)  # threshold; 256 inverts nothing
    if op == "cutout":
        return 0.5 * image_size * m  # side of the square cut out, pixels
    return 0.0


def _affine(x: torch.Tensor, **kwargs: object) -> torch.Tensor:
    params = {"angle": 0.0, "translate": [0.0, 0.0], "scale": 1.0, "shear": [0.0, 0.0], **kwargs}
    out: torch.Tensor = F.affine(x, interpolation=F.InterpolationMode.NEAREST,
                                 fill=[128.0] * x.shape[-3],
                                 center=[0.0, 0.0] if "shear" in kwargs else None, **params)
    return out


def _solarize(x: torch.Tensor, threshold: float) -> torch.Tensor:
    return x if threshold > 255 else F.solarize(x, threshold)


def cutout(x: torch.Tensor, size: float, generator: torch.Generator | None = None
           ) -> torch.Tensor:
    """Grey square of side ``size`` at an independent random centre per image."""
    side = int(round(size))
    if side <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), generator=generator).to(x.device)
    cx = torch.randint(0, w, (n, 1, 1), generator=generator).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys - cy).abs() * 2 < side) & ((xs - cx).abs() * 2 < side)
    return x.masked_fill(inside.unsqueeze(1), 128)


def _shear_degrees(value: float) -> float:
    return float(torch.rad2deg(torch.atan(torch.tensor(value))))


#: op name -> function(batch, signed parameter) -> batch
OPS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "identity": lambda x, v: x,
    "shearX": lambda x, v: _affine(x, shear=[_shear_degrees(v), 0.0]),
    "shearY": lambda x, v: _affine(x, shear=[0.0, _shear_degrees(v)]),
    "translateX": lambda x, v: _affine(x, translate=[v, 0.0]),
    "translateY": lambda x, v: _affine(x, translate=[0.0, v]),
    "rotate": lambda x, v: F.rotate(x, v, fill=[128.0] * x.shape[-3]),
    "autoContrast": lambda x, v: F.autocontrast(x),
    "invert": lambda x, v: F.invert(x),
    "equalize": lambda x, v: F.equalize(x),
    "solarize": _solarize,
    "posterize": lambda x, v: F.posterize(x, int(v)),
    "contrast": lambda x, v: F.adjust_contrast(x, 1.0 + v),
    "color": lambda x, v: F.adjust_saturation(x, 1.0 + v),
    "brightness": lambda x, v: F.adjust_brightness(x, 1.0 + v),
    "sharpness": lambda x, v: F.adjust_sharpness(x, 1.0 + v),
    "cutout": cutout,
}


@dataclass(frozen=True)
class Step:
    op: str
    probability: float
    magnitude: int


@dataclass(frozen=True)
class Policy:
    """Sub-policies of steps; ``Policy(())`` is the identity."""

    sub_policies: tuple[tuple[Step, ...], ...]

    @classmethod
    def from_decisions(cls, decisions: Mapping[str, Scalar] | None) -> Policy:
        """Build from ``sp{k}_op{j}`` / ``sp{k}_prob{j}`` / ``sp{k}_mag{j}`` values."""
        decisions = decisions or {}
        subs = []
        k = 0
        while f"sp{k}_op0" in decisions:
            steps, j = [], 0
            while f"sp{k}_op{j}" in decisions:
                steps.append(_step(decisions, k, j))
                j += 1
            subs.append(tuple(steps))
            k += 1
        return cls(tuple(subs))

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        return apply_policy(images, self, generator)


def _step(decisions: Mapping[str, Scalar], k: int, j: int) -> Step:
    op = str(decisions[f"sp{k}_op{j}"])
    if op not in OPS:
        raise ValueError(f"aug.sp{k}_op{j}: unknown op {op!r} (known: {', '.join(OPS)})")
    probability = float(decisions.get(f"sp{k}_prob{j}", 1.0))
    magnitude = int(decisions.get(f"sp{k}_mag{j}", 0))
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"aug.sp{k}_prob{j}: must be in [0, 1], got {probability}")
    if not 0 <= magnitude <= MAX_MAGNITUDE:
        raise ValueError(f"aug.sp{k}_mag{j}: must be in [0, {MAX_MAGNITUDE}], got {magnitude}")
    return Step(op, probability, magnitude)


def apply_step(images: torch.Tensor, step: Step, signs: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply one step to every image of ``images`` (signs: +-1 per image for signed ops)."""
    value = magnitude_value(step.op, step.magnitude, images.shape[-1])
    if step.op == "cutout":  # the only op with per-image randomness of its own
        return cutout(images, value, generator)
    fn = OPS[step.op]
    if step.op not in SIGNED or signs is None:
        return fn(images, value)
    out = images.clone()
    for sign in (1.0, -1.0):
        chosen = (signs == sign).nonzero().squeeze(1)
        if len(chosen):
            out[chosen] = fn(images[chosen], sign * value)
    return out


def apply_policy(images: torch.Tensor, policy: Policy,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a uint8 batch ``(N, C, H, W)``: one random sub-policy per image."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a uint8 batch (N, C, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    if not policy.sub_policies:
        return images
    n = images.shape[0]
    # Random draws on the CPU generator keep runs reproducible on any device.
    which = torch.randint(len(policy.sub_policies), (n,), generator=generator)
    out = images.clone()
    for k, steps in enumerate(policy.sub_policies):
        rows = (which == k).nonzero().squeeze(1)
        for step in steps:
            if not len(rows) or step.probability == 0.0 or step.op == "identity":
                continue
            hit = rows[torch.rand(len(rows), generator=generator) < step.probability]
            if not len(hit):
                continue
            signs = torch.where(torch.rand(len(hit), generator=generator) < 0.5, 1.0, -1.0)
            index = hit.to(images.device)
            out[index] = apply_step(out[index], step, signs.to(images.device), generator)
    return out
