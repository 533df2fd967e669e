"""A run configuration: one concrete early-exit design, as ``dse search`` exports it.

``reports/<study>/configs/<trial>.yaml`` holds one of these; ``dse train``, ``dse finetune`` and
``dse evaluate`` read it back. The file is plain YAML so a person can edit it::

    dse_config: 1
    backbone: {name: digits-resnet, checkpoint: null, input_size: 8}
    dataset: digits
    seed: 0
    exits: {count: 3, placement: pareto, positions: null, blocks: [1, 3, 4],
            branch: pool, branch_params: {}}
    training: {loss: {name: kd, alpha: 0.5, temperature: 3.0, isc: false},
               labels: ground_truth, steps: 300, lr: 0.003, optimizer: adam, batch_size: 128}
    exit_policy: {criterion: maxprob, thresholds: [0.9, 0.9, 0.9]}
    search: {study: demo, trial: 12, profile: jetson-nano, ...}   # provenance, informational

``exits.blocks`` records where the placement rule landed on the backbone the search used, so a
re-run rebuilds exactly that model even if MAC accounting changes later.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from dse.errors import ConfigError
from dse.models.criteria import CRITERIA
from dse.models.exits import BRANCHES, check_branch_params
from dse.models.placement import PLACEMENTS
from dse.train.losses import LossSpec
from dse.yamlio import Section, read_yaml, write_yaml

CONFIG_VERSION = 1
LABEL_SOURCES = ("ground_truth", "pseudo")
OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class ExitDesign:
    """Structure: how many exits, placed by which rule, on which blocks, of which branch type."""

    count: int
    placement: str = "pareto"
    positions: tuple[float | int, ...] | None = None
    blocks: tuple[int, ...] | None = None  # resolved attach points (None until placed)
    branch: str = "pool"
    branch_params: tuple[tuple[str, int], ...] = ()

    @property
    def branch_kwargs(self) -> dict[str, int]:
        return dict(self.branch_params)


@dataclass(frozen=True)
class TrainingSpec:
    """How the exits are trained (proxy steps during search; epochs come from ``dse train``)."""

    loss: LossSpec = field(default_factory=LossSpec)
    labels: str = "ground_truth"
    steps: int = 300
    lr: float = 3e-3
    optimizer: str = "adam"
    batch_size: int = 128


@dataclass(frozen=True)
class ExitPolicy:
    """When an input leaves: the criterion and one threshold per early exit (or one global)."""

    criterion: str = "maxprob"
    thresholds: tuple[float, ...] = (0.9,)


@dataclass(frozen=True)
class RunConfig:
    backbone: str
    dataset: str
    exits: ExitDesign
    training: TrainingSpec = field(default_factory=TrainingSpec)
    policy: ExitPolicy = field(default_factory=ExitPolicy)
    checkpoint: str | None = None
    input_size: int | None = None
    seed: int = 0
    provenance: tuple[tuple[str, Any], ...] = ()

    def with_blocks(self, blocks: tuple[int, ...]) -> "RunConfig":
        return replace(self, exits=replace(self.exits, blocks=tuple(blocks)))

    def to_dict(self) -> dict[str, Any]:
        e, t, p = self.exits, self.training, self.policy
        return {
            "dse_config": CONFIG_VERSION,
            "backbone": {"name": self.backbone, "checkpoint": self.checkpoint,
                         "input_size": self.input_size},
            "dataset": self.dataset,
            "seed": self.seed,
            "exits": {"count": e.count, "placement": e.placement,
                      "positions": list(e.positions) if e.positions is not None else None,
                      "blocks": list(e.blocks) if e.blocks is not None else None,
                      "branch": e.branch, "branch_params": dict(e.branch_params)},
            "training": {"loss": {"name": t.loss.name, **t.loss.kwargs, "isc": t.loss.isc},
                         "labels": t.labels, "steps": t.steps, "lr": t.lr,
                         "optimizer": t.optimizer, "batch_size": t.batch_size},
            "exit_policy": {"criterion": p.criterion, "thresholds": list(p.thresholds)},
            "search": dict(self.provenance),
        }


def _plain(value: Any) -> Any:
    """numpy scalars and tuples -> plain YAML-safe python."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def save_config(config: RunConfig, path: str, header: str = "") -> None:
    write_yaml(path, _plain(config.to_dict()), header=header)


def load_config(path: str) -> RunConfig:
    """Read and validate a run configuration file (one clear line per problem, exit 2)."""
    root = Section(read_yaml(path), path)
    version = root.int("dse_config", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise root.fail("dse_config", f"must be {CONFIG_VERSION}, got {version}")
    config = config_from_section(root)
    root.done()
    return config


def config_from_section(root: Section) -> RunConfig:
    bb = root.section("backbone", required=True)
    backbone = bb.str("name")
    checkpoint = bb.str("checkpoint", None)
    input_size = bb.int("input_size", None, low=1)
    bb.done()
    dataset = root.str("dataset", "digits")
    seed = root.int("seed", 0)

    ex = root.section("exits", required=True)
    count = ex.int("count", low=0)
    placement = _name(ex, "placement", PLACEMENTS, "pareto")
    positions = ex.list("positions", None)
    blocks = ex.list("blocks", None, non_empty=False)
    if blocks is not None:
        for b in blocks:
            if isinstance(b, bool) or not isinstance(b, int) or b < 0:
                raise ex.fail("blocks", f"must be a list of block indices >= 0, got {blocks!r}")
        if blocks != sorted(set(blocks)):
            raise ex.fail("blocks", f"must be strictly increasing, got {blocks!r}")
    branch = _name(ex, "branch", BRANCHES, "pool")
    bparams = ex.section("branch_params")
    params = dict(bparams.raw)
    bparams._used.update(params)
    check_branch_params(branch, params, where=f"{root.file}: exits.branch_params")
    ex.done()

    tr = root.section("training")
    loss = LossSpec.from_mapping(tr.get("loss", "ce"), where=f"{root.file}: training.loss")
    training = TrainingSpec(
        loss=loss, labels=tr.str("labels", "ground_truth", LABEL_SOURCES),
        steps=tr.int("steps", 300, low=1), lr=tr.number("lr", 3e-3, low=0, low_open=True),
        optimizer=tr.str("optimizer", "adam", OPTIMIZERS),
        batch_size=tr.int("batch_size", 128, low=1),
    )
    tr.done()

    po = root.section("exit_policy")
    criterion = _name(po, "criterion", CRITERIA, "maxprob")
    thresholds = po.get("thresholds", [0.9])
    if isinstance(thresholds, (int, float)) and not isinstance(thresholds, bool):
        thresholds = [thresholds]
    if not isinstance(thresholds, list) or not thresholds or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) for t in thresholds):
        raise po.fail("thresholds", f"must be a number or a list of numbers, got {thresholds!r}")
    if not all(0 <= t <= 1 for t in thresholds):  # every criterion's score lies in [0, 1]
        raise po.fail("thresholds", f"must lie in [0, 1] (the range of every exit criterion's "
                                    f"score), got {thresholds!r}")
    n_early = len(blocks) if blocks is not None else count
    if len(thresholds) not in (1, n_early):
        raise po.fail("thresholds", f"needs 1 or {n_early} values (one per early exit), "
                                    f"got {len(thresholds)}")
    po.done()

    provenance = root.get("search", {}) or {}
    if not isinstance(provenance, dict):
        raise root.fail("search", "must be a mapping")
    return RunConfig(
        backbone=backbone, dataset=dataset, checkpoint=checkpoint, input_size=input_size, seed=seed,
        exits=ExitDesign(count, placement, tuple(positions) if positions else None,
                         tuple(blocks) if blocks is not None else None, branch,
                         tuple(sorted(params.items()))),
        training=training,
        policy=ExitPolicy(criterion, tuple(float(t) for t in thresholds)),
        provenance=tuple(provenance.items()),
    )


def _name(section: Section, key: str, registry, default: str) -> str:
    value = section.str(key, default)
    if value not in registry:
        raise section.fail(key, f"must be one of {', '.join(registry.names())}, got {value!r}")
    return registry.resolve(value)


def thresholds_for(policy: ExitPolicy, n_early: int) -> list[float]:
    """Expand a global threshold to one per early exit."""
    if len(policy.thresholds) == 1:
        return list(policy.thresholds) * n_early
    if len(policy.thresholds) != n_early:
        raise ConfigError(f"{n_early} early exits need {n_early} thresholds, "
                          f"got {len(policy.thresholds)}")
    return list(policy.thresholds)
