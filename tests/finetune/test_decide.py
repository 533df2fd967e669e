"""The probe's decision: the gap rule, the estimated gap and its standard error, and the safe
choice when the evidence does not separate the subsets (hand-computed cases)."""
from __future__ import annotations

import numpy as np
import pytest

from dse.finetune.decide import budget_subset, decide
from dse.finetune.selective import default_probe_steps
from dse.finetune.subsets import subset_masks

MASKS = subset_masks(2)                    # [], [1], [2], [1, 2]
COSTS = np.array([0.0, 10.0, 1.0, 11.0])   # exit 1 is the expensive one


def crafted(fixed_by_exit1: int, n: int = 100):
    """2 exits, labels 0: exit 2's probe fixes 90 images, exit 1's ``fixed_by_exit1`` more.
    Probed scores: {} 0, {1} k / n, {2} 0.90, {1, 2} 0.90 + k / n."""
    base = np.zeros((2, n, 2))
    base[1, :, 0] = -1.0
    probe = base.copy()
    probe[1, :90, 0] = 1.0
    probe[0, 90:90 + fixed_by_exit1, 0] = 3.0
    return base, probe, np.zeros(n, dtype=int)


def test_budget_rule_takes_the_best_subset_it_can_afford():
    scores = np.array([0.0, 0.95, 0.90, 0.91])
    assert budget_subset(scores, COSTS, 0.8) == 2      # {1} (10 / 11 = 0.91) is over budget
    assert budget_subset(scores, COSTS, 0.95) == 1     # now it is not, and it scores best
    assert budget_subset(scores, COSTS, 1.0) == 1      # ... even against every exit
    assert budget_subset(np.array([0.5, 0.5, 0.5, 0.5]), COSTS, 1.0) == 0   # ties: cheaper


def test_estimated_gap_and_its_paired_standard_error():
    base, probe, y = crafted(1)
    d = decide(base, probe, y, MASKS, COSTS, "budget", max_gap_points=5.0)
    # {2} misses 1 of 100 images that {1, 2} gets: d = -1 on one image, 0 elsewhere;
    # sd = sqrt((0.99^2 + 99 * 0.01^2) / 99) = 0.1, se = 0.1 / sqrt(100) = 0.01 -> 1 point
    assert (d.index, d.rule_index, d.warning) == (2, 2, None)
    assert d.gap_points == pytest.approx(-1.0) and d.gap_se_points == pytest.approx(1.0)
    # every exit probed: 91 of 100 right against 0 -> gain 91 points, se = sd(c) / 10
    assert d.gain_points == pytest.approx(91.0)
    assert d.gain_se_points == pytest.approx(100 * np.std([1] * 91 + [0] * 9, ddof=1) / 10,
                                             abs=1e-4)


def test_a_gap_that_may_exceed_the_limit_falls_back_to_every_exit():
    base, probe, y = crafted(1)
    d = decide(base, probe, y, MASKS, COSTS, "budget", max_gap_points=2.0, probe_steps=30)
    # -1 - 2 * 1 = -3 points at the lower end: more than 2 points below re-training all
    assert d.rule_index == 2 and d.index == 3 and not d.decided
    assert "more than 2 points worse" in d.warning and "re-training every exit" in d.warning
    assert "rule budget" in d.warning and "give more probe steps" in d.warning
    assert (d.gap_points, d.gap_se_points) == (-1.0, 1.0)   # the rule's pick, as reported


def test_a_probe_that_learned_nothing_cannot_decide():
    base, _, y = crafted(0)
    d = decide(base, base.copy(), y, MASKS, COSTS, "budget", probe_steps=40)
    assert d.index == 3 and "40-step probe did not improve" in d.warning


def test_a_probe_below_the_floor_is_not_trusted():
    """The rotate case: a 9-step probe rated a subset above re-training every exit, and it
    finished 21.7 points below. Below 30 steps the safe choice is taken, whatever the scores."""
    base, probe, y = crafted(1)
    d = decide(base, probe, y, MASKS, COSTS, "budget", probe_steps=9, max_gap_points=5.0)
    assert d.rule_index == 2 and d.index == 3
    assert "a 9-step probe is too short" in d.warning and "BF -1.00" in d.warning
    assert decide(base, probe, y, MASKS, COSTS, "budget", probe_steps=30,
                  max_gap_points=5.0).warning is None


@pytest.mark.parametrize("steps,expected", [(300, 75), (100, 30), (1000, 250), (20, 20)])
def test_default_probe_steps(steps, expected):
    """25 % of the schedule, at least 30 steps (one epoch of digits is 9), at most all of it."""
    assert default_probe_steps(steps) == expected


def test_a_clearly_worse_pick_falls_back_without_asking_for_a_longer_probe():
    base, probe, y = crafted(5)                 # {2} trails {1, 2} by 5 points
    d = decide(base, probe, y, MASKS, COSTS, "budget", max_gap_points=2.0)
    assert d.rule_index == 2 and d.index == 3
    assert "picked BF, estimated -5.00" in d.warning and "more probe steps" not in d.warning
