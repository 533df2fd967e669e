"""Evaluation on cached exit outputs equals the model's real early-exit inference path.

Branches are trained by the proxy on cached features; then, for several criteria and
thresholds, the exit index and prediction of every test input computed from
:func:`dse.train.proxy.exit_outputs` (numpy, via :mod:`dse.evaluation`) must equal those of
:meth:`MultiExitNet.early_exit`, which really stops computing exited inputs.
"""
from __future__ import annotations

import numpy as np
import pytest

from dse.data import split_tensors
from dse.evaluation import evaluate, exit_assignment
from dse.models.multiexit import MultiExitNet
from dse.train import proxy
from dse.train.features import build_feature_cache

BLOCKS = [1, 3, 4]


def safe_thresholds(scores: np.ndarray, quantiles, gap: float = 1e-4) -> list[float]:
    """Thresholds at score quantiles, moved to the middle of a gap between observed scores so
    float rounding between the two paths cannot flip a decision."""
    s = np.unique(scores.ravel())
    out = []
    for q in quantiles:
        k = int(q * (len(s) - 1))
        while k + 1 < len(s) and s[k + 1] - s[k] < gap:
            k += 1
        out.append(float((s[k] + s[min(k + 1, len(s) - 1)]) / 2))
    return out


@pytest.fixture(scope="module", params=["pool", "bnpool"])
def trained(request, cache32):
    result = proxy.train_branches(cache32, BLOCKS, request.param, loss="eenet",
                                  exit_costs=[0.2, 0.5, 0.7, 1.0], steps=30, lr=2e-2,
                                  batch_size=64, seed=0)
    return result


@pytest.mark.parametrize("criterion", ["maxprob", "entropy", "learned"])
def test_cached_evaluation_equals_real_early_exit(backbone, digits, cache32, trained, criterion):
    outputs = proxy.result_outputs(cache32, trained, "test")
    model = MultiExitNet(backbone, BLOCKS, trained.branches).eval()
    x, y = split_tensors(digits.test)
    scores = outputs.scores(criterion)[:-1]
    thresholds = safe_thresholds(scores, [0.1, 0.4, 0.7, 0.95])
    per_exit = [safe_thresholds(scores[e], [q])[0] for e, q in enumerate([0.8, 0.5, 0.3])]
    seen_exits = set()
    for t in [*thresholds, per_exit]:
        expected_exit = exit_assignment(outputs, criterion, t)
        expected_pred = outputs.logits[expected_exit, np.arange(len(y))].argmax(axis=1)
        logits, exit_index = model.early_exit(x, criterion, t)
        np.testing.assert_array_equal(exit_index.numpy(), expected_exit)
        np.testing.assert_array_equal(logits.argmax(1).numpy(), expected_pred)
        # the exited logits themselves agree too
        np.testing.assert_allclose(logits.numpy(), outputs.logits[expected_exit, np.arange(len(y))],
                                   rtol=1e-4, atol=1e-4)
        real_acc = float((logits.argmax(1) == y).numpy().mean())
        assert evaluate(outputs, criterion, t).accuracy == pytest.approx(real_acc, abs=1e-12)
        seen_exits |= set(expected_exit.tolist())
    assert len(seen_exits) >= 3  # the thresholds really send inputs to different exits


def test_batch_of_one_path_agrees(backbone, digits, cache32, trained):
    outputs = proxy.result_outputs(cache32, trained, "test")
    model = MultiExitNet(backbone, BLOCKS, trained.branches).eval()
    x, _ = split_tensors(digits.test)
    t = safe_thresholds(outputs.scores("maxprob")[:-1], [0.5])[0]
    expected = exit_assignment(outputs, "maxprob", t)
    got = [int(model.early_exit(x[i:i + 1], "maxprob", t)[1]) for i in range(40)]
    assert got == expected[:40].tolist()


def test_float16_cache_agrees_almost_everywhere(backbone, digits, cache32, trained):
    """float16 storage is an approximation: decisions agree on nearly every input."""
    cache16 = build_feature_cache(backbone, digits, BLOCKS, splits=("test",), cache_dir=False)
    a = proxy.result_outputs(cache32, trained, "test")
    b = proxy.result_outputs(cache16, trained, "test")
    t = float(np.median(a.scores("maxprob")[:-1]))
    agree = exit_assignment(a, "maxprob", t) == exit_assignment(b, "maxprob", t)
    assert agree.mean() >= 0.98
    np.testing.assert_allclose(a.logits, b.logits, atol=0.05)
