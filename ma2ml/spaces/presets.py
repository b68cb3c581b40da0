"""Built-in search-space presets (DESIGN.md section 4), kept as data.

Each preset is a function of a few integer options returning decisions.
Decision names are the contract with the trainer: ``trainer/augment.py``,
``trainer/model.py`` and ``trainer/recipe.py`` read exactly these names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ma2ml.spaces.base import Decision, SpaceError

#: AutoAugment's operations (Cubuk et al. 2019) plus identity and cutout.
AUGMENT_OPS: tuple[str, ...] = (
    "identity", "shearX", "shearY", "translateX", "translateY", "rotate",
    "autoContrast", "invert", "equalize", "solarize", "posterize", "contrast",
    "color", "brightness", "sharpness", "cutout",
)
#: Probability grid: 0.0 .. 1.0 in 11 steps.
AUGMENT_PROBS: tuple[float, ...] = tuple(round(i / 10, 1) for i in range(11))
#: Magnitude grid 0 .. 9, mapped to each op's range by the worker.
AUGMENT_MAGNITUDES: tuple[int, ...] = tuple(range(10))


def autoaugment(sub_policies: int = 5, ops_per_sub_policy: int = 2) -> list[Decision]:
    """K sub-policies of (op, probability, magnitude) pairs: ``sp{k}_{op|prob|mag}{j}``."""
    decisions = []
    for k in range(sub_policies):
        for j in range(ops_per_sub_policy):
            decisions += [
                Decision(f"sp{k}_op{j}", AUGMENT_OPS),
                Decision(f"sp{k}_prob{j}", AUGMENT_PROBS),
                Decision(f"sp{k}_mag{j}", AUGMENT_MAGNITUDES),
            ]
    return decisions


def _mbconv(stages: int, depths: tuple[int, ...], widths: tuple[float, ...],
            resolutions: tuple[int, ...]) -> list[Decision]:
    decisions = []
    for s in range(stages):
        decisions += [
            Decision(f"s{s}_kernel", (3, 5, 7)),
            Decision(f"s{s}_expand", (1, 3, 4, 6)),
            Decision(f"s{s}_depth", depths),
        ]
    return decisions + [Decision("width_mult", widths), Decision("resolution", resolutions)]


def mbconv_small(stages: int = 3) -> list[Decision]:
    """MBConv net for 28x28 / 32x32 inputs (Fashion-MNIST, CIFAR)."""
    return _mbconv(stages, (1, 2, 3), (0.5, 0.75, 1.0, 1.25), (24, 28, 32))


def mbconv_imagenet(stages: int = 6) -> list[Decision]:
    """FBNet/MobileNetV2-like MBConv net for ImageNet-size inputs."""
    return _mbconv(stages, (1, 2, 3, 4), (0.75, 1.0, 1.25), (160, 192, 224, 256))


_COMMON_RECIPE = [
    Decision("weight_decay", (0.0, 1e-5, 5e-5, 1e-4, 5e-4)),
    Decision("batch_size", (64, 128, 256)),
    Decision("label_smoothing", (0.0, 0.05, 0.1)),
    Decision("warmup_fraction", (0.0, 0.05, 0.1)),
    Decision("schedule", ("cosine", "step", "constant")),
    Decision("dropout", (0.0, 0.1, 0.2, 0.3)),
    Decision("mixup_alpha", (0.0, 0.2, 0.4)),
    Decision("cutmix_alpha", (0.0, 0.5, 1.0)),
    Decision("ema", (False, True)),
]


def recipe_sgd() -> list[Decision]:
    """SGD with Nesterov momentum; learning rate on a log grid."""
    return [
        Decision("optimizer", ("sgd",)),
        Decision("lr", (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)),
        *_COMMON_RECIPE,
    ]


def recipe_adamw() -> list[Decision]:
    """AdamW; learning rate on a log grid."""
    return [
        Decision("optimizer", ("adamw",)),
        Decision("lr", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)),
        *_COMMON_RECIPE,
    ]


def recipe() -> list[Decision]:
    """Both optimizers; ``lr_scale`` multiplies the optimizer's base rate
    (SGD 0.1, AdamW 1e-3) so one factorised decision suits both."""
    return [
        Decision("optimizer", ("sgd", "adamw")),
        Decision("lr_scale", (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)),
        *_COMMON_RECIPE,
    ]


@dataclass(frozen=True)
class Preset:
    """A named preset: its builder, the agent role it fits, and its options."""

    name: str
    build: Callable[..., list[Decision]]
    role: str
    options: Mapping[str, tuple[str, int, int, int]] = field(default_factory=dict)
    """spec option name -> (builder keyword, default, minimum, maximum)."""
    description: str = ""

    def decisions(self, options: Mapping[str, Any] | None = None) -> list[Decision]:
        kwargs = {}
        for key, value in (options or {}).items():
            if key not in self.options:
                known = ", ".join(sorted(self.options)) or "none"
                raise SpaceError(f"unknown option of preset {self.name!r} (known: {known})",
                                 ("options", key))
            keyword, _default, low, high = self.options[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise SpaceError(f"must be an integer in [{low}, {high}], got {value!r}",
                                 ("options", key))
            kwargs[keyword] = value
        return self.build(**kwargs)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("autoaugment", autoaugment, "aug",
               {"subPolicies": ("sub_policies", 5, 1, 25),
                "opsPerSubPolicy": ("ops_per_sub_policy", 2, 1, 4)},
               "AutoAugment-style policy: K sub-policies of (op, prob, magnitude) pairs"),
        Preset("mbconv-small", mbconv_small, "nas", {"stages": ("stages", 3, 1, 5)},
               "MBConv network for 28/32 px inputs"),
        Preset("mbconv-imagenet", mbconv_imagenet, "nas", {"stages": ("stages", 6, 1, 7)},
               "MBConv network for ImageNet-size inputs"),
        Preset("recipe-sgd", recipe_sgd, "hpo", description="SGD+Nesterov training recipe"),
        Preset("recipe-adamw", recipe_adamw, "hpo", description="AdamW training recipe"),
        Preset("recipe", recipe, "hpo", description="training recipe over SGD and AdamW"),
    )
}
