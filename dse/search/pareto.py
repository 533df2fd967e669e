"""Pareto fronts and hypervolume: numbers in, numbers out.

Points are rows of objective values; ``directions`` says per column whether larger
(``maximize``) or smaller (``minimize``) is better. Internally every column is turned into a
loss to minimise (maximised columns are negated).

- Point a *dominates* b when a is no worse in every objective and better in at least one.
- The *front* is the set of points no other point dominates (exact duplicates all stay).
- The *hypervolume* of a set of loss vectors against a reference point r (worse than every
  point in each objective) is the Lebesgue measure of the union of boxes [p, r]. In 2-D, with
  the front sorted by the first loss ascending (so the second descends):
  HV = sum_i (r_1 - p_i1) * (p_{i-1,2} - p_i2), with p_{0,2} = r_2.
  Higher dimensions slice along the last objective (exact, for the small fronts of a search).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def to_losses(points: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """[N, M] float64 losses: maximised columns negated."""
    p = np.array(points, dtype=np.float64).reshape(len(points), len(directions))
    for j, d in enumerate(directions):
        if d not in ("maximize", "minimize"):
            raise ValueError(f"direction must be 'maximize' or 'minimize', got {d!r}")
        if d == "maximize":
            p[:, j] = -p[:, j]
    return p


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Loss vector a dominates loss vector b."""
    a, b = np.asarray(a), np.asarray(b)
    return bool(np.all(a <= b) and np.any(a < b))


def front_mask(losses: np.ndarray) -> np.ndarray:
    """bool [N]: True for points no other point dominates (losses, minimised)."""
    losses = np.asarray(losses, dtype=np.float64)
    n = losses.shape[0]
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        dominators = np.all(losses <= losses[i], axis=1) & np.any(losses < losses[i], axis=1)
        if dominators.any():
            keep[i] = False
    return keep


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points, in input order."""
    if len(points) == 0:
        return []
    return [int(i) for i in np.flatnonzero(front_mask(to_losses(points, directions)))]


def hypervolume(losses: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Hypervolume dominated by ``losses`` (minimised) and bounded by ``reference``.

    Points not strictly better than the reference in every objective contribute nothing.
    """
    r = np.asarray(reference, dtype=np.float64)
    p = np.asarray(losses, dtype=np.float64).reshape(-1, r.size)
    p = p[np.all(p < r, axis=1)]
    if p.shape[0] == 0:
        return 0.0
    p = p[front_mask(p)]
    p = np.unique(p, axis=0)
    return _hv(p, r)


def _hv(p: np.ndarray, r: np.ndarray) -> float:
    if r.size == 1:
        return float(r[0] - p[:, 0].min())
    if r.size == 2:
        order = np.argsort(p[:, 0], kind="stable")
        p = p[order]
        total, prev = 0.0, r[1]
        for x, y in p:
            if y < prev:
                total += (r[0] - x) * (prev - y)
                prev = y
        return float(total)
    # slice along the last objective: between consecutive levels the dominated region is the
    # (M-1)-D hypervolume of the points at or below that level
    levels = np.unique(p[:, -1])
    total = 0.0
    for k, z in enumerate(levels):
        upper = levels[k + 1] if k + 1 < len(levels) else r[-1]
        below = p[p[:, -1] <= z][:, :-1]
        sub = below[front_mask(below)]
        total += _hv(sub, r[:-1]) * (upper - z)
    return float(total)


def normalised_hypervolume(points: Sequence[Sequence[float]], directions: Sequence[str],
                           ideal: Sequence[float], nadir: Sequence[float],
                           margin: float = 0.1) -> float:
    """Hypervolume after scaling each objective so ``ideal`` -> 0 and ``nadir`` -> 1, with the
    reference at 1 + ``margin`` (so the extreme points of a front still count)."""
    lo = to_losses([ideal], directions)[0]
    hi = to_losses([nadir], directions)[0]
    span = np.where(np.abs(hi - lo) > 0, hi - lo, 1.0)
    scaled = (to_losses(points, directions) - lo) / span if len(points) else np.empty((0, lo.size))
    return hypervolume(scaled, np.full(lo.size, 1.0 + margin))
