"""Proxy fidelity: does the search's cheap proxy rank designs as full training does?

Numbers in, numbers out (no torch, no files); used by ``dse report --check`` and
``benchmarks/proxy_fidelity.py``.

- :func:`spearman`: Spearman's rho, the Pearson correlation of the two rank vectors, with tied
  values given their average rank (Spearman 1904).
- :func:`kendall`: Kendall's tau-b, ``(C - D) / sqrt((n0 - n1)(n0 - n2))`` over all pairs, with
  ``C``/``D`` the concordant/discordant pairs, ``n0 = n(n-1)/2`` and ``n1``/``n2`` the pairs tied
  in the first/second variable (Kendall 1945); tau-b equals tau-a without ties.
- :func:`front_kept`: the share of the configurations on the proxy's Pareto front that no other
  checked configuration dominates after full training (dominance of
  :func:`dse.search.pareto.front_mask`, the search's own rule).
- :func:`seed_noise`: how far two full trainings of the same configuration with different seeds
  land apart (mean and max absolute difference, points), the yardstick for the rest.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import kendalltau, rankdata, spearmanr

from dse.search.pareto import front_mask, to_losses


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ascending; tied values share the mean of the ranks they span."""
    return [float(r) for r in rankdata(values, method="average")]


def _check_pair(x: Sequence[float], y: Sequence[float]) -> None:
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation in [-1, 1]; None for fewer than 2 points or a constant side."""
    _check_pair(x, y)
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y)[0])


def kendall(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b in [-1, 1]; None for fewer than 2 points or a constant side."""
    _check_pair(x, y)
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(kendalltau(x, y, variant="b")[0])


def front_kept(proxy_front: Sequence[bool], accuracy: Sequence[float],
               latency_ms: Sequence[float]) -> float | None:
    """Share of the ``proxy_front`` rows that stay non-dominated among all rows in (accuracy
    max, latency min) after full training; None when no row is on the proxy front."""
    if not len(proxy_front) == len(accuracy) == len(latency_ms):
        raise ValueError(f"proxy_front, accuracy and latency_ms must have the same length, got "
                         f"{len(proxy_front)}, {len(accuracy)} and {len(latency_ms)}")
    on = [bool(v) for v in proxy_front]
    if not any(on):
        return None
    points = np.column_stack([np.asarray(accuracy, float), np.asarray(latency_ms, float)])
    kept = front_mask(to_losses(points, ["maximize", "minimize"]))
    return sum(1 for f, k in zip(on, kept) if f and k) / sum(on)


def seed_noise(first: Sequence[float], second: Sequence[float]) -> dict[str, float | None]:
    """``{"mean_abs_diff", "max_abs_diff"}`` between two seeds' results of the same rows (same
    unit as the inputs, e.g. accuracy points); None values for no rows."""
    _check_pair(first, second)
    diffs = [abs(a - b) for a, b in zip(first, second)]
    if not diffs:
        return {"mean_abs_diff": None, "max_abs_diff": None}
    return {"mean_abs_diff": sum(diffs) / len(diffs), "max_abs_diff": max(diffs)}
