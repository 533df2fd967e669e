"""MobileNetV2 (Sandler et al., CVPR 2018), laid out as torchvision's; one block per stage unit."""
from __future__ import annotations

import torch
from torch import nn

from dse.models._base import Backbone, ClassifierHead, conv_bn_relu
from dse.models._registry import register_backbone

# (expansion t, channels c, repeats n, stride s) from Table 2 of the paper.
_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1)]


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear projection, residual if shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_relu(cin, hidden, 1, relu6=True))
        layers += [conv_bn_relu(hidden, hidden, 3, stride, groups=hidden, relu6=True),
                   conv_bn_relu(hidden, cout, 1, relu=False)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


@register_backbone("mobilenetv2", input_size=224)
def mobilenetv2(num_classes: int = 1000, in_channels: int = 3) -> Backbone:
    blocks: list[nn.Module] = [conv_bn_relu(in_channels, 32, 3, 2, relu6=True)]
    names = ["stem"]
    cin = 32
    for t, c, n, s in _SETTINGS:
        for i in range(n):
            blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
            names.append(f"ir{len(blocks) - 1}")
            cin = c
    blocks.append(conv_bn_relu(cin, 1280, 1, relu6=True))
    names.append("conv_last")
    return Backbone(blocks, ClassifierHead(1280, num_classes, dropout=0.2), names, name="mobilenetv2")
