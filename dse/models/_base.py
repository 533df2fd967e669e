"""What every backbone family builds on: the :class:`Backbone` container and shared layers."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dse.errors import ConfigError


class Backbone(nn.Module):
    """An ordered list of blocks (attach points after each) and a head producing logits."""

    def __init__(self, blocks: Sequence[nn.Module], head: nn.Module,
                 block_names: Sequence[str] | None = None, name: str = "custom") -> None:
        super().__init__()
        if len(blocks) < 1:
            raise ConfigError(f"backbone {name!r} has no blocks")
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.block_names = list(block_names or [f"block{i}" for i in range(len(blocks))])
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(self.exit_input(x))

    def exit_input(self, out):  # noqa: ANN001, ANN201
        """What an exit after a block (and the head after the last) reads from the block's
        output: the output itself. A multi-scale backbone (MSDNet), whose blocks output a list
        of scales, returns the one tensor its classifiers read."""
        return out

    @property
    def first_attach(self) -> int:
        """The first block an exit may follow: 1 when block 0 is a stem (a lone conv layer,
        which the EENets reference never gives an exit), else 0."""
        return 1 if self.block_names and self.block_names[0] == "stem" else 0

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """What an exit reads after every block (:meth:`exit_input` of its output), in order."""
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(self.exit_input(x))
        return outs


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 relu: bool = True, relu6: bool = False) -> nn.Sequential:
    """Conv (no bias, same padding) -> BatchNorm -> ReLU or ReLU6 (or no activation)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU6(inplace=True) if relu6 else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ClassifierHead(nn.Module):
    """Global average pool -> flatten -> (dropout) -> linear."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))
