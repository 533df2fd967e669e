"""Assemble a multi-exit model from names and numbers, and account for its cost.

This is the one place that turns (backbone, exit count, placement, branch) into a concrete
``MultiExitNet`` with its placement and per-exit MACs; ``dse inspect``, ``dse latency``, the
search and full training all go through it. It sits in the cost layer, above
:mod:`dse.models`, because placing exits needs the backbone's MAC counts (:mod:`dse.cost.flops`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from dse.cost.flops import BackboneMacs, backbone_macs, branch_macs, exit_cum_macs, param_count
from dse.errors import ConfigError
from dse.models.backbones import Backbone, build_backbone, default_input_size, is_user_backbone
from dse.models.exits import build_branch, check_branch_params
from dse.models.multiexit import MultiExitNet, build_multiexit
from dse.models.placement import Placement, place


@dataclass(frozen=True)
class InputSpec:
    """What the backbone is fed: channels, square input size, and the number of classes."""

    in_channels: int
    input_size: int
    num_classes: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.input_size, self.input_size)


def default_input_spec(backbone: str, input_size: int | None = None,
                       num_classes: int | None = None, in_channels: int | None = None) -> InputSpec:
    """The usual input of a backbone when no dataset says otherwise."""
    size = input_size or default_input_size(backbone)
    if size is None:
        raise ConfigError(f"--backbone {backbone}: a user backbone needs --input-size or --dataset")
    if in_channels is None:
        in_channels = 1 if backbone == "digits-resnet" else 3
    if num_classes is None:
        num_classes = 1000 if size >= 128 and not is_user_backbone(backbone) else 10
    return InputSpec(in_channels, size, num_classes)


@dataclass
class Assembled:
    """A multi-exit model with its placement and cost accounting (batch 1, MACs)."""

    model: MultiExitNet
    inputs: InputSpec
    macs: BackboneMacs
    placement: Placement
    branch_macs: list[int]
    exit_macs: list[int]  # cumulative, early exits then final
    branch_params: list[int] = field(default_factory=list)

    @property
    def backbone(self) -> Backbone:
        return self.model.backbone

    @property
    def exit_fractions_of_final(self) -> list[float]:
        return [m / self.exit_macs[-1] for m in self.exit_macs]


def assemble(backbone: str | Backbone, inputs: InputSpec, num_exits: int = 0,
             placement: str = "pareto", branch: str = "pool",
             positions: Sequence[float | int] | None = None, checkpoint: str | None = None,
             branch_params: dict | None = None, macs: BackboneMacs | None = None) -> Assembled:
    """Build the backbone (or take a built one), place the exits and count MACs."""
    check_branch_params(branch, dict(branch_params or {}))  # fail on a bad name before building
    if positions and num_exits and len(positions) != num_exits:
        raise ConfigError(f"--exits {num_exits} but --positions gives {len(positions)} values; "
                          "give one position per exit (or leave out --exits)")
    if isinstance(backbone, str):
        backbone = build_backbone(backbone, num_classes=inputs.num_classes,
                                  in_channels=inputs.in_channels, checkpoint=checkpoint)
    macs = macs or backbone_macs(backbone, inputs.shape)
    if num_exits == 0 and placement != "explicit":
        where = Placement((), (), ())
    else:
        where = place_exits(backbone, macs, placement, num_exits, branch, inputs.num_classes,
                            positions, branch_params)
    model = build_multiexit(backbone, where.blocks, branch, inputs.num_classes, inputs.shape,
                            **(branch_params or {}))
    b_macs = [branch_macs(br, macs.block_out_shapes[b]) for br, b in zip(model.branches, where.blocks)]
    return Assembled(
        model=model, inputs=inputs, macs=macs, placement=where, branch_macs=b_macs,
        exit_macs=exit_cum_macs(macs.block_macs, macs.head_macs, where.blocks, b_macs),
        branch_params=[param_count(br) for br in model.branches],
    )


def place_exits(backbone: Backbone, macs: BackboneMacs, placement: str, num_exits: int,
                branch: str, num_classes: int, positions: Sequence[float | int] | None = None,
                branch_params: dict | None = None) -> Placement:
    """Run the placement rule on ``backbone``: its stem is skipped and each exit's own branch
    (built on the block's output shape) counts towards its target
    (:func:`dse.models.placement.place`)."""
    params = dict(branch_params or {})
    total = macs.total_macs or 1
    memo: dict[int, float] = {}

    def cost(block: int) -> float:
        if block not in memo:
            shape = tuple(macs.block_out_shapes[block])
            module = build_branch(branch, shape, num_classes, **params)
            memo[block] = branch_macs(module, shape) / total
        return memo[block]

    return place(placement, num_exits, macs.cum_fractions, positions, branch_cost=cost,
                 first_attach=backbone.first_attach)
