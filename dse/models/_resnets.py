"""ResNet families: CIFAR 6n+2 ResNets, ImageNet ResNet-18/34/50, and the small digits ResNet."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dse.models._base import Backbone, ClassifierHead, conv_bn_relu
from dse.models._registry import register_backbone


class PadShortcut(nn.Module):
    """Option-A shortcut of He et al. (2016): subsample by ``stride`` and zero-pad channels."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride, self.pad = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, half, self.pad - half))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (ReLU after the sum)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, shortcut: str = "conv") -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, 3, stride)
        self.conv2 = conv_bn_relu(cout, cout, 3, 1, relu=False)
        if stride == 1 and cin == cout:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "pad":
            self.shortcut = PadShortcut(cin, cout, stride)
        else:
            self.shortcut = conv_bn_relu(cin, cout, 1, stride, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride here, as torchvision's v1.5), 1x1 expand x4, residual."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = conv_bn_relu(cin, width, 1)
        self.conv2 = conv_bn_relu(width, width, 3, stride)
        self.conv3 = conv_bn_relu(width, cout, 1, relu=False)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else conv_bn_relu(cin, cout, 1, stride, relu=False))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


def _staged_basic(stem: nn.Module, cin: int, widths: list[int], depths: list[int],
                  strides: list[int], shortcut: str):
    blocks, names = [stem], ["stem"]
    for s, (w, d, st) in enumerate(zip(widths, depths, strides), start=1):
        for b in range(d):
            blocks.append(BasicBlock(cin, w, st if b == 0 else 1, shortcut))
            names.append(f"stage{s}.block{b + 1}")
            cin = w
    return blocks, names, cin


def cifar_resnet(depth: int, num_classes: int = 10, in_channels: int = 3) -> Backbone:
    """CIFAR ResNet with 6n+2 layers: stem + 3 stages x n basic blocks + pool/fc head."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    blocks, names, cout = _staged_basic(conv_bn_relu(in_channels, 16), 16, [16, 32, 64],
                                        [n, n, n], [1, 2, 2], "pad")
    return Backbone(blocks, ClassifierHead(cout, num_classes), names, name=f"resnet{depth}")


for _depth in (8, 20, 32, 44, 56, 110):
    register_backbone(f"resnet{_depth}", input_size=32)(
        lambda num_classes=10, in_channels=3, _d=_depth: cifar_resnet(_d, num_classes, in_channels)
    )


def _imagenet_stem(in_channels: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(in_channels, 64, 7, 2), nn.MaxPool2d(3, 2, 1))


def imagenet_resnet(depths: list[int], bottleneck: bool, num_classes: int, in_channels: int,
                    name: str) -> Backbone:
    """ResNet-18/34/50 laid out as torchvision's (stem, 4 stages, pool/fc head)."""
    widths, strides = [64, 128, 256, 512], [1, 2, 2, 2]
    if not bottleneck:
        blocks, names, cout = _staged_basic(_imagenet_stem(in_channels), 64, widths, depths,
                                            strides, "conv")
        return Backbone(blocks, ClassifierHead(cout, num_classes), names, name=name)
    blocks, names, cin = [_imagenet_stem(in_channels)], ["stem"], 64
    for s, (w, d, st) in enumerate(zip(widths, depths, strides), start=1):
        for b in range(d):
            blocks.append(Bottleneck(cin, w, st if b == 0 else 1))
            names.append(f"stage{s}.block{b + 1}")
            cin = w * Bottleneck.expansion
    return Backbone(blocks, ClassifierHead(cin, num_classes), names, name=name)


@register_backbone("resnet18", input_size=224)
def resnet18(num_classes: int = 1000, in_channels: int = 3) -> Backbone:
    return imagenet_resnet([2, 2, 2, 2], False, num_classes, in_channels, "resnet18")


@register_backbone("resnet34", input_size=224)
def resnet34(num_classes: int = 1000, in_channels: int = 3) -> Backbone:
    return imagenet_resnet([3, 4, 6, 3], False, num_classes, in_channels, "resnet34")


@register_backbone("resnet50", input_size=224)
def resnet50(num_classes: int = 1000, in_channels: int = 3) -> Backbone:
    return imagenet_resnet([3, 4, 6, 3], True, num_classes, in_channels, "resnet50")


@register_backbone("digits-resnet", input_size=8)
def digits_resnet(num_classes: int = 10, in_channels: int = 1) -> Backbone:
    """A small ResNet for 8x8 inputs: stem + 3 stages x 2 basic blocks (16/32/64 channels)."""
    blocks, names, cout = _staged_basic(conv_bn_relu(in_channels, 16), 16, [16, 32, 64],
                                        [2, 2, 2], [1, 2, 2], "conv")
    return Backbone(blocks, ClassifierHead(cout, num_classes), names, name="digits-resnet")
