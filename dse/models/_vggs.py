"""VGG families: VGG-16 (Simonyan & Zisserman 2015) and the 3-block VGG-11 of Hirose et al."""
from __future__ import annotations

import torch
from torch import nn

from dse.models._base import Backbone
from dse.models._registry import register_backbone

_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGGHead(nn.Module):
    """Adaptive pool to ``pool`` x ``pool`` -> flatten -> FC layers with ReLU (and dropout)."""

    def __init__(self, channels: int, pool: int, hidden: list[int], num_classes: int,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(pool) if pool else nn.Identity()
        layers: list[nn.Module] = []
        features = channels * max(pool, 1) ** 2
        for width in hidden:
            layers += [nn.Linear(features, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            features = width
        layers.append(nn.Linear(features, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(x), 1))


@register_backbone("vgg16", input_size=224)
def vgg16(num_classes: int = 1000, in_channels: int = 3) -> Backbone:
    """VGG-16 as torchvision lays it out; one block per conv layer (a following pool joins it)."""
    blocks: list[nn.Module] = []
    names: list[str] = []
    cin = in_channels
    for item in _VGG16:
        if item == "M":
            blocks[-1].append(nn.MaxPool2d(2, 2))
            continue
        blocks.append(nn.Sequential(nn.Conv2d(cin, item, 3, padding=1), nn.ReLU(inplace=True)))
        names.append(f"conv{len(blocks)}")
        cin = item
    return Backbone(blocks, VGGHead(512, 7, [4096, 4096], num_classes), names, name="vgg16")


@register_backbone("vgg11-3block", input_size=32)
def vgg11_3block(num_classes: int = 10, in_channels: int = 3) -> Backbone:
    """conv-128 x2 + pool, conv-256 x2 + pool, conv-512 x2 + pool, fc-1024, fc-classes."""

    def stage(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
        )

    blocks = [stage(in_channels, 128), stage(128, 256), stage(256, 512)]
    # 32x32 inputs reach the head at 4x4; the adaptive pool keeps other sizes working.
    head = VGGHead(512, 4, [1024], num_classes, dropout=0.0)
    return Backbone(blocks, head, ["block1", "block2", "block3"], name="vgg11-3block")
