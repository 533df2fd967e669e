"""Proxy branch training from the feature cache."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from dse.design import TrainingSpec
from dse.errors import ConfigError, TrialFailed
from dse.models.exits import build_branch
from dse.train import proxy
from dse.train.features import FeatureCache, SplitFeatures
from dse.train.losses import LossSpec


def weights(result):
    return [p.detach().clone() for p in result.branches.parameters()]


@pytest.mark.parametrize("branch", ["pool", "bnpool"])
def test_same_seed_same_branches(cache16, branch):
    a = proxy.train_branches(cache16, [1, 3], branch, steps=5, batch_size=32, seed=4)
    b = proxy.train_branches(cache16, [1, 3], branch, steps=5, batch_size=32, seed=4)
    c = proxy.train_branches(cache16, [1, 3], branch, steps=5, batch_size=32, seed=5)
    assert a.losses == b.losses and len(a.losses) == 5 and a.steps_done == 5
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))
    assert a.losses != c.losses
    assert not any(br.training for br in a.branches)


def test_global_rng_is_left_alone(cache16):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    proxy.train_branches(cache16, [1], "pool", steps=2, batch_size=8)
    assert torch.equal(torch.rand(3), expected)


def test_training_lowers_the_loss(cache32):
    result = proxy.train_branches(cache32, [2, 4], "pool", steps=60, lr=3e-2, batch_size=64)
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])
    out = proxy.result_outputs(cache32, result, "val")
    chance = 0.1
    assert out.correct()[:2].mean(axis=1).min() > 2 * chance


def test_only_branch_heads_are_trained_and_backbone_logits_are_the_final_exit(cache32):
    result = proxy.train_branches(cache32, [0, 5], "pool", steps=3, batch_size=16)
    out = proxy.result_outputs(cache32, result, "test")
    assert out.logits.shape == (3, 359, 10) and out.conf.shape == (3, 359)
    np.testing.assert_array_equal(out.logits[-1], cache32.split("test").logits.numpy())
    np.testing.assert_array_equal(out.conf[-1], np.ones(359, dtype=np.float32))
    np.testing.assert_array_equal(out.labels, cache32.split("test").labels.numpy())
    feats = cache32.split("test").features
    with torch.no_grad():
        for e, b in enumerate([0, 5]):
            z, h = result.branches[e](feats[b])
            np.testing.assert_allclose(out.logits[e], z.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(out.conf[e], h.numpy(), rtol=1e-5, atol=1e-6)


def test_pool_shortcut_equals_the_full_branch():
    """Training pool branches on pre-pooled vectors is the same function as the full branch."""
    torch.manual_seed(0)
    br = build_branch("pool", (16, 4, 4), 10)
    x = torch.randn(5, 16, 4, 4)
    z1, h1 = br(x)
    z2, h2 = proxy._heads(br, br.features(x))
    torch.testing.assert_close(z1, z2)
    torch.testing.assert_close(h1, h2)
    assert proxy._stateless(br.features)
    assert not proxy._stateless(build_branch("bnpool", (16, 4, 4), 10).features)


@pytest.mark.parametrize("branch", ["pool", "bnpool"])
def test_uncached_training_matches_cached(backbone, digits, cache32, branch):
    online = proxy.OnlineFeatures(backbone, digits, ("train", "val"))
    a = proxy.train_branches(cache32, [1, 3], branch, steps=4, batch_size=32, seed=2)
    b = proxy.train_branches(online, [1, 3], branch, steps=4, batch_size=32, seed=2)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-4)
    for x, y in zip(weights(a), weights(b)):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    va, vb = proxy.result_outputs(cache32, a, "val"), proxy.result_outputs(online, b, "val")
    np.testing.assert_allclose(va.logits, vb.logits, rtol=1e-4, atol=1e-4)


def _cache_with(labels: torch.Tensor, logits: torch.Tensor, feats: torch.Tensor) -> FeatureCache:
    n = labels.shape[0]
    split = SplitFeatures({0: feats}, logits, labels, torch.arange(n))
    return FeatureCache((0,), {0: tuple(feats.shape[1:])}, logits.shape[1], feats.dtype,
                        {"train": split, "val": split})


def test_pseudo_labels_are_the_backbone_predictions():
    torch.manual_seed(0)
    feats, logits = torch.randn(40, 4, 2, 2), torch.randn(40, 3)
    garbage = torch.zeros(40, dtype=torch.long)
    pseudo = proxy.train_branches(_cache_with(garbage, logits, feats), [0], "pool",
                                  labels="pseudo", steps=3, batch_size=8)
    truth = proxy.train_branches(_cache_with(logits.argmax(1), logits, feats), [0], "pool",
                                 labels="ground_truth", steps=3, batch_size=8)
    wrong = proxy.train_branches(_cache_with(garbage, logits, feats), [0], "pool",
                                 labels="ground_truth", steps=3, batch_size=8)
    assert pseudo.losses == truth.losses and pseudo.losses != wrong.losses


def test_nan_features_stop_the_trial_with_a_reason():
    feats = torch.randn(20, 4, 2, 2)
    feats[3] = float("nan")
    cache = _cache_with(torch.zeros(20, dtype=torch.long), torch.randn(20, 3), feats)
    with pytest.raises(TrialFailed, match="loss became nan at step 0"):
        proxy.train_branches(cache, [0], "pool", steps=3, batch_size=20)


def test_diverging_learning_rate_stops_the_trial(cache16):
    with pytest.raises(TrialFailed, match=r"loss became (nan|inf)"):
        proxy.train_branches(cache16, [1], "bnpool", steps=50, lr=1e30, optimizer="sgd",
                             batch_size=32)


def test_nan_outputs_are_a_trial_failure(cache16):
    result = proxy.train_branches(cache16, [1], "pool", steps=1, batch_size=8)
    with torch.no_grad():
        result.branches[0].classifier.weight.fill_(float("nan"))
    with pytest.raises(TrialFailed, match="nan or inf"):
        proxy.result_outputs(cache16, result, "val")


def test_losses_from_the_registry(cache32):
    costs = [0.2, 0.5, 1.0]
    eenet = proxy.train_branches(cache32, [1, 3], "pool", loss="eenet", loss_params={"lam": 0.5},
                                 exit_costs=costs, steps=5, batch_size=32)
    assert eenet.settings["loss"] == "eenet" and eenet.settings["loss_params"] == {"lam": 0.5}
    before = build_branch("pool", (16, 8, 8), 10)
    # eenet trains the confidence head (ce would leave it at its initialisation)
    assert eenet.branches[0].confidence.weight.shape == before.confidence.weight.shape
    kd = proxy.train_branches(cache32, [1, 3], "pool", loss=LossSpec("kd", {"alpha": 0.3}),
                              steps=3, batch_size=32, optimizer="sgd", schedule="constant")
    assert kd.settings["loss"] == "kd" and kd.settings["optimizer"] == "sgd"


def test_confidence_head_moves_only_with_a_loss_that_uses_it(cache32):
    def conf_weight(loss, **kw):
        r = proxy.train_branches(cache32, [1, 3], "pool", loss=loss, steps=5, batch_size=32,
                                 seed=0, **kw)
        return r.branches[0].confidence.weight.detach()

    init = proxy.build_branches(cache32, [1, 3], "pool", None, 10, 0)[0].confidence.weight.detach()
    assert torch.equal(conf_weight("ce"), init)
    assert not torch.equal(conf_weight("eenet", exit_costs=[0.2, 0.5, 1.0]), init)


def test_isc_combines_logits_at_evaluation(cache32):
    result = proxy.train_branches(cache32, [1, 3], "pool", isc=True, steps=3, batch_size=32)
    assert result.isc
    combined = proxy.result_outputs(cache32, result, "val")
    plain = proxy.exit_outputs(cache32, [1, 3], result.branches, "val")
    np.testing.assert_allclose(combined.logits[0], plain.logits[0])
    np.testing.assert_allclose(combined.logits[1], plain.logits[1] + plain.logits[0], rtol=1e-5)
    np.testing.assert_allclose(combined.logits[2], plain.logits[2])


def test_defaults_are_a_run_configurations():
    """One default per setting: train_branches' are the training spec's (not its own)."""
    spec = TrainingSpec()
    params = inspect.signature(proxy.train_branches).parameters
    for name in ("labels", "steps", "lr", "optimizer", "batch_size"):
        assert params[name].default == getattr(spec, name), name


@pytest.mark.parametrize("kwargs, message", [
    (dict(labels="teacher"), "labels must be ground_truth or pseudo"),
    (dict(optimizer="rmsprop"), "optimizer must be adam or sgd"),
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(batch_size=0), "batch_size must be"),
    (dict(lr=0.0), "lr must be a number > 0"),
    (dict(schedule="step"), "schedule must be cosine or constant"),
    (dict(split="test"), "test is for final numbers"),
    (dict(loss="eenet"), "needs exit_costs"),
    (dict(exit_costs=[0.5, 1.0]), "exit_costs needs 3 values"),
    (dict(loss="nope"), "unknown loss 'nope'"),
    (dict(loss="ce", loss_params={"alpha": 0.1}), "unknown parameter 'alpha'"),
    (dict(loss=LossSpec("kd"), loss_params={"alpha": 0.1}), "inside the LossSpec"),
    (dict(loss=3), "loss must be a loss name or a LossSpec"),
])
def test_bad_settings_are_config_errors(cache16, kwargs, message):
    from dse.errors import DseError

    with pytest.raises(DseError, match=message):
        proxy.train_branches(cache16, [1, 3], "pool", steps=kwargs.pop("steps", 1), **kwargs)


@pytest.mark.parametrize("blocks, message", [
    ([3, 1], "increasing"), ([], "one or more"), ([1, 2], r"exit blocks \[2\] are not in"),
])
def test_bad_exit_blocks(cache16, blocks, message):
    with pytest.raises(ConfigError, match=message):
        proxy.train_branches(cache16, blocks, "pool", steps=1)


def test_exit_outputs_checks_branch_count(cache16):
    with pytest.raises(ConfigError, match="2 exit blocks but 1 branches"):
        proxy.exit_outputs(cache16, [1, 3], [build_branch("pool", (16, 8, 8), 10)], "val")
