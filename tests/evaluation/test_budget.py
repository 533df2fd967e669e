"""Budget calibration on val (MSDNet/IMTA budgeted-batch protocol), measured on test."""
from __future__ import annotations

import numpy as np
import pytest

from dse.errors import ConfigError
from dse.evaluation import (
    budget_curve,
    calibrate,
    calibrate_budget,
    evaluate,
    geometric_exit_probs,
    random_outputs,
    sweep,
    thresholds_for_exit_probs,
)

MACS = [1.0, 2.0, 3.5, 5.0]


@pytest.fixture(scope="module")
def val():
    return random_outputs(n_samples=150, n_exits=4, n_classes=5, seed=4)


def test_geometric_exit_probs():
    assert geometric_exit_probs(2.0, 3)[0].tolist() == pytest.approx([2 / 14, 4 / 14, 8 / 14])
    assert geometric_exit_probs([1.0], 4)[0].tolist() == pytest.approx([0.25] * 4)


@pytest.mark.parametrize("criterion", ["maxprob", "entropy", "learned"])
def test_thresholds_for_exit_probs_give_those_fractions(criterion):
    out = random_outputs(n_samples=1000, n_exits=3, n_classes=10, seed=5)
    probs = geometric_exit_probs(0.5, 3)  # [4/7, 2/7, 1/7]
    t = thresholds_for_exit_probs(out, criterion, probs)[0]
    res = evaluate(out, criterion, t)
    assert res.exit_fractions.tolist() == pytest.approx([0.571, 0.285, 0.144])


@pytest.mark.parametrize("criterion", ["maxprob", "entropy", "learned"])
@pytest.mark.parametrize("budget", [1.2, 2.0, 3.0, 4.5])
def test_calibration_meets_the_budget_on_val(val, criterion, budget):
    cal = calibrate(val, criterion, MACS, budget)
    res = evaluate(val, criterion, cal.thresholds, exit_macs=MACS)
    assert res.expected_macs <= budget
    assert res.expected_macs == pytest.approx(cal.val_cost)
    assert res.accuracy == pytest.approx(cal.val_accuracy)
    assert np.array_equal(calibrate_budget(val, criterion, MACS, budget), cal.thresholds)


@pytest.mark.parametrize("budget", [1.5, 2.5, 4.0])
def test_calibration_beats_every_global_threshold_within_budget(val, budget):
    # every distinct global threshold: each val score and +-inf
    all_t = np.concatenate([np.unique(val.scores("maxprob")[:-1]), [-np.inf, np.inf]])
    brute = sweep(val, "maxprob", all_t, exit_macs=MACS)
    best = brute.accuracy[brute.expected_macs <= budget].max()
    assert calibrate(val, "maxprob", MACS, budget).val_accuracy >= best - 1e-12
    assert calibrate(val, "maxprob", MACS, budget, scheme="global").val_accuracy == best


def test_more_budget_never_hurts_val_accuracy(val):
    accs = [calibrate(val, "maxprob", MACS, b).val_accuracy for b in (1.5, 2.5, 3.5, 5.0)]
    assert accs == sorted(accs)


def test_infeasible_and_bad_budgets(val):
    with pytest.raises(ConfigError, match=r"budget_macs 0.5 is below the cheapest operating point on val \(1 macs"):
        calibrate(val, "maxprob", MACS, 0.5)
    with pytest.raises(ConfigError, match="budget_latency_ms must be a positive number, got -1"):
        calibrate(val, "maxprob", MACS, -1.0, kind="latency")
    with pytest.raises(ConfigError, match="budget kind must be one of macs, latency, energy, got 'flops'"):
        calibrate(val, "maxprob", MACS, 2.0, kind="flops")
    with pytest.raises(ConfigError, match="calibration scheme must be"):
        calibrate(val, "maxprob", MACS, 2.0, scheme="best")


def test_budget_curve_calibrates_on_val_and_measures_on_test(val):
    test = random_outputs(n_samples=150, n_exits=4, n_classes=5, seed=6)
    latency = [0.4, 0.9, 1.5, 2.0]
    table = budget_curve(val, test, "entropy", latency, [0.8, 1.2, 1.8], kind="latency")
    assert list(table.columns) == ["budget_latency_ms", "val_accuracy", "val_expected_latency_ms",
                                   "test_accuracy", "test_expected_latency_ms", "thresholds",
                                   "test_exit_fractions"]
    assert len(table) == 3
    assert (table["val_expected_latency_ms"] <= table["budget_latency_ms"]).all()
    for row in table.itertuples():
        res = evaluate(test, "entropy", row.thresholds, exit_latency_ms=latency)
        assert row.test_accuracy == res.accuracy
        assert row.test_expected_latency_ms == pytest.approx(res.expected_latency_ms)
