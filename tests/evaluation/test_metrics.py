"""Exit assignment and metrics on the hand-made example (see conftest.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dse.errors import ConfigError
from dse.evaluation import ExitOutputs, evaluate, exit_assignment


@pytest.mark.parametrize("thresholds, expected", [
    (0.5, [0, 1, 0, 2]),           # .5 >= .5 is a tie: input 3 exits at exit 1
    (0.51, [0, 1, 2, 2]),
    ([0.9, 0.3], [1, 1, 2, 2]),    # per exit: nobody at exit 1
    (0.0, [0, 0, 0, 0]),
    (1.0, [2, 2, 2, 2]),
])
def test_learned_exit_assignment(hand_outputs, thresholds, expected):
    assert exit_assignment(hand_outputs, "learned", thresholds).tolist() == expected


def test_threshold_count_must_match_early_exits(hand_outputs):
    with pytest.raises(ConfigError, match=r"2 early exits need 1 or 2 thresholds \(one per early exit\), got 3"):
        exit_assignment(hand_outputs, "learned", [0.5, 0.5, 0.5])


def test_metrics_of_one_threshold(hand_outputs):
    res = evaluate(hand_outputs, "learned", 0.5, exit_macs=[10, 20, 40],
                   exit_latency_ms=[1.0, 2.0, 4.0], exit_energy_mj=[3.0, 5.0, 9.0])
    # exits [0, 1, 0, 2]: right, right, right, wrong
    assert res.accuracy == 0.75
    assert res.exit_fractions.tolist() == [0.5, 0.25, 0.25]
    assert res.per_exit_accuracy.tolist() == [0.5, 0.5, 0.75]
    assert res.exit_accuracy.tolist() == [1.0, 1.0, 0.0]
    assert res.expected_macs == pytest.approx(0.5 * 10 + 0.25 * 20 + 0.25 * 40)   # 20
    assert res.expected_latency_ms == pytest.approx(0.5 * 1 + 0.25 * 2 + 0.25 * 4)  # 2
    assert res.expected_energy_mj == pytest.approx(0.5 * 3 + 0.25 * 5 + 0.25 * 9)   # 5


def test_costs_are_optional_and_empty_exits_have_nan_accuracy(hand_outputs):
    res = evaluate(hand_outputs, "learned", 1.0, None)
    assert res.expected_macs is None and res.expected_latency_ms is None
    assert res.exit_fractions.tolist() == [0.0, 0.0, 1.0]
    assert math.isnan(res.exit_accuracy[0]) and res.accuracy == 0.75
    assert res.to_dict()["exit_accuracy"] == [None, None, 0.75]


def test_cost_vector_needs_one_value_per_exit(hand_outputs):
    with pytest.raises(ValueError, match="exit_macs: expected 3 values"):
        evaluate(hand_outputs, "learned", 0.5, exit_macs=[1, 2])


def test_maxprob_and_entropy_criteria():
    # exit 1: input 0 is confident ([4, 0]: p = .982, normalised entropy .13), input 1 is
    # not ([.1, 0]: p = .525, entropy .9986); both are class 0 at exit 1 and class 1 at the end
    logits = np.array([[[4.0, 0.0], [0.1, 0.0]], [[0.0, 3.0], [0.0, 3.0]]], dtype=np.float32)
    out = ExitOutputs(logits, np.ones((2, 2)), np.array([0, 0]))
    assert exit_assignment(out, "maxprob", 0.9).tolist() == [0, 1]
    assert exit_assignment(out, "entropy", 0.5).tolist() == [0, 1]
    assert exit_assignment(out, "entropy", 1.0).tolist() == [0, 0]
    assert evaluate(out, "entropy", 0.5).accuracy == 0.5


def test_single_exit_model_always_uses_the_final_head():
    out = ExitOutputs(np.array([[[1.0, 0.0], [0.0, 1.0]]]), np.ones((1, 2)), np.array([0, 0]))
    res = evaluate(out, "maxprob", 0.5, exit_macs=[7])
    assert res.exit_fractions.tolist() == [1.0] and res.accuracy == 0.5 and res.expected_macs == 7
