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


def _bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "proxy_fidelity.py"
    spec = importlib.util.spec_from_file_location("proxy_fidelity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trial(number: int, on_front: bool, latency: float, accuracy: float, blocks: list,
           branch: str, threshold: float) -> dict:
    config = {"exits": {"blocks": blocks, "branch": branch, "placement": "linear"},
              "training": {"lr": 0.01}, "policy": {"thresholds": [threshold]}}
    return {"number": number, "on_front": on_front, "latency_ms": latency, "accuracy": accuracy,
            "config": config}


def test_the_benchmark_checks_distinct_structures_before_more_thresholds_of_one():
    import types

    import pandas as pd

    rows = [_trial(i, True, 1.0 + i, 80.0 + i, [1], "pool", 0.5 + i / 20) for i in range(6)]
    rows += [_trial(6, True, 9.0, 95.0, [3], "pool", 0.9),
             _trial(7, True, 8.0, 90.0, [2], "plain", 0.9)]
    rows += [_trial(8 + i, False, 5.0, 50.0 + i, [i % 3 + 1], "convx", 0.5 + i / 20)
             for i in range(6)]
    rows += [_trial(14, False, 5.0, 10.0, [1], "pool", 0.99)]  # a front structure, off the front
    bench = _bench()
    picked = bench.pick_trials(types.SimpleNamespace(trials=pd.DataFrame(rows)), 6)
    structures = picked["config"].apply(bench.structure)
    assert len(picked) == 6 and structures.nunique() == 6
    front = picked[picked["on_front"]]
    assert sorted(front["number"]) == [5, 6, 7]  # one per front structure, its most accurate
    assert 14 not in set(picked["number"])       # a front structure is not checked twice
    # too few structures for the request: more thresholds of the same ones fill it
    more = bench.pick_trials(types.SimpleNamespace(trials=pd.DataFrame(rows)), 10)
    assert len(more) == 10 and more["config"].apply(bench.structure).nunique() == 6


def test_the_benchmark_spread_by_hand():
    # pairs of (1, 2, 4): |1-2| = 1, |1-4| = 3, |2-4| = 2 -> mean 2; std of (1, 2, 4) = sqrt(14/9)
    got = _bench().spread([1.0, 2.0, 4.0])
    assert got == {"range": 3.0, "std": round(math.sqrt(14 / 9), 3), "mean_abs_pair_difference": 2.0}
