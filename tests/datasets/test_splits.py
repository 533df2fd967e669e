"""Stratified, seeded splitting (pure numpy)."""
from __future__ import annotations

import numpy as np
import pytest

from dse.data.splits import seeded_rng, split_counts, stratified_split


def _check_partition(parts, n):
    allidx = np.concatenate(parts)
    assert sorted(allidx.tolist()) == list(range(n))  # disjoint and covering
    for p in parts:
        assert np.all(np.diff(p) > 0)  # sorted, no repeats


def test_totals_are_rounded_cumulative_fractions():
    labels = np.arange(1797) % 10
    parts = stratified_split(labels, (0.6, 0.2, 0.2), seed=0)
    # round(0.6*1797)=1078, round(0.8*1797)=round(1437.6)=1438 -> 1078 / 360 / 359
    assert [len(p) for p in parts] == [1078, 360, 359]
    assert split_counts(1797, (0.6, 0.2, 0.2)) == [1078, 360, 359]
    _check_partition(parts, 1797)


def test_every_class_keeps_its_cumulative_share_within_one_item():
    rng = np.random.default_rng(5)
    labels = rng.choice(4, size=503, p=[0.5, 0.3, 0.15, 0.05])
    fractions = (0.7, 0.15, 0.15)
    parts = stratified_split(labels, fractions, seed=3)
    _check_partition(parts, labels.size)
    assert [len(p) for p in parts] == split_counts(503, fractions) == [352, 76, 75]  # 352.1 -> 352, 427.55 -> 428
    for cls in range(4):
        n_c = int((labels == cls).sum())
        got = np.cumsum([int((labels[p] == cls).sum()) for p in parts])
        assert np.all(np.abs(got - np.cumsum(fractions) * n_c) < 1.0), (cls, got, n_c)


def test_same_seed_same_split_other_seed_other_split():
    labels = np.arange(200) % 5
    a = stratified_split(labels, (0.9, 0.1), seed=7)
    b = stratified_split(labels, (0.9, 0.1), seed=7)
    c = stratified_split(labels, (0.9, 0.1), seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    assert [len(p) for p in c] == [180, 20]


def test_tiny_middle_split_stays_disjoint():
    # a 1% split over 3 classes of 1: rounding makes boundaries step back; must not duplicate
    labels = np.array([0, 1, 2])
    parts = stratified_split(labels, (0.49, 0.02, 0.49), seed=0)
    _check_partition(parts, 3)


def test_unsorted_labels_and_string_labels():
    labels = np.array(["b", "a", "b", "a", "b", "a", "b", "a", "b", "a"])
    tr, va = stratified_split(labels, (0.8, 0.2), seed=1)
    assert sorted(labels[va].tolist()) == ["a", "b"]
    _check_partition([tr, va], 10)


@pytest.mark.parametrize("fractions", [(0.5, 0.4), (1.2, -0.2), (), (0.0, 1.0)])
def test_bad_fractions_raise(fractions):
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(np.zeros(10), fractions, seed=0)


def test_negative_seed_is_accepted_and_deterministic():
    assert seeded_rng(-1).integers(1 << 30) == seeded_rng(-1).integers(1 << 30)
    assert seeded_rng(-1).integers(1 << 30) != seeded_rng(1).integers(1 << 30)
