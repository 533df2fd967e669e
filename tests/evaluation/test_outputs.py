"""ExitOutputs: shapes, validation, scores from the criteria registry, npz cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dse.errors import DataError
from dse.evaluation import ExitOutputs
from dse.models.criteria import CRITERIA


def test_from_exits_stacks_tensors(hand_outputs):
    logits = [torch.from_numpy(np.array(z)).requires_grad_() for z in hand_outputs.logits]
    conf = [torch.from_numpy(np.array(c)).reshape(-1, 1) for c in hand_outputs.conf]
    out = ExitOutputs.from_exits(logits, conf, torch.tensor([0, 1, 1, 0]))
    assert (out.num_exits, out.num_samples) == (3, 4)
    assert np.array_equal(out.logits, hand_outputs.logits)
    assert out.conf.dtype == np.float32 and out.labels.dtype == np.int64


def test_arrays_are_read_only(hand_outputs):
    with pytest.raises(ValueError):
        hand_outputs.conf[0, 0] = 0.0


def test_correct_marks_right_predictions(hand_outputs):
    assert hand_outputs.correct().tolist() == [[True, False, True, False],
                                               [False, True, False, True],
                                               [True, True, True, False]]


@pytest.mark.parametrize("criterion", CRITERIA.names())
def test_scores_equal_the_torch_early_exit_path(hand_outputs, criterion):
    crit = CRITERIA.get(criterion)
    for e in range(hand_outputs.num_exits):
        torch_score = crit.score_torch(torch.from_numpy(np.array(hand_outputs.logits[e])),
                                       torch.from_numpy(np.array(hand_outputs.conf[e])))
        assert np.allclose(hand_outputs.scores(criterion)[e], torch_score.numpy(), atol=1e-6)


def test_entropy_confidence_scores_are_negated(hand_outputs):
    assert np.array_equal(hand_outputs.confidence_scores("entropy"),
                          -hand_outputs.scores("entropy")[:-1])
    assert np.array_equal(hand_outputs.confidence_scores("learned"), hand_outputs.conf[:-1])


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="shapes disagree"):
        ExitOutputs(np.zeros((2, 4, 3)), np.zeros((2, 5)), np.zeros(4))
    with pytest.raises(ValueError, match=r"logits must be \[E, N, K\]"):
        ExitOutputs(np.zeros((4, 3)), np.zeros((2, 4)), np.zeros(4))


def test_non_finite_outputs_are_a_data_error():
    logits = np.zeros((2, 3, 2))
    logits[1, 0, 0] = np.nan
    with pytest.raises(DataError, match="nan or inf at exit 2 of 2"):
        ExitOutputs(logits, np.ones((2, 3)), np.zeros(3, dtype=int))


def test_npz_round_trip(tmp_path, hand_outputs):
    path = tmp_path / "val.npz"
    hand_outputs.save_npz(path)
    loaded = ExitOutputs.load_npz(path)
    assert np.array_equal(loaded.logits, hand_outputs.logits)
    assert np.array_equal(loaded.labels, hand_outputs.labels)


def test_npz_errors(tmp_path):
    with pytest.raises(DataError, match="cached exit outputs not found"):
        ExitOutputs.load_npz(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, logits=np.zeros((1, 2, 2)))
    with pytest.raises(DataError, match="not a cached exit-outputs file"):
        ExitOutputs.load_npz(bad)
