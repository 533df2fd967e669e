"""Threshold refinement: which variants extend the front, and what gets enqueued."""
from __future__ import annotations

import optuna
import pytest
from dse.search.dims import Choice, Range
from dse.search.refine import candidate_values, enqueue_variants, hv_gains, pick
from dse.search.space import parse_space

MAXMIN = ["maximize", "minimize"]
SPACE = {"exits": {"count": 1}, "exit_policy": {"criterion": "maxprob",
                                                  "threshold": {"maxprob": [0.6, 0.7, 0.8, 0.9]}}}


def test_pick_prefers_the_largest_hypervolume_gain():
    front = [[90.0, 1.0], [95.0, 2.0]]
    candidates = [[89.0, 1.5],    # dominated by (90, 1.0): no gain
                  [93.0, 1.2],    # fills the gap: gain 0.342 (scaled to the joint range)
                  [96.0, 1.9],    # dominates (95, 2.0): gain 0.100
                  [96.0, 1.9]]    # duplicate of the previous one
    assert pick(front, candidates, MAXMIN, k=3) == [1, 2]
    assert pick(front, candidates, MAXMIN, k=1) == [1]
    assert pick(front, [[80.0, 3.0]], MAXMIN, k=2) == []
    assert pick([], [[80.0, 3.0]], MAXMIN, k=2) == [0]


def test_hv_gains_are_marginal():
    import numpy as np

    gains = hv_gains(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.5, 0.5], [2.0, 2.0]]))
    # joint range [0, 2] x [0, 2], reference 1.1 after scaling: (0.25, 0.25) adds 0.25 x 0.25
    assert gains[0] == pytest.approx(0.0625) and gains[1] == pytest.approx(0.0)


def test_candidate_values():
    assert candidate_values(Choice((0.6, 0.9)), [0.1, 0.5]) == [0.6, 0.9]
    assert candidate_values(Range(0.5, 0.9), [0.1, 0.6, 0.7, 0.95]) == [0.5, 0.6, 0.7, 0.9]


def test_enqueue_variants_adds_front_extending_thresholds_within_the_budget():
    space = parse_space(SPACE, "inline")
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["accuracy", "latency_ms"])
    dist = {"threshold_maxprob": optuna.distributions.CategoricalDistribution([0.6, 0.7, 0.8, 0.9])}
    study.add_trial(optuna.trial.create_trial(params={"threshold_maxprob": 0.9}, distributions=dist,
                                              values=[95.0, 2.0]))
    own = [94.0, 1.5]  # the running trial, threshold 0.8
    thresholds = [0.6, 0.7, 0.8, 0.9]
    values = [[80.0, 0.5], [90.0, 1.0], own, [95.0, 2.0]]
    done = enqueue_variants(study, space, {"threshold_maxprob": 0.8}, own, thresholds, values,
                            [True, True, True, True], target=10, k=2, source=1)
    assert sorted(done) == [0.6, 0.7]  # 0.8 is the trial itself, 0.9 already ran
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert sorted(t.system_attrs["fixed_params"]["threshold_maxprob"] for t in waiting) == [0.6, 0.7]
    assert all(t.user_attrs["refined_from"] == 1 for t in waiting)
    # no room left: 1 complete + 2 waiting = target 3
    assert enqueue_variants(study, space, {"threshold_maxprob": 0.8}, own, thresholds, values,
                            [True] * 4, target=3, k=2) == []
    # infeasible variants are never enqueued
    study2 = optuna.create_study(directions=["maximize", "minimize"])
    assert enqueue_variants(study2, space, {"threshold_maxprob": 0.8}, own, thresholds, values,
                            [False] * 4, target=10) == []


def test_no_refinement_for_per_exit_or_fixed_thresholds():
    fixed = parse_space({"exits": {"count": 1}, "exit_policy": {"threshold": {"maxprob": 0.9}}}, "x")
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert enqueue_variants(study, fixed, {}, [90, 1], [0.5], [[99, 0.1]], [True], 10) == []
