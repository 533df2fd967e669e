"""The PTEEnet preset (search_spaces/ptee.yaml) and pseudo labels for validation."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import optuna
import pytest
import torch

from dse.search.context import StudySettings, build_context
from dse.search.objective import evaluate_design
from dse.search.space import load_space


def test_ptee_trials_use_the_cost_aware_loss_a_confidence_head_and_pseudo_labels():
    space = load_space("ptee")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        d = space.suggest(study.ask())
        assert d.training.loss.name == "eenet"           # cost-aware loss ...
        assert d.policy.criterion == "learned"           # ... read through the confidence head
        assert d.training.labels == "pseudo"
        assert d.exits.branch == "convx" and 1 <= d.exits.branch_kwargs["depth"] <= 3
        assert len(d.policy.thresholds) == 1             # the threshold knob
    lam = space.param("eenet_lam").dim
    assert lam.high == 1.5



def _garble(ctx, split: str, seed: int) -> None:
    labels = ctx.features.split(split).labels
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():  # the cache's tensors are inference tensors
        labels.copy_(torch.randint(0, 10, labels.shape, generator=gen))


@pytest.mark.slow
def test_pseudo_labels_never_read_val_or_test_labels_for_tuning(checkpoint, search_cache):
    ctx = build_context(StudySettings(checkpoint=checkpoint, space_file="ptee", max_samples=300,
                                      max_drop=1.0), log=None, progress=False)
    space = load_space("ptee")
    d = space.suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3)).ask())
    d = replace(d, exits=replace(d.exits, count=2, placement="pareto", positions=None),
                training=replace(d.training, steps=20))
    grid = [0.3, 0.5, 0.7, 0.9]
    before = evaluate_design(ctx, d)
    gt = replace(d, training=replace(d.training, labels="ground_truth"))
    gt_before = evaluate_design(ctx, gt)
    _garble(ctx, "val", 1)
    _garble(ctx, "test", 2)
    after = evaluate_design(ctx, d)
    assert after.values == before.values and after.constraints == before.constraints
    assert after.variants(grid) == before.variants(grid)
    assert np.array_equal(after.refine_grid(), before.refine_grid())
    assert after.attrs["sweep"] == before.attrs["sweep"]
    # test labels are read, for the report only
    assert after.attrs["test_accuracy"] != before.attrs["test_accuracy"]
    # ground-truth labels do read val: the same garbage changes that design's objectives
    assert evaluate_design(ctx, gt).values != gt_before.values


def test_search_unlabeled_trains_and_tunes_every_trial_on_pseudo_labels(tmp_path, search_args):
    from click.testing import CliRunner

    from dse.cli import cli
    from dse.design import load_config

    out = tmp_path / "u"
    args = search_args(out, "--unlabeled", "--study", "u", trials=3)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="u", storage=f"sqlite:///{out / 'study.db'}")
    assert study.user_attrs["space"]["training"]["labels"] == "pseudo"  # workers follow it
    configs = sorted((out / "configs").glob("*.yaml"))
    assert configs and all(load_config(str(c)).training.labels == "pseudo" for c in configs)
