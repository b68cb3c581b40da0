"""MBConv networks built from the nas agent's decisions, with FLOPs and parameter counts.

Two families share one builder (MobileNetV2 / FBNet style inverted
residual blocks): ``small`` for 24..32 px inputs (Fashion-MNIST, CIFAR) and
``imagenet`` for 160..256 px inputs. Each stage ``s`` takes its kernel size,
expansion ratio and depth from ``s{s}_kernel``, ``s{s}_expand``, ``s{s}_depth``;
``width_mult`` scales every channel count; ``resolution`` is the input size
the trainer resizes images to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import Conv2dNormActivation

from ma2ml.spaces import Scalar


@dataclass(frozen=True)
class Family:
    """Fixed skeleton of a network family: stem, per-stage channels and strides, head."""

    stem_channels: int
    stem_stride: int
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    head_channels: int
    default_resolution: int


#: 28 px -> 14 after the stem: narrow, cheap stages so a CPU trial takes seconds.
SMALL = Family(16, 2, (24, 40, 80, 112, 160), (1, 2, 2, 1, 2), 256, 28)
#: MobileNetV2's skeleton (one stage fewer at the bottom, as in FBNet).
IMAGENET = Family(32, 2, (16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 2, 1, 2, 1), 1280, 224)
FAMILIES = {"mbconv-small": SMALL, "mbconv-imagenet": IMAGENET}
#: Used for absent nas decisions (and by a search without a nas agent).
DEFAULT_STAGE = {"kernel": 3, "expand": 4, "depth": 2}
DEFAULT_STAGES = 3


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of 8 without losing more than 10% (MobileNet)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, 1x1 project, skip when shapes match."""

    def __init__(self, cin: int, cout: int, kernel: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(Conv2dNormActivation(cin, hidden, 1, activation_layer=nn.ReLU6))
        layers += [
            Conv2dNormActivation(hidden, hidden, kernel, stride, groups=hidden,
                                 activation_layer=nn.ReLU6),
            Conv2dNormActivation(hidden, cout, 1, activation_layer=None),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block(x)
        return x + out if self.residual else out


class MBConvNet(nn.Module):
    def __init__(self, features: nn.Sequential, head_channels: int, num_classes: int,
                 dropout: float, resolution: int) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(head_channels, num_classes))
        self.resolution = resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(torch.flatten(self.pool(self.features(x)), 1))
        return logits


def stage_count(decisions: Mapping[str, Scalar]) -> int:
    count = 0
    while f"s{count}_kernel" in decisions or f"s{count}_expand" in decisions:
        count += 1
    return count or DEFAULT_STAGES


def build_model(decisions: Mapping[str, Scalar] | None, *, in_channels: int, num_classes: int,
                family: str = "mbconv-small", dropout: float = 0.0) -> MBConvNet:
    """The network for one set of nas decisions (absent decisions take defaults)."""
    if family not in FAMILIES:
        raise ValueError(f"nas preset: unknown family {family!r} (known: {', '.join(FAMILIES)})")
    skeleton, decisions = FAMILIES[family], decisions or {}
    width = float(decisions.get("width_mult", 1.0))
    stages = stage_count(decisions)
    if stages > len(skeleton.channels):
        raise ValueError(f"nas: {stages} stages, but {family} has at most "
                         f"{len(skeleton.channels)}")
    cin = make_divisible(skeleton.stem_channels * width)
    layers: list[nn.Module] = [Conv2dNormActivation(in_channels, cin, 3, skeleton.stem_stride,
                                                    activation_layer=nn.ReLU6)]
    for s in range(stages):
        kernel, expand, depth = (int(decisions.get(f"s{s}_{key}", DEFAULT_STAGE[key]))
                                 for key in ("kernel", "expand", "depth"))
        cout = make_divisible(skeleton.channels[s] * width)
        for block in range(depth):
            stride = skeleton.strides[s] if block == 0 else 1
            layers.append(MBConv(cin, cout, kernel, expand, stride))
            cin = cout
    # The head does not shrink below its base width (as in MobileNetV2).
    head = make_divisible(skeleton.head_channels * max(1.0, width))
    layers.append(Conv2dNormActivation(cin, head, 1, activation_layer=nn.ReLU6))
    resolution = int(decisions.get("resolution", skeleton.default_resolution))
    return MBConvNet(nn.Sequential(*layers), head, num_classes, dropout, resolution)


def count_flops(model: nn.Module, in_channels: int, resolution: int) -> int:
    """FLOPs of one forward pass on one image (``torch.utils.flop_counter``: 2 per MAC)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_channels, resolution, resolution, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
