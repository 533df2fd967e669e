"""Pareto fronts and hypervolume against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from dse.search.pareto import (dominates, hypervolume, normalised_hypervolume, pareto_front,
                               to_losses)

MAXMIN = ["maximize", "minimize"]


def test_front_of_accuracy_and_latency():
    points = [[90, 1.0], [95, 2.0], [92, 2.5], [95, 2.0], [80, 0.5], [85, 1.2]]
    # [92, 2.5] is dominated by [95, 2.0]; [85, 1.2] by [90, 1.0]; duplicates both stay
    assert pareto_front(points, MAXMIN) == [0, 1, 3, 4]
    assert pareto_front([], MAXMIN) == []


def test_dominance_and_losses():
    assert dominates([1, 1], [1, 2]) and not dominates([1, 2], [1, 2])
    assert not dominates([0, 3], [1, 2])
    assert to_losses([[90, 2]], MAXMIN).tolist() == [[-90, 2]]
    with pytest.raises(ValueError, match="direction"):
        to_losses([[1, 2]], ["max", "min"])


def test_hypervolume_2d_by_hand():
    # boxes to r = (4, 4): (1,3) -> 3x1; (2,2) adds 2x1; (3,1) adds 1x1 -> 6
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4]) == pytest.approx(6.0)
    # a dominated point, a duplicate and a point outside the reference change nothing
    assert hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [2, 2], [5, 0]], [4, 4]) == pytest.approx(6.0)
    assert hypervolume([], [1, 1]) == 0.0
    assert hypervolume([[0.5]], [2.0]) == pytest.approx(1.5)


def test_hypervolume_3d_by_hand():
    # union of [0,2]x[0,1]x[0,1] and [0,1]x[0,2]x[0,1] and [0,1]x[0,1]x[0,2] (r = 2,2,2):
    # 2 + 2 + 2 - 3 x 1 (pairwise overlaps) + 1 (triple) = 4
    pts = [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    assert hypervolume(pts, [2, 2, 2]) == pytest.approx(4.0)
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, (12, 3))
    samples = rng.uniform(0, 1, (200_000, 3))
    covered = np.zeros(len(samples), dtype=bool)
    for p in pts:
        covered |= np.all(samples >= p, axis=1)
    assert hypervolume(pts, [1, 1, 1]) == pytest.approx(covered.mean(), abs=5e-3)


def test_normalised_hypervolume():
    # accuracy 90..100 -> loss 1..0, latency 1..3 ms -> 0..1; reference 1.1
    hv = normalised_hypervolume([[100, 3.0], [90, 1.0]], MAXMIN, ideal=[100, 1.0], nadir=[90, 3.0])
    # points (0, 1) and (1, 0): 1.1 x 0.1 + 0.1 x 1.1 - 0.1 x 0.1 = 0.21
    assert hv == pytest.approx(0.21)
    assert normalised_hypervolume([], MAXMIN, [100, 1.0], [90, 3.0]) == 0.0
