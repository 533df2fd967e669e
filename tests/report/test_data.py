"""Study -> DataFrames: the front, counts, accuracy units, importances and their notes."""
from __future__ import annotations

import numpy as np
import optuna
import pytest

from dse.report.data import pareto_mask, study_frames


def test_pareto_mask_hand_example():
    # (accuracy up, latency down): B dominates A; C and B trade off; D duplicates C
    pts = np.array([[90, 2.0], [92, 1.5], [95, 3.0], [95, 3.0], [80, 3.5]])
    assert pareto_mask(pts, [True, False]).tolist() == [False, True, True, True, False]
    assert pareto_mask(np.zeros((0, 2)), [True, False]).tolist() == []


def test_frames_of_the_fake_study(fake_study):
    data = study_frames(fake_study, importances=False)
    assert data.counts["complete"] == 24 and data.counts["fail"] == 2
    assert len(data.trials) == 24 and list(data.failures.columns) == ["number", "reason"]
    assert data.failures["reason"].str.contains("nan").all()
    assert data.objectives == ["accuracy", "latency_ms", "macs"]
    assert data.maximize == [True, False, False]
    assert data.counts["feasible"] == int(data.trials["feasible"].sum()) > 0
    # the front: feasible, non-dominated on every objective, fastest first
    front = data.front
    assert len(front) >= 2 and front["feasible"].all()
    assert front["latency_ms"].is_monotonic_increasing
    feasible = data.trials[data.trials["feasible"]]
    mask = pareto_mask(feasible[["accuracy", "latency_ms", "macs"]].to_numpy(), data.maximize)
    assert sorted(feasible[mask]["number"]) == sorted(front["number"])


def test_front_is_the_one_pareto_csv_holds(fake_study):
    from dse.search.export import pareto_frame

    data = study_frames(fake_study, importances=False)
    assert data.front["number"].tolist() == pareto_frame(fake_study)["trial"].tolist()


def test_accuracies_are_percentages(fake_study):
    data = study_frames(fake_study, importances=False)
    row = data.trials.iloc[0]
    trial = fake_study.trials[0]
    assert row["val_accuracy"] == pytest.approx(trial.user_attrs["val_accuracy"])
    assert row["accuracy"] == pytest.approx(trial.values[0])
    assert row["per_exit_accuracy"][-1] == pytest.approx(98.5)
    assert data.backbone_accuracy == pytest.approx(98.5)


def test_importances_for_every_objective(fake_study):
    data = study_frames(fake_study)
    for name in data.objectives:
        imp = data.importances[name]
        assert isinstance(imp, dict) and sum(imp.values()) == pytest.approx(1.0)
        assert "convx_depth" not in imp  # only in some trials: not in the shared space


def test_importances_degrade_to_notes(tiny_study):
    data = study_frames(tiny_study)
    assert data.importances == {
        "accuracy": "needs at least 2 complete trials, the study has 1",
        "latency_ms": "needs at least 2 complete trials, the study has 1"}


def test_constant_objective_note(study_factory):
    study = study_factory(n_trials=4, objectives=("accuracy", "latency_ms"), n_failed=0)
    flat = optuna.create_study(directions=["maximize", "minimize"])
    for k, v in study.user_attrs.items():
        flat.set_user_attr(k, v)
    for t in study.trials:
        flat.add_trial(optuna.trial.create_trial(
            values=[90.0, t.values[1]], params=t.params, distributions=t.distributions,
            user_attrs=t.user_attrs))
    data = study_frames(flat)
    assert data.importances["accuracy"].startswith("every trial has the same value")
    assert isinstance(data.importances["latency_ms"], dict)


def test_empty_study(study_factory):
    study = study_factory(n_trials=0, n_failed=1)
    data = study_frames(study)
    assert data.trials.empty and data.front.empty and data.counts["fail"] == 1
