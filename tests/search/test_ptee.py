"""The PTEEnet preset (search_spaces/ptee.yaml) and pseudo labels for validation."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

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
    before = evaluate_design(ctx, d, val_labels="pseudo")
    gt = replace(d, training=replace(d.training, labels="ground_truth"))
    gt_before = evaluate_design(ctx, gt)
    scored_on_truth = evaluate_design(ctx, d)
    _garble(ctx, "val", 1)
    _garble(ctx, "test", 2)
    after = evaluate_design(ctx, d, val_labels="pseudo")
    assert after.values == before.values and after.constraints == before.constraints
    assert after.variants(grid) == before.variants(grid)
    assert np.array_equal(after.refine_grid(), before.refine_grid())
    assert after.attrs["sweep"] == before.attrs["sweep"]
    # test labels are read, for the report only
    assert after.attrs["test_accuracy"] != before.attrs["test_accuracy"]
    # ground-truth labels do read val: the same garbage changes that design's objectives
    assert evaluate_design(ctx, gt).values != gt_before.values
    # ... and so does the pseudo-label design in a study scored on the ground truth
    assert evaluate_design(ctx, d).values != scored_on_truth.values


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


def test_the_study_scores_on_pseudo_labels_only_when_every_trial_trains_on_them():
    from dse.search.objective import scoring_labels
    from dse.search.space import unlabeled

    assert scoring_labels(load_space("default")) == "ground_truth"  # labels: [ground_truth, pseudo]
    assert scoring_labels(load_space("ptee")) == "pseudo"
    assert scoring_labels(unlabeled(load_space("default"))) == "pseudo"


def test_pseudo_label_trials_are_scored_on_the_ground_truth_beside_ground_truth_trials(
        tmp_path, search_args):
    """A space that mixes label sources scores every trial on the true val labels: the final
    exit (the frozen backbone) of a pseudo-label trial scores the backbone's own val accuracy,
    not 100 % (its agreement with itself)."""
    from click.testing import CliRunner

    from dse.cli import cli

    tiny = (Path(__file__).parent / "data" / "tiny.yaml").read_text()
    space = tmp_path / "mixed.yaml"
    space.write_text(tiny.replace("  steps: 20\n", "  steps: 20\n  labels: [ground_truth, pseudo]\n"))
    out = tmp_path / "m"
    args = search_args(out, "--study", "m", space=str(space), trials=8)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="m", storage=f"sqlite:///{out / 'study.db'}")
    backbone = study.user_attrs["backbone_val_accuracy"]
    assert backbone < 99.5  # a 2-epoch backbone: 100 % would not tell the label sources apart
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    labels = {t.user_attrs["config"]["training"]["labels"] for t in done}
    assert labels == {"ground_truth", "pseudo"}
    for t in done:
        assert t.user_attrs["per_exit_accuracy"][-1] == pytest.approx(backbone, abs=1e-3)
        assert t.user_attrs["val_accuracy"] < 100.0
