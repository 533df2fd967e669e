"""MSDNet: Multi-Scale Dense Networks (Huang et al., "Multi-Scale Dense Networks for Resource
Efficient Image Classification", ICLR 2018), with its own classifiers as the exits.

The network keeps S feature scales side by side (32/16/8 on CIFAR, 56/28/14/7 on ImageNet).
Every layer adds ``growth * gr_factor[s]`` channels to scale s, densely: the new features at
scale s come from scale s (a "normal" 3x3 unit) and, from the second scale on, also from scale
s - 1 (a "down" unit, stride 2), each unit a 1x1 bottleneck (width ``min(cin, bn_factor[s] *
cout)``) then a 3x3 conv, both conv-BN-ReLU (Figure 2 and section 4 of the paper). Deep layers
drop the finest scales ("prune max"): with L layers in all, layer l reads
``S - floor(max(0, l - 2) / ceil(L / S))`` scales and writes ``S - floor((l - 1) / ceil(L /
S))``; when it writes fewer than it reads, a transition (a 1x1 conv-BN-ReLU per scale) shrinks
every scale to ``floor(reduction * channels)``.

A classifier reads only the coarsest scale: two 3x3 stride-2 conv-BN-ReLU, average pooling and a
linear layer (128 channels in the convs on CIFAR, the input's channels on ImageNet).

How dse sees it: each of the paper's blocks (the layers between two classifiers; the first
block also holds the stem that makes the scales) is one backbone block; a block's output is the
list of its scales, finest first. :meth:`MultiScaleBackbone.exit_input` gives what an exit (and
the head) reads: the coarsest scale, so the feature cache, the MAC counts and the latency
traces see one tensor per attach point. The last classifier is the head; the others are early
exits of the ``msdnet`` branch type (:mod:`dse.models.exits`) after blocks ``0..n-2``.

Configurations (the reference code ``kalviny/MSDNet-PyTorch``, README and ``args.py``):

- ``msdnet-cifar``: 7 blocks, ``--base 4 --step 2 --stepmode even --nChannels 16
  --growthRate 6 --grFactor 1-2-4 --bnFactor 1-2-4 --prune max --reduction 0.5 --bottleneck``
  (the CIFAR-100 anytime setting; IMTA and HDKD report on it).
- ``msdnet-imagenet``: 5 blocks, ``--base 4 --step 4 --stepmode even --nChannels 32
  --growthRate 16 --grFactor 1-2-4-4 --bnFactor 1-2-4-4`` (the ImageNet setting of the
  README and of IMTA's scripts).

Our choices: the classifier pools with an adaptive average pool to 1x1 where the reference
uses ``AvgPool2d(2)``; on the paper's 32 and 224 px inputs the map there is 2x2 and the two are
the same op, and other input sizes (8x8 digits) still work. The ImageNet stem's 7x7 conv has no
bias (a batch norm follows it; the reference keeps one, 64 parameters).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from dse.models._base import Backbone, conv_bn_relu
from dse.models._registry import register_backbone


@dataclass(frozen=True)
class MSDNetSpec:
    """One MSDNet configuration (the reference's argument names in brackets)."""

    blocks: int                       # classifiers [nBlocks]
    base: int                         # layers before the first classifier [base]
    step: int                         # layers between classifiers [step]
    channels: int                     # first-scale channels of the stem [nChannels]
    growth: int                       # channels each layer adds, times gr_factor [growthRate]
    gr_factor: tuple[int, ...]        # per-scale width factors; len = scales [grFactor]
    bn_factor: tuple[int, ...]        # per-scale bottleneck factors [bnFactor]
    imagenet_stem: bool               # 7x7/2 conv + 3x3/2 max pool instead of a 3x3 conv
    classifier_width: int | None      # conv channels of a classifier (None: the input's)
    reduction: float = 0.5            # transition compression [reduction]
    lin_grow: bool = False            # steps grow as step * i + 1 [stepmode lin_grow]

    @property
    def scales(self) -> int:
        return len(self.gr_factor)

    @property
    def steps(self) -> list[int]:
        """Layers in each block."""
        more = [self.step * i + 1 if self.lin_grow else self.step for i in range(1, self.blocks)]
        return [self.base, *more]


CIFAR = MSDNetSpec(blocks=7, base=4, step=2, channels=16, growth=6, gr_factor=(1, 2, 4),
                   bn_factor=(1, 2, 4), imagenet_stem=False, classifier_width=128)
IMAGENET = MSDNetSpec(blocks=5, base=4, step=4, channels=32, growth=16, gr_factor=(1, 2, 4, 4),
                      bn_factor=(1, 2, 4, 4), imagenet_stem=True, classifier_width=None)


def _unit(cin: int, cout: int, stride: int, bn_width: int) -> nn.Sequential:
    """1x1 bottleneck (``min(cin, bn_width * cout)`` channels) then 3x3 conv, both conv-BN-ReLU."""
    inner = min(cin, bn_width * cout)
    return nn.Sequential(conv_bn_relu(cin, inner, 1), conv_bn_relu(inner, cout, 3, stride))


class Stem(nn.Module):
    """Makes the scales: the first from the image, each next one by a 3x3 stride-2 conv."""

    def __init__(self, in_channels: int, spec: MSDNetSpec) -> None:
        super().__init__()
        widths = [spec.channels * g for g in spec.gr_factor]
        first: nn.Module = (nn.Sequential(conv_bn_relu(in_channels, widths[0], 7, 2),
                                          nn.MaxPool2d(3, 2, 1))
                            if spec.imagenet_stem else conv_bn_relu(in_channels, widths[0]))
        self.convs = nn.ModuleList([first] + [conv_bn_relu(widths[s - 1], widths[s], 3, 2)
                                              for s in range(1, spec.scales)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for conv in self.convs:
            x = conv(x)
            out.append(x)
        return out


class ScaleUnit(nn.Module):
    """New features at one scale: ``normal`` from the same scale and, when a finer scale is
    read, ``down`` (stride 2) from it; half of the new channels each."""

    def __init__(self, normal: nn.Module, down: nn.Module | None) -> None:
        super().__init__()
        self.down = down          # registered first, as the reference's ConvDownNormal
        self.normal = normal

    def forward(self, here: torch.Tensor, finer: torch.Tensor | None) -> torch.Tensor:
        parts = [here] if self.down is None else [here, self.down(finer)]
        return torch.cat([*parts, self.normal(here)], dim=1)


class DenseLayer(nn.Module):
    """One MSDNet layer: reads ``in_scales`` scales, writes ``out_scales`` (the coarsest ones),
    each the concatenation of its input and the new features (dense connectivity)."""

    def __init__(self, n_in: int, spec: MSDNetSpec, in_scales: int, out_scales: int) -> None:
        super().__init__()
        g, bn, gr = spec.growth, spec.bn_factor, spec.gr_factor
        first = spec.scales - out_scales                 # absolute index of the first output
        self.dropped = in_scales - out_scales            # 1: the finest input feeds "down" only
        self.units = nn.ModuleList()
        for s in range(first, spec.scales):
            if s > first or self.dropped > 0:
                cout = g * gr[s] // 2
                self.units.append(ScaleUnit(_unit(n_in * gr[s], cout, 1, bn[s]),
                                            _unit(n_in * gr[s - 1], cout, 2, bn[s - 1])))
            else:
                self.units.append(ScaleUnit(_unit(n_in * gr[s], g * gr[s], 1, bn[s]), None))

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        # x holds the scales read; output j reads x[j + dropped] and its finer neighbour
        d = self.dropped
        return [unit(x[j + d], x[j + d - 1] if unit.down is not None else None)
                for j, unit in enumerate(self.units)]


class Transition(nn.Module):
    """A 1x1 conv-BN-ReLU per scale, shrinking scale s from ``n_in`` to ``n_out`` (times its
    gr_factor) channels."""

    def __init__(self, n_in: int, n_out: int, spec: MSDNetSpec, out_scales: int) -> None:
        super().__init__()
        first = spec.scales - out_scales
        gr = spec.gr_factor
        self.convs = nn.ModuleList(conv_bn_relu(n_in * gr[s], n_out * gr[s], 1)
                                   for s in range(first, spec.scales))

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(t) for conv, t in zip(self.convs, x)]


def classifier_features(channels: int, width: int | None) -> nn.Sequential:
    """The paper's classifier up to its linear layer: two 3x3 stride-2 conv-BN-ReLU (``width``
    channels, default the input's) and a global average pool, flattened."""
    width = width or channels
    return nn.Sequential(conv_bn_relu(channels, width, 3, 2), conv_bn_relu(width, width, 3, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


class ClassifierHead(nn.Module):
    """The last classifier, the backbone's head (reads the coarsest scale's tensor)."""

    def __init__(self, channels: int, width: int | None, num_classes: int) -> None:
        super().__init__()
        self.features = classifier_features(channels, width)
        self.fc = nn.Linear(width or channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class MultiScaleBackbone(Backbone):
    """A backbone whose blocks output a list of scales, finest first; exits and the head read
    the coarsest (:meth:`exit_input`)."""

    def exit_input(self, out: Sequence[torch.Tensor]) -> torch.Tensor:
        return out[-1]


def _scales_at(layer: int, total: int, scales: int) -> tuple[int, int]:
    """(scales read, scales written) by layer ``layer`` (1-based) of ``total``, prune 'max'."""
    interval = math.ceil(total / scales)
    return (scales - math.floor(max(0, layer - 2) / interval),
            scales - math.floor((layer - 1) / interval))


def build_msdnet(spec: MSDNetSpec, num_classes: int, in_channels: int, name: str
                 ) -> MultiScaleBackbone:
    """The blocks (layers between classifiers; the first holds the stem) and the last classifier."""
    total = sum(spec.steps)
    n_in, layer = spec.channels, 0
    blocks: list[nn.Module] = []
    for b, step in enumerate(spec.steps):
        layers: list[nn.Module] = [Stem(in_channels, spec)] if b == 0 else []
        for _ in range(step):
            layer += 1
            ins, outs = _scales_at(layer, total, spec.scales)
            layers.append(DenseLayer(n_in, spec, ins, outs))
            n_in += spec.growth
            if ins > outs and spec.reduction > 0:
                n_out = math.floor(spec.reduction * n_in)
                layers.append(Transition(n_in, n_out, spec, outs))
                n_in = n_out
        blocks.append(nn.Sequential(*layers))
    head = ClassifierHead(n_in * spec.gr_factor[-1], spec.classifier_width, num_classes)
    names = [f"block{b + 1}" for b in range(spec.blocks)]
    return MultiScaleBackbone(blocks, head, names, name=name)


@register_backbone("msdnet-cifar", input_size=32)
def msdnet_cifar(num_classes: int = 100, in_channels: int = 3) -> MultiScaleBackbone:
    """MSDNet for CIFAR: 7 classifiers, 3 scales (the exits' branch: ``msdnet``, width 128)."""
    return build_msdnet(CIFAR, num_classes, in_channels, "msdnet-cifar")


@register_backbone("msdnet-imagenet", input_size=224)
def msdnet_imagenet(num_classes: int = 1000, in_channels: int = 3) -> MultiScaleBackbone:
    """MSDNet for ImageNet: 5 classifiers, 4 scales, step 4 (the exits' branch: ``msdnet``)."""
    return build_msdnet(IMAGENET, num_classes, in_channels, "msdnet-imagenet")
