"""Deterministic, stratified train / val / test splits from a seed (pure numpy).

Why stratified: the val split tunes exit thresholds and the search, so every class must be
represented in it in the proportion it has in the data, or threshold choices drift with the
seed. Why cumulative rounding: splitting each class on its own and rounding would let the split
totals drift by up to one item per class; rounding the *cumulative* split boundaries along the
classes instead keeps every split total exactly at ``round(F_s * N)`` (``F`` the cumulative
fractions) while each class's items in splits ``0..s`` stay within one of ``F_s * n_c`` (so a
single split is within two items of its share of the class, usually within one).

Same seed -> the same indices, on every machine (numpy's PCG64 is platform independent);
another seed -> another permutation inside every class.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: Fraction of an official train set held out as val when a dataset ships its own test set.
VAL_FRACTION = 0.1


def seeded_rng(seed: int) -> np.random.Generator:
    """numpy Generator for ``seed``; negative seeds are folded into the unsigned 64-bit range."""
    return np.random.default_rng(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)


def stratified_split(
    labels: np.ndarray, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Split ``range(len(labels))`` into ``len(fractions)`` disjoint, sorted index arrays.

    Split ``s`` gets ``round(F_s * N) - round(F_{s-1} * N)`` items overall, with ``F`` the
    cumulative fractions; class ``c`` has within one of ``F_s * n_c`` of its items in splits
    ``0..s``. ``fractions`` must be positive and sum to 1. Indices come back sorted so reading the
    underlying arrays stays sequential; shuffling is the data loader's job.
    """
    labels = np.asarray(labels)
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or fr.size == 0 or np.any(fr <= 0) or abs(fr.sum() - 1.0) > 1e-9:
        raise ValueError(f"fractions must be positive and sum to 1, got {list(fractions)}")
    edges = np.cumsum(fr)[:-1]  # inner boundaries, e.g. [0.6, 0.8] for 60/20/20
    rng = seeded_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fr]
    seen = 0
    prev_bounds = np.zeros(edges.size, dtype=np.int64)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        seen += members.size
        bounds = np.floor(edges * seen + 0.5).astype(np.int64)  # round half up, no banker's
        counts_upto = bounds - prev_bounds  # this class's items in splits 0..s
        prev_bounds = bounds
        perm = rng.permutation(members)
        # Rounding can make a tiny split's boundary step back by one; keep cuts monotone so
        # the chunks stay disjoint (np.split on decreasing cuts would repeat items).
        cuts = np.maximum.accumulate(np.clip(counts_upto, 0, members.size))
        for s, chunk in enumerate(np.split(perm, cuts)):
            parts[s].append(chunk)
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Split sizes :func:`stratified_split` produces for ``n`` items (for docs and tests)."""
    edges = np.floor(np.cumsum(fractions)[:-1] * n + 0.5).astype(int)
    return [int(c) for c in np.diff(np.concatenate([[0], edges, [n]]))]
