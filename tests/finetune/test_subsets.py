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


@pytest.mark.parametrize("chunk", [None, 3])
def test_paired_standard_errors_equal_a_hand_loop(monkeypatch, chunk):
    if chunk is not None:
        monkeypatch.setattr(subsets, "_CHUNK_VALUES", chunk * 30 * 4)
    rng = np.random.default_rng(2)
    base = rng.normal(size=(3, 30, 4))
    tuned = base + rng.normal(scale=1.5, size=base.shape)
    labels = rng.integers(0, 4, size=30)
    masks = subset_masks(3)
    ref = masks[5]
    se = subsets.paired_standard_errors(base, tuned, labels, ref)

    def correct(mask):
        ens = sum(tuned[b] if mask[b] else base[b] for b in range(3))
        return (ens.argmax(1) == labels).astype(float)

    for mask, got in zip(masks, se):
        d = correct(mask) - correct(ref)
        expected = np.sqrt(np.sum((d - d.mean()) ** 2) / (30 - 1) / 30)
        assert got == pytest.approx(expected)
    assert se[5] == 0.0 and se.max() > 0.0


def test_paired_standard_error_of_a_hand_case():
    # 4 images, 1 exit, 2 classes: the base gets images 0, 1 right, the tuned one 1, 2, 3
    base = np.array([[[1.0, 0], [1, 0], [1, 0], [1, 0]]])
    tuned = np.array([[[0.0, 1], [1, 0], [0, 1], [0, 1]]])
    labels = np.array([0, 0, 1, 1])
    se = subsets.paired_standard_errors(base, tuned, labels, [True])
    # d = c_base - c_tuned = [1, 0, -1, -1]: mean -1/4, sum of squares 3 - 4/16 = 2.75
    assert se[0] == pytest.approx(np.sqrt(2.75 / 3 / 4))
    assert se[1] == 0.0


def test_one_se_subset_takes_the_cheapest_within_one_standard_error():
    masks = subset_masks(2)                      # [], [1], [2], [1, 2]
    costs = np.array([0.0, 1.0, 2.0, 3.0])
    scores = np.array([0.80, 0.93, 0.92, 0.95])  # best: [1, 2]
    se = np.array([0.05, 0.03, 0.01, 0.0])
    # [] is 0.15 below (se 0.05): out; [1] is 0.02 below (se 0.03): in, and cheapest
    assert subsets.one_se_subset(scores, se, costs, masks) == 1
    # with a smaller error [1] is out too, and [2] (0.03 below, se 0.01) also: the best wins
    assert subsets.one_se_subset(scores, np.array([0.05, 0.01, 0.01, 0.0]), costs, masks) == 3
    # all errors zero: plain highest score; equal scores go to the cheaper subset
    assert subsets.one_se_subset(scores, np.zeros(4), costs, masks) == 3
    assert subsets.one_se_subset(np.array([0.5, 0.9, 0.9, 0.9]), np.zeros(4), costs, masks) == 1


def test_one_se_subset_ties_in_cost_go_to_the_higher_score():
    masks = subset_masks(2)
    costs = np.array([5.0, 1.0, 1.0, 6.0])
    scores = np.array([0.9, 0.88, 0.89, 0.9])
    assert subsets.one_se_subset(scores, np.full(4, 0.05), costs, masks) == 2
    assert subsets.reference_subset(scores, costs) == 0  # equal best scores: the cheaper
