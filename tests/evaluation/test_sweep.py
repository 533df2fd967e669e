"""Vectorised sweeps equal a python loop over thresholds; the sweep is fast."""
from __future__ import annotations

import numpy as np
import pytest

from dse.evaluation import evaluate, random_outputs, sweep, sweep_benchmark, sweep_per_exit
from dse.models.criteria import CRITERIA

MACS = [1.0, 2.5, 4.0, 6.0]


def loop(outputs, criterion, thresholds):
    results = [evaluate(outputs, criterion, t, exit_macs=MACS, exit_latency_ms=MACS)
               for t in thresholds]
    return (np.array([r.accuracy for r in results]),
            np.array([r.exit_fractions for r in results]),
            np.array([r.expected_macs for r in results]))


@pytest.mark.parametrize("criterion", CRITERIA.names())
def test_sweep_equals_loop(criterion):
    out = random_outputs(n_samples=300, n_exits=4, n_classes=5, seed=1)
    scores = out.scores(criterion)[:-1].reshape(-1)
    # real ties (thresholds equal to scores), a grid, and the extremes
    thresholds = np.concatenate([scores[::37], np.linspace(0, 1, 23), [-np.inf, np.inf]])
    res = sweep(out, criterion, thresholds, exit_macs=MACS, exit_latency_ms=MACS)
    acc, frac, macs = loop(out, criterion, thresholds)
    assert np.allclose(res.accuracy, acc) and np.allclose(res.exit_fractions, frac)
    assert np.allclose(res.expected_macs, macs) and np.allclose(res.expected_latency_ms, macs)
    assert res.expected_energy_mj is None
    assert len(set(np.round(acc, 6))) > 5  # the grid really moves the operating point


def test_sweep_on_hand_example(hand_outputs):
    res = sweep(hand_outputs, "learned", [0.5, 1.0, 0.0], exit_macs=[10, 20, 40])
    assert res.accuracy.tolist() == [0.75, 0.75, 0.5]
    assert res.exit_fractions.tolist() == [[0.5, 0.25, 0.25], [0, 0, 1], [1, 0, 0]]
    assert res.expected_macs.tolist() == [20.0, 40.0, 10.0]


@pytest.mark.parametrize("criterion", CRITERIA.names())
def test_sweep_per_exit_equals_loop(criterion):
    out = random_outputs(n_samples=200, n_exits=4, n_classes=5, seed=2)
    rng = np.random.default_rng(0)
    scores = out.scores(criterion)[:-1]
    thresholds = rng.uniform(scores.min(), scores.max(), (40, 3))
    thresholds[0] = scores[:, 5]  # ties
    res = sweep_per_exit(out, criterion, thresholds, exit_macs=MACS, exit_latency_ms=MACS)
    acc, frac, macs = loop(out, criterion, thresholds)
    assert np.allclose(res.accuracy, acc) and np.allclose(res.exit_fractions, frac)
    assert np.allclose(res.expected_macs, macs)


def test_sweep_per_exit_checks_shape(hand_outputs):
    with pytest.raises(ValueError, match=r"per-exit thresholds must be \[T, 2\]"):
        sweep_per_exit(hand_outputs, "learned", np.zeros((4, 3)))


def test_sweep_of_single_exit_model():
    out = random_outputs(n_samples=50, n_exits=1, seed=3)
    res = sweep(out, "maxprob", [0.1, 0.9])
    assert res.exit_fractions.tolist() == [[1.0], [1.0]]
    assert np.allclose(res.accuracy, out.correct()[0].mean())


def test_sweep_benchmark_meets_the_100ms_target():
    """Issue 4: 1,000 thresholds x 10,000 samples x 6 exits in <= 100 ms on 2 cores."""
    ms = sweep_benchmark(n_samples=10_000, n_exits=6, n_classes=10, n_thresholds=1000, repeats=3)
    assert 0 < ms <= 100
