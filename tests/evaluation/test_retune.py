"""Threshold re-tuning rules (dse.evaluation.retune) against sweeps worked out by hand.

On the shared 3-exit example (conftest.py) with the ``learned`` criterion (exit iff conf >= t)
and cumulative exit costs [1, 2, 4], the global thresholds give (inputs n0..n3):

    t        exits taken      right          accuracy  expected cost
    0        1 1 1 1          T F T F        0.50      1.00
    0.125    1 1 1 1          T F T F        0.50      1.00
    0.25     1 1 1 2          T F T T        0.75      1.25
    0.5      1 2 1 3          T T T F        0.75      2.00
    0.75     1 2 3 3          T T T F        0.75      2.75
    0.875    1 3 3 3          T T T F        0.75      3.25
    1        3 3 3 3          T T T F        0.75      4.00

(-inf and +inf clip to 0 and 1; the final exit alone is 0.75 accurate.)
"""
from __future__ import annotations

import numpy as np
import pytest

from dse.errors import ConfigError
from dse.evaluation import evaluate, operating_points, random_outputs, retune
from dse.evaluation.retune import OperatingPoints, best_under, cheapest_within, compact

COSTS = [1.0, 2.0, 4.0]


def test_global_operating_points_match_the_hand_table(hand_outputs):
    p = operating_points(hand_outputs, "learned", COSTS, scheme="global", bounds=(0.0, 1.0))
    assert p.thresholds[:, 0].tolist() == [0, 0.125, 0.25, 0.5, 0.75, 0.875, 1]
    assert p.accuracy.tolist() == [0.5, 0.5, 0.75, 0.75, 0.75, 0.75, 0.75]
    assert p.cost.tolist() == [1.0, 1.0, 1.25, 2.0, 2.75, 3.25, 4.0]
    unclipped = operating_points(hand_outputs, "learned", COSTS, scheme="global")
    assert unclipped.thresholds[0, 0] == -np.inf and unclipped.thresholds[-1, 0] == np.inf


@pytest.mark.parametrize("max_cost, thresholds, accuracy, cost", [
    (1.0, (0.0,), 0.5, 1.0),      # tie at cost 1: the first (t = 0)
    (1.2, (0.0,), 0.5, 1.0),
    (1.25, (0.25,), 0.75, 1.25),
    (3.0, (0.25,), 0.75, 1.25),   # every 0.75 point fits: the cheapest
    (10.0, (0.25,), 0.75, 1.25),
])
def test_max_cost_takes_the_most_accurate_point_within_the_cost(hand_outputs, max_cost,
                                                                thresholds, accuracy, cost):
    r = retune(hand_outputs, "learned", COSTS, max_cost=max_cost, scheme="global")
    assert (r.thresholds, r.val_accuracy, r.val_cost, r.rule) == (thresholds, accuracy, cost,
                                                                   "max_cost")


@pytest.mark.parametrize("max_drop, thresholds, cost", [
    (0.0, (0.25,), 1.25),    # within 0 points of the final exit's 75 %: the cheapest 0.75 point
    (24.9, (0.25,), 1.25),
    (25.0, (0.0,), 1.0),     # 50 % is allowed: every input leaves at the first exit
])
def test_max_drop_takes_the_cheapest_point_within_the_drop(hand_outputs, max_drop, thresholds,
                                                           cost):
    r = retune(hand_outputs, "learned", COSTS, max_drop=max_drop, scheme="global")
    assert (r.thresholds, r.val_cost, r.rule) == (thresholds, cost, "max_drop")
    assert r.limit == pytest.approx(0.75 - max_drop / 100)


def test_ties_and_empty_sets():
    p = OperatingPoints(np.zeros((4, 1)), np.array([0.5, 0.9, 0.9, 0.7]),
                        np.array([1.0, 3.0, 2.0, 2.0]), np.zeros((4, 2)))
    assert best_under(p, 3.0) == 2          # 0.9 twice: the cheaper
    assert best_under(p, 1.9) == 0
    assert best_under(p, 0.5) is None
    assert cheapest_within(p, 0.7) == 2     # cost 2 twice: the more accurate (0.9)
    assert cheapest_within(p, 0.5) == 0
    assert cheapest_within(p, 0.95) is None
    p2 = OperatingPoints(np.zeros((3, 1)), np.array([0.7, 0.9, 0.8]),
                         np.array([2.0, 2.0, 2.0]), np.zeros((3, 2)))
    assert cheapest_within(p2, 0.6) == 1


def test_compact_keeps_one_value_when_all_exits_share_it():
    assert compact([0.5, 0.5, 0.5]) == (0.5,)
    assert compact(np.array([0.5, 0.25])) == (0.5, 0.25)


@pytest.mark.parametrize("criterion", ["maxprob", "entropy", "learned"])
def test_chosen_thresholds_reproduce_their_val_point_and_fit_a_config(criterion):
    val = random_outputs(n_samples=300, n_exits=4, n_classes=5, seed=3)
    costs = [1.0, 2.0, 3.5, 5.0]
    for kw in ({"max_cost": 2.5}, {"max_drop": 1.0}):
        r = retune(val, criterion, costs, unit="macs", **kw)
        assert all(0.0 <= t <= 1.0 for t in r.thresholds)
        res = evaluate(val, criterion, list(r.thresholds), exit_macs=costs)
        assert res.accuracy == pytest.approx(r.val_accuracy)
        assert res.expected_macs == pytest.approx(r.val_cost)
        if "max_cost" in kw:
            assert r.val_cost <= 2.5
            # per-exit candidates can only add to the global ones
            g = retune(val, criterion, costs, max_cost=2.5, scheme="global")
            assert r.val_accuracy >= g.val_accuracy
        else:
            assert 100 * r.val_accuracy >= 100 * val.correct()[-1].mean() - 1.0 - 1e-9


@pytest.mark.parametrize("kw, message", [
    ({"max_cost": 0.5}, "no thresholds meet 0.5 latency_ms on val: the cheapest point costs 1"),
    ({"max_cost": float("nan")}, "must be a finite number > 0"),
    ({"max_cost": -1.0}, "must be a finite number > 0"),
    ({"max_drop": -1.0}, "max_drop must be a finite number >= 0"),
    ({"max_drop": float("inf")}, "max_drop must be a finite number >= 0"),
    ({}, "give exactly one of max_cost and max_drop"),
    ({"max_cost": 1.0, "max_drop": 1.0}, "give exactly one of max_cost and max_drop"),
])
def test_bad_limits_raise_config_errors(hand_outputs, kw, message):
    with pytest.raises(ConfigError, match=message):
        retune(hand_outputs, "learned", COSTS, **kw)


def test_extra_candidates_count_so_the_configured_point_is_never_lost(hand_outputs):
    # per-exit (0.875, 0.75): n0 leaves at exit 1, n1 at exit 2, n2 and n3 at the final exit:
    # right T T T F = 0.75 at cost (1 + 2 + 4 + 4) / 4 = 2.75, the global t = 0.75 point
    p = operating_points(hand_outputs, "learned", COSTS, scheme="global", bounds=(0.0, 1.0),
                         extra=[[0.875, 0.75], [0.25, 1.0]])
    assert p.thresholds[-2:].tolist() == [[0.875, 0.75], [0.25, 1.0]]
    # (0.25, 1.0): n0, n1, n2 leave at exit 1 (T F T), n3 at the final exit (F): 0.5 at 1.75
    assert p.accuracy[-2:].tolist() == [0.75, 0.5]
    assert p.cost[-2:].tolist() == [2.75, 1.75]
