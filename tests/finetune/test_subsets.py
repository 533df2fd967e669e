"""Subset scoring of the classifier ensemble: vectorised result == a brute-force loop."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from dse.finetune import subsets
from dse.finetune.subsets import (best_subset, ensemble_accuracy, ensemble_logits, mixed_logits,
                                  parse_pattern, pattern, score_subsets, subset_masks)


def brute_force(base, tuned, labels):
    """The paper's eq. 4-5 literally: for each subset, build the ensemble and count."""
    num_exits = base.shape[0]
    scores = {}
    for mask in itertools.product([False, True], repeat=num_exits):
        logits = [tuned[b] if mask[b] else base[b] for b in range(num_exits)]
        ensemble = sum(logits) / num_exits
        scores[mask] = float(np.mean(ensemble.argmax(1) == labels))
    return scores


def test_masks_enumerate_every_subset_by_bits():
    m = subset_masks(3)
    assert m.shape == (8, 3)
    assert m[0].tolist() == [False, False, False]
    assert m[5].tolist() == [True, False, True]   # 5 = 0b101: exits 1 and 3
    assert len({tuple(r) for r in m}) == 8
    with pytest.raises(ValueError):
        subset_masks(0)


def test_pattern_round_trip():
    assert pattern([True, False, True, True]) == "FBFF"
    assert parse_pattern("BFBFFBB").tolist() == [False, True, False, True, True, False, False]
    with pytest.raises(ValueError, match="F and B"):
        parse_pattern("FXB")


def test_ensemble_is_the_running_mean_of_logits():
    logits = np.array([[[1.0, 0.0]], [[0.0, 3.0]], [[2.0, 0.0]]])  # B=3, N=1, K=2
    ens = ensemble_logits(logits)
    assert ens[:, 0].tolist() == [[1.0, 0.0], [0.5, 1.5], [1.0, 1.0]]
    acc = ensemble_accuracy(logits, np.array([0]))
    assert acc.tolist() == [1.0, 0.0, 1.0]  # a tie at exit 3 goes to class 0 (argmax)


@pytest.mark.parametrize("chunk", [None, 7])
def test_vectorised_scores_equal_brute_force(monkeypatch, chunk):
    if chunk is not None:  # force several chunks of subsets
        monkeypatch.setattr(subsets, "_CHUNK_VALUES", chunk * 40 * 5)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 40, 5))
    tuned = base + rng.normal(scale=1.5, size=base.shape)
    labels = rng.integers(0, 5, size=40)
    scores = score_subsets(base, tuned, labels)
    expected = brute_force(base, tuned, labels)
    for mask, score in zip(subset_masks(4), scores):
        assert score == pytest.approx(expected[tuple(mask.tolist())])
    assert len(set(np.round(scores, 6))) > 3, "the case must discriminate between subsets"


def test_mixed_logits_and_explicit_masks():
    rng = np.random.default_rng(1)
    base, tuned = rng.normal(size=(3, 10, 4)), rng.normal(size=(3, 10, 4))
    labels = rng.integers(0, 4, size=10)
    mask = np.array([True, False, True])
    mixed = mixed_logits(base, tuned, mask)
    assert np.array_equal(mixed[0], tuned[0]) and np.array_equal(mixed[1], base[1])
    one = score_subsets(base, tuned, labels, mask[None])
    assert one[0] == pytest.approx(np.mean(mixed.mean(0).argmax(1) == labels))


def test_best_subset_prefers_higher_score_then_fewer_exits():
    masks = subset_masks(2)  # [], [1], [2], [1, 2]
    assert best_subset(np.array([0.5, 0.7, 0.6, 0.7]), masks) == 1
    assert best_subset(np.array([0.5, 0.6, 0.6, 0.7]), masks) == 3
    assert best_subset(np.array([0.9, 0.9, 0.9, 0.9]), masks) == 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes disagree"):
        score_subsets(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)), np.zeros(3))
