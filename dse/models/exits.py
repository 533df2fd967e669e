"""Exit branch registry: plain, pool, bnpool, convx, msdnet.

Every branch maps a block's feature map to ``(logits [N, K], confidence [N])``. The confidence
head is ``sigmoid(FC)`` as in EENets (Demir 2019), so it lies in [0, 1]:

- ``plain``:  flatten -> two FC heads (class, confidence).
- ``pool``:   global average pool -> two FC heads.
- ``bnpool``: BatchNorm -> ReLU -> global average pool -> two FC heads.
- ``convx``:  ``depth`` x (conv3x3 -> BN -> ReLU, ``width`` channels) -> global average pool ->
  two FC heads (the ConvX branches of post-trained early exits; width defaults to the input's).
- ``msdnet``: MSDNet's classifier (Huang et al., ICLR 2018): 2 x (conv3x3 stride 2 -> BN ->
  ReLU, ``width`` channels) -> global average pool -> two FC heads. The paper uses width 128 on
  CIFAR and the input's channels (the default) on ImageNet; on an MSDNet backbone it reads the
  coarsest scale, as the paper's classifiers do.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from dse.errors import ConfigError
from dse.models._msdnet import classifier_features
from dse.registry import Registry

def _plugin(name: str, builder: Callable[..., "ExitBranch"]) -> Callable[..., "ExitBranch"]:
    """An installed branch (entry point group ``dse.branches``): ``builder(in_shape,
    num_classes, **params)``; its optional ``PARAMS`` attribute declares the parameters like
    :data:`BRANCH_PARAMS`."""
    BRANCH_PARAMS[name] = dict(getattr(builder, "PARAMS", {}))
    return builder


BRANCHES: Registry[Callable[..., "ExitBranch"]] = Registry("branch", "dse.branches", _plugin)

#: Parameters each branch accepts, with (type, minimum); the search space and configs check these.
BRANCH_PARAMS: dict[str, dict[str, tuple[type, int]]] = {
    "plain": {}, "pool": {}, "bnpool": {}, "convx": {"depth": (int, 1), "width": (int, 1)},
    "msdnet": {"width": (int, 1)},
}


class ExitBranch(nn.Module):
    """``features`` (branch-specific) -> flat vector -> class logits and a sigmoid confidence."""

    def __init__(self, features: nn.Module, dim: int, num_classes: int) -> None:
        super().__init__()
        self.features = features
        self.classifier = nn.Linear(dim, num_classes)
        self.confidence = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(x)
        return self.classifier(z), torch.sigmoid(self.confidence(z)).squeeze(1)


def _gap() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


@BRANCHES.register("plain")
def plain(in_shape: tuple[int, int, int], num_classes: int) -> ExitBranch:
    c, h, w = in_shape
    return ExitBranch(nn.Flatten(1), c * h * w, num_classes)


@BRANCHES.register("pool")
def pool(in_shape: tuple[int, int, int], num_classes: int) -> ExitBranch:
    return ExitBranch(_gap(), in_shape[0], num_classes)


@BRANCHES.register("bnpool")
def bnpool(in_shape: tuple[int, int, int], num_classes: int) -> ExitBranch:
    c = in_shape[0]
    return ExitBranch(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), _gap()), c, num_classes)


@BRANCHES.register("convx")
def convx(in_shape: tuple[int, int, int], num_classes: int, depth: int = 1,
          width: int | None = None) -> ExitBranch:
    cin = in_shape[0]
    width = width or cin
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        cin = width
    return ExitBranch(nn.Sequential(*layers, _gap()), width, num_classes)


@BRANCHES.register("msdnet")
def msdnet(in_shape: tuple[int, int, int], num_classes: int,
           width: int | None = None) -> ExitBranch:
    return ExitBranch(classifier_features(in_shape[0], width), width or in_shape[0], num_classes)


def check_branch_params(name: str, params: dict, where: str = "branch") -> dict:
    """Validate ``params`` for branch ``name``; raise ConfigError naming the bad key/value."""
    allowed = BRANCH_PARAMS[BRANCHES.resolve(name)]
    for key, value in params.items():
        if key not in allowed:
            valid = ", ".join(allowed) or "none"
            raise ConfigError(f"{where}: branch {name!r} takes no parameter {key!r} (valid: {valid})")
        kind, low = allowed[key]
        if value is None:
            continue
        if not isinstance(value, kind) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{where}: {key} must be an integer >= {low}, got {value!r}")
    return params


def build_branch(name: str, in_shape: tuple[int, int, int], num_classes: int, **params) -> ExitBranch:
    check_branch_params(name, params)
    return BRANCHES.get(name)(tuple(in_shape), num_classes, **params)
