"""Proxy-fidelity statistics against hand-computed values."""
from __future__ import annotations

import math

import pytest

from dse.search.fidelity import average_ranks, front_kept, kendall, seed_noise, spearman


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]


def test_spearman_by_hand():
    # ranks x = 1..5, y = 2,1,4,3,5: d = -1,1,-1,1,0, sum d^2 = 4 -> 1 - 6*4/(5*24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [20, 10, 40, 30, 50]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [7, 7, 7]) is None and spearman([1], [2]) is None


def test_spearman_with_ties_is_pearson_of_average_ranks():
    # x ranks 1, 2.5, 2.5, 4; y ranks 1, 2, 3, 4: cov = 4.5, var_x = 4.5, var_y = 5
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))


def test_kendall_by_hand():
    # pairs of (1,2,3,4) vs (1,3,2,4): 5 concordant, 1 discordant -> 4/6
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # tau-b with a tie in x: 6 pairs, 1 tied in x (the two 2s), the other 5 concordant
    # -> (5 - 0) / sqrt((6 - 1) * (6 - 0))
    assert kendall([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(5 / math.sqrt(30))
    assert kendall([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same length"):
        kendall([1, 2], [1])


def test_front_kept_counts_proxy_front_rows_left_undominated():
    # after full training: A (95, 2 ms) dominates B (94, 3 ms); C (96, 4 ms) and D (90, 1 ms)
    # are undominated. Proxy front: A, B, C -> A and C kept -> 2/3.
    acc, lat = [95, 94, 96, 90], [2.0, 3.0, 4.0, 1.0]
    assert front_kept([True, True, True, False], acc, lat) == pytest.approx(2 / 3)
    assert front_kept([False, False, False, True], acc, lat) == 1.0
    assert front_kept([False] * 4, acc, lat) is None


def test_seed_noise():
    assert seed_noise([90.0, 92.0, 95.0], [91.0, 92.0, 93.0]) == {
        "mean_abs_diff": pytest.approx(1.0), "max_abs_diff": pytest.approx(2.0)}
    assert seed_noise([], []) == {"mean_abs_diff": None, "max_abs_diff": None}
