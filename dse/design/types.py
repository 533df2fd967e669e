"""The typed design of an early-exit network: what a trial decodes into and a config file holds.

- :class:`ExitDesign`: how many exits, placed by which rule, on which blocks, of which branch.
- :class:`TrainingSpec`: how the exits are trained (loss, labels, steps, optimizer, ...).
- :class:`ExitPolicy`: when an input leaves (criterion and thresholds).
- :class:`Design`: the three together; one search trial is one Design.
- :class:`RunConfig`: a Design bound to a backbone (name, checkpoint, input size), a dataset
  and a seed, with the exit blocks resolved: what ``configs/trial_N.yaml`` holds and what
  ``dse train``, ``dse evaluate`` and ``dse finetune`` take (:mod:`dse.design.files`).

Fields declared with :func:`~dse.design.knobs.knob` are searchable dimensions.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from dse.design.checks import number, one_of
from dse.design.knobs import knob
from dse.design.losses import LossSpec
from dse.models.criteria import CRITERIA, per_exit_thresholds
from dse.models.exits import BRANCHES
from dse.models.placement import PLACEMENTS
from dse.yamlio import to_plain

#: version of the config-file format (:mod:`dse.design.files`)
CONFIG_VERSION = 1
LABEL_SOURCES = ("ground_truth", "pseudo")
OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class ExitDesign:
    """Structure: how many exits, placed by which rule, on which blocks, of which branch type."""

    count: int = knob(param="exits", section="exits", key="count", check=number(1, integer=True))
    placement: str = knob("pareto", param="placement", section="exits",
                          check=one_of(PLACEMENTS, "placement rule"), ranges=False,
                          registry=PLACEMENTS)
    #: explicit placement: one MAC fraction (or block index) per exit, ascending
    positions: tuple[float | int, ...] | None = None
    #: resolved attach points (None until the placement rule ran on a backbone)
    blocks: tuple[int, ...] | None = None
    branch: str = knob("pool", param="branch", section="branch", key="type",
                       check=one_of(BRANCHES, "branch type"), ranges=False, registry=BRANCHES)
    #: the branch type's own parameters as sorted (name, value) pairs
    branch_params: tuple[tuple[str, int], ...] = ()

    @property
    def branch_kwargs(self) -> dict[str, int]:
        return dict(self.branch_params)


@dataclass(frozen=True)
class TrainingSpec:
    """How the exits are trained (proxy steps during search; epochs come from ``dse train``)."""

    loss: LossSpec = field(default_factory=LossSpec)
    #: optimizer steps of proxy training
    steps: int = knob(300, param="steps", section="training", check=number(1, integer=True),
                      cast=int)
    lr: float = knob(3e-3, param="lr", section="training", check=number(0, low_open=True),
                     real=True, cast=float)
    #: ground_truth, or pseudo: the backbone's own predictions (works without labels)
    labels: str = knob("ground_truth", param="labels", section="training",
                       check=one_of(LABEL_SOURCES, "label source"), ranges=False)
    optimizer: str = knob("adam", param="optimizer", section="training",
                          check=one_of(OPTIMIZERS, "optimizer"), ranges=False)
    batch_size: int = knob(128, param="batch_size", section="training",
                           check=number(1, integer=True), cast=int)
    #: L2 weight decay of the exits' optimizer (0: none, as the proxy always trained)
    weight_decay: float = knob(0.0, param="weight_decay", section="training", check=number(0),
                               real=True, cast=float)


@dataclass(frozen=True)
class ExitPolicy:
    """When an input leaves: the criterion and one threshold per early exit (or one global)."""

    criterion: str = knob("maxprob", param="criterion", section="exit_policy",
                          check=one_of(CRITERIA, "exit criterion"), ranges=False,
                          registry=CRITERIA)
    thresholds: tuple[float, ...] = (0.9,)

    def per_exit(self, num_early: int) -> list[float]:
        """One threshold per early exit (a global threshold repeated)."""
        return per_exit_thresholds(self.thresholds, num_early)

    @property
    def threshold_arg(self) -> float | list[float]:
        """The global threshold as a number, per-exit thresholds as a list (evaluation's form)."""
        return self.thresholds[0] if len(self.thresholds) == 1 else list(self.thresholds)


@dataclass(frozen=True)
class Design:
    """One early-exit design: structure, training and exit policy (one search trial)."""

    exits: ExitDesign
    training: TrainingSpec = field(default_factory=TrainingSpec)
    policy: ExitPolicy = field(default_factory=ExitPolicy)

    def with_blocks(self, blocks: tuple[int, ...]) -> Design:
        return replace(self, exits=replace(self.exits, blocks=tuple(blocks)))

    def with_thresholds(self, thresholds: tuple[float, ...]) -> Design:
        return replace(self, policy=replace(self.policy, thresholds=tuple(float(t) for t in thresholds)))


@dataclass(frozen=True)
class RunConfig:
    """A :class:`Design` on a backbone and dataset: one concrete, trainable configuration."""

    backbone: str
    dataset: str
    exits: ExitDesign
    training: TrainingSpec = field(default_factory=TrainingSpec)
    policy: ExitPolicy = field(default_factory=ExitPolicy)
    checkpoint: str | None = None
    input_size: int | None = None
    seed: int = 0
    #: where the config came from (study, trial, its metrics): informational
    provenance: tuple[tuple[str, Any], ...] = ()

    @property
    def design(self) -> Design:
        return Design(self.exits, self.training, self.policy)

    @classmethod
    def from_design(cls, design: Design, *, backbone: str, dataset: str,
                    checkpoint: str | None = None, input_size: int | None = None, seed: int = 0,
                    provenance: tuple[tuple[str, Any], ...] = ()) -> RunConfig:
        return cls(backbone=backbone, dataset=dataset, exits=design.exits,
                   training=design.training, policy=design.policy, checkpoint=checkpoint,
                   input_size=input_size, seed=seed, provenance=tuple(provenance))

    def with_blocks(self, blocks: tuple[int, ...]) -> RunConfig:
        return replace(self, exits=replace(self.exits, blocks=tuple(blocks)))

    def to_dict(self) -> dict[str, Any]:
        """The config-file form (plain python; :mod:`dse.design.files` reads it back)."""
        e, t, p = self.exits, self.training, self.policy
        training = {f.name: getattr(t, f.name) for f in fields(TrainingSpec) if f.name != "loss"}
        return to_plain({
            "dse_config": CONFIG_VERSION,
            "backbone": {"name": self.backbone, "checkpoint": self.checkpoint,
                         "input_size": self.input_size},
            "dataset": self.dataset,
            "seed": self.seed,
            "exits": {"count": e.count, "placement": e.placement, "positions": e.positions,
                      "blocks": e.blocks, "branch": e.branch,
                      "branch_params": dict(e.branch_params)},
            "training": {"loss": t.loss.to_plain(), **training},
            "exit_policy": {"criterion": p.criterion, "thresholds": p.thresholds},
            "search": dict(self.provenance),
        })
