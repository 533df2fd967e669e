"""Run-configuration files: a :class:`~dse.design.types.RunConfig` as plain YAML and back.

``reports/<study>/configs/<trial>.yaml`` holds one of these; ``dse train``, ``dse finetune`` and
``dse evaluate`` read it back. The file is plain YAML so a person can edit it::

    dse_config: 1
    backbone: {name: digits-resnet, checkpoint: null, input_size: 8}
    dataset: digits
    seed: 0
    exits: {count: 3, placement: pareto, positions: null, blocks: [1, 3, 4],
            branch: pool, branch_params: {}}
    training: {loss: {name: kd, alpha: 0.5, temperature: 3.0, isc: false},
               steps: 300, lr: 0.003, labels: ground_truth, optimizer: adam, batch_size: 128}
    exit_policy: {criterion: maxprob, thresholds: [0.9, 0.9, 0.9]}
    search: {study: demo, trial: 12, profile: jetson-nano, ...}   # provenance, informational

``exits.blocks`` records where the placement rule landed on the backbone the search used, so a
re-run rebuilds exactly that model even if MAC accounting changes later. Values are checked by
the same checks the search space applies (the knobs of :mod:`dse.design.types`).
"""
from __future__ import annotations

from dataclasses import MISSING
from typing import Any

from dse.design.knobs import knob_fields
from dse.design.losses import LossSpec
from dse.design.types import CONFIG_VERSION, ExitDesign, ExitPolicy, RunConfig, TrainingSpec
from dse.models.exits import check_branch_params
from dse.yamlio import Section, read_yaml, write_yaml



def save_config(config: RunConfig, path: str, header: str = "") -> None:
    write_yaml(path, config.to_dict(), header=header)


def load_config(path: str) -> RunConfig:
    """Read and validate a run configuration file (one clear line per problem, exit 2)."""
    root = Section(read_yaml(path), path)
    version = root.int("dse_config", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise root.fail("dse_config", f"must be {CONFIG_VERSION}, got {version}")
    config = config_from_section(root)
    root.done()
    return config


def _knob_values(section: Section, cls: type) -> dict[str, Any]:
    """The knob fields of ``cls`` (not nested ones) read from ``section`` with their checks,
    canonical names and casts; absent keys take the field's default."""
    out: dict[str, Any] = {}
    for kf in knob_fields(cls):
        if "." in kf.path:
            continue
        if section.has(kf.name):
            value = section.get(kf.name)
        elif kf.default is MISSING:
            raise section.fail(kf.name, "is required")
        else:
            value = kf.default
        k = kf.knob
        value = k.check(value, section._where(kf.name))
        if k.registry is not None:
            value = k.registry.resolve(value)
        out[kf.name] = k.cast(value) if k.cast else value
    return out


def config_from_section(root: Section) -> RunConfig:
    """A RunConfig from a config file's (or a trial's stored) YAML data."""
    bb = root.section("backbone", required=True)
    backbone = bb.str("name")
    checkpoint = bb.str("checkpoint", None)
    input_size = bb.int("input_size", None, low=1)
    bb.done()
    dataset = root.str("dataset", "digits")
    seed = root.int("seed", 0)
    exits = _exits(root.section("exits", required=True), root.file)
    tr = root.section("training")
    loss = LossSpec.from_mapping(tr.get("loss", "ce"), where=f"{root.file}: training.loss")
    training = TrainingSpec(loss=loss, **_knob_values(tr, TrainingSpec))
    tr.done()
    policy = _policy(root.section("exit_policy"), len(exits.blocks) if exits.blocks is not None
                     else exits.count)
    provenance = root.get("search", {}) or {}
    if not isinstance(provenance, dict):
        raise root.fail("search", "must be a mapping")
    return RunConfig(backbone=backbone, dataset=dataset, checkpoint=checkpoint,
                     input_size=input_size, seed=seed, exits=exits, training=training,
                     policy=policy, provenance=tuple(provenance.items()))


def _exits(ex: Section, file: str) -> ExitDesign:
    values = _knob_values(ex, ExitDesign)
    positions = ex.list("positions", None)
    blocks = ex.list("blocks", None, non_empty=False)
    if blocks is not None:
        for b in blocks:
            if isinstance(b, bool) or not isinstance(b, int) or b < 0:
                raise ex.fail("blocks", f"must be a list of block indices >= 0, got {blocks!r}")
        if blocks != sorted(set(blocks)):
            raise ex.fail("blocks", f"must be strictly increasing, got {blocks!r}")
    bparams = ex.section("branch_params")
    params = dict(bparams.raw)
    bparams._used.update(params)
    check_branch_params(values["branch"], params, where=f"{file}: exits.branch_params")
    ex.done()
    return ExitDesign(positions=tuple(positions) if positions else None,
                      blocks=tuple(blocks) if blocks is not None else None,
                      branch_params=tuple(sorted(params.items())), **values)


def _policy(po: Section, n_early: int) -> ExitPolicy:
    criterion = _knob_values(po, ExitPolicy)["criterion"]
    thresholds = po.get("thresholds", [0.9])
    if isinstance(thresholds, (int, float)) and not isinstance(thresholds, bool):
        thresholds = [thresholds]
    if not isinstance(thresholds, list) or not thresholds or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) for t in thresholds):
        raise po.fail("thresholds", f"must be a number or a list of numbers, got {thresholds!r}")
    if not all(0 <= t <= 1 for t in thresholds):  # every criterion's score lies in [0, 1]
        raise po.fail("thresholds", f"must lie in [0, 1] (the range of every exit criterion's "
                                    f"score), got {thresholds!r}")
    if len(thresholds) not in (1, n_early):
        raise po.fail("thresholds", f"needs 1 or {n_early} values (one per early exit), "
                                    f"got {len(thresholds)}")
    po.done()
    return ExitPolicy(criterion, tuple(float(t) for t in thresholds))
