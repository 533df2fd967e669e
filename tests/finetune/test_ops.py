"""Training-operation accounting on a hand-counted example.

Three exits, batch 4:
  F = (10, 20, 5) forward MACs per sample, P = (100, 200, 50) parameters,
  R = (1000, 2000, 3000) frozen-backbone MACs to reach each classifier.
One step training all exits:  4 * 3 * (10 + 20 + 5) + 350 = 420 + 350 = 770 MACs,
  with the backbone forward:  4 * (3000 + 105) + 350 = 12770.
One step training exit 1 only: 4 * 30 + 100 = 220; with the backbone: 4 * (1000 + 30) + 100 = 4220.
Schedule S = 10 steps, probe s = 2:
  entire = 10 * 770 = 7700; selective {exit 1} = 2 * 770 + 8 * 220 = 3300 -> ratio 3/7;
  with the backbone: entire 127700, selective 2 * 12770 + 8 * 4220 = 59300;
  restarting the subset instead of continuing: 2 * 770 + 10 * 220 = 3740.
"""
from __future__ import annotations

import pytest

from dse.finetune.ops import ExitTrainCost, entire_ops, ops_ratio, selective_ops, step_ops

COSTS = [ExitTrainCost(10, 100, 1000), ExitTrainCost(20, 200, 2000), ExitTrainCost(5, 50, 3000)]
FIRST = [True, False, False]


def test_one_step():
    assert step_ops(COSTS, [True] * 3, 4) == 770
    assert step_ops(COSTS, [True] * 3, 4, backbone_forward=True) == 12770
    assert step_ops(COSTS, FIRST, 4) == 220
    assert step_ops(COSTS, FIRST, 4, backbone_forward=True) == 4220
    assert step_ops(COSTS, [False] * 3, 4, backbone_forward=True) == 0


def test_entire_and_selective():
    assert entire_ops(COSTS, 10, 4) == 7700
    assert selective_ops(COSTS, FIRST, 2, 10, 4) == 3300
    assert ops_ratio(COSTS, FIRST, 2, 10, 4) == pytest.approx(3 / 7)
    assert entire_ops(COSTS, 10, 4, backbone_forward=True) == 127700
    assert selective_ops(COSTS, FIRST, 2, 10, 4, backbone_forward=True) == 59300
    assert selective_ops(COSTS, FIRST, 2, 10, 4, continue_from_probe=False) == 3740


def test_choosing_everything_costs_the_same_as_entire():
    assert ops_ratio(COSTS, [True] * 3, 2, 10, 4) == pytest.approx(1.0)
    assert ops_ratio(COSTS, [False] * 3, 2, 10, 4) == pytest.approx(0.2)  # the probe alone


def test_errors():
    with pytest.raises(ValueError, match="probe steps"):
        selective_ops(COSTS, FIRST, 11, 10, 4)
    with pytest.raises(ValueError, match="trained flags"):
        step_ops(COSTS, [True], 4)
