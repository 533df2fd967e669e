"""Backbone training and the cached default checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dse.data.base import array_splits
from dse.errors import CheckpointError, ConfigError
from dse.models.backbones import build_backbone
from dse.models.checkpoint import load_state_dict
from dse.train import backbone as tb


def test_random_shift_moves_each_image_by_its_offset():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3) + 1
    gen = torch.Generator().manual_seed(0)
    out = tb.random_shift(x, 1, gen)
    # recompute the offsets the function drew
    gen = torch.Generator().manual_seed(0)
    dy, dx = torch.randint(0, 3, (2,), generator=gen), torch.randint(0, 3, (2,), generator=gen)
    for b in range(2):
        padded = torch.nn.functional.pad(x[b, 0], (1, 1, 1, 1))
        expected = padded[dy[b]:dy[b] + 3, dx[b]:dx[b] + 3]
        assert torch.equal(out[b, 0], expected)


def test_random_shift_hand_example_and_flip():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])

    out = tb.random_shift(x, 0, torch.Generator().manual_seed(0))
    assert torch.equal(out, x)  # no padding, no flip: unchanged
    flips = [tb.random_shift(x, 0, torch.Generator().manual_seed(s), flip=True) for s in range(8)]
    mirrored = torch.tensor([[[[2.0, 1.0], [4.0, 3.0]]]])
    assert any(torch.equal(f, mirrored) for f in flips) and any(torch.equal(f, x) for f in flips)


def test_train_backbone_one_epoch_is_seeded(digits):
    m1, metrics = tb.train_backbone("digits-resnet", digits, epochs=1, seed=3, progress=False)
    m2, _ = tb.train_backbone("digits-resnet", digits, epochs=1, seed=3, progress=False)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert set(metrics) >= {"val_accuracy", "test_accuracy", "train_loss", "epochs", "steps"}
    assert metrics["epochs"] == 1 and metrics["steps"] == int(np.ceil(1078 / 64))
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["val_accuracy"] == pytest.approx(tb.accuracy(m1, digits.val))
    assert not m1.training


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs >= 1"),
    ({"lr": -1.0}, "lr > 0"),
    ({"optimizer": "rmsprop"}, "backbone optimizer must be adam or sgd, got 'rmsprop'"),
])
def test_train_backbone_rejects_bad_settings(digits, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        tb.train_backbone("digits-resnet", digits, progress=False, **kwargs)


def test_train_backbone_divergence_is_a_clear_error(digits):
    with pytest.raises(ConfigError, match="diverged"):
        tb.train_backbone("digits-resnet", digits, epochs=1, lr=1e12, progress=False)


def test_ensure_backbone_trains_once_then_reads_the_cache(digits, monkeypatch):
    logs: list[str] = []
    model, info = tb.ensure_backbone("digits-resnet", "digits", seed=0, epochs=1, splits=digits,
                                     progress=False, log=logs.append)
    assert info.source == "trained" and info.path.endswith(".pt")
    assert "val accuracy" in logs[-1] and info.path in logs[-1]
    saved = torch.load(info.path, weights_only=True)
    assert set(saved) >= {"state_dict", "backbone", "dataset", "num_classes", "in_channels",
                          "input_size", "metrics"}
    assert (saved["backbone"], saved["dataset"], saved["num_classes"], saved["in_channels"],
            saved["input_size"]) == ("digits-resnet", "digits", 10, 1, 8)

    def no_training(*args, **kwargs):
        raise AssertionError("should have been read from the cache")

    monkeypatch.setattr(tb, "train_backbone", no_training)
    again, info2 = tb.ensure_backbone("digits-resnet", "digits", seed=0, epochs=1, splits=digits,
                                      progress=False, log=None)
    assert info2.source == "cache" and info2.path == info.path
    assert info2.metrics["val_accuracy"] == info.metrics["val_accuracy"]
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


def test_cache_key_separates_seed_and_epochs():
    p = tb.cached_backbone_path("digits-resnet", "digits", seed=0, input_size=8, epochs=30)
    assert p != tb.cached_backbone_path("digits-resnet", "digits", seed=1, input_size=8, epochs=30)
    assert p != tb.cached_backbone_path("digits-resnet", "digits", seed=0, input_size=16, epochs=30)
    assert p != tb.cached_backbone_path("digits-resnet", "digits", seed=0, input_size=8, epochs=5)
    assert p.name.startswith("digits-resnet_digits_s0_8px_e30_")


def test_damaged_cache_file_is_retrained(digits):
    path = tb.cached_backbone_path("digits-resnet", "digits", seed=0, input_size=8, epochs=1)
    path.write_bytes(b"not a checkpoint")
    logs: list[str] = []
    _, info = tb.ensure_backbone("digits-resnet", "digits", epochs=1, splits=digits,
                                 progress=False, log=logs.append)
    assert info.source == "trained"
    assert any("ignoring unusable cached backbone" in line for line in logs)
    torch.load(path, weights_only=True)  # replaced by a good file


def test_checkpoint_is_loaded_as_given(digits, tmp_path):
    model = build_backbone("digits-resnet", num_classes=10, in_channels=1)
    path = tb.save_backbone(tmp_path / "b.pt", model, "digits-resnet", "digits", digits.info,
                            {"val_accuracy": 0.5})
    other = build_backbone("digits-resnet", num_classes=10, in_channels=1)
    load_state_dict(other, str(path))  # the lead's loader reads it too
    loaded, info = tb.ensure_backbone("digits-resnet", "digits", checkpoint=str(path),
                                      splits=digits, log=None)
    assert info.source == "checkpoint" and info.metrics == {"val_accuracy": 0.5}
    assert torch.equal(loaded.state_dict()["head.fc.weight"], model.state_dict()["head.fc.weight"])
    # a plain state dict works too, with no metrics
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    _, info = tb.ensure_backbone("digits-resnet", "digits", checkpoint=str(tmp_path / "plain.pt"),
                                 splits=digits, log=None)
    assert info.metrics == {}


def test_missing_checkpoint_is_a_checkpoint_error(digits, tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        tb.ensure_backbone("digits-resnet", "digits", checkpoint=str(tmp_path / "none.pt"),
                           splits=digits, log=None)


def test_user_backbone_needs_a_checkpoint(digits):
    with pytest.raises(ConfigError, match="needs --checkpoint"):
        tb.ensure_backbone("mypkg.models:net", "digits", splits=digits, log=None)


def _fake_cifar(seed: int = 0):
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 255, (40, 3, 8, 8), dtype=np.uint8))
    labels = torch.from_numpy(np.arange(40) % 2)
    parts = {"train": (images, labels, np.arange(0, 24)), "val": (images, labels, np.arange(24, 32)),
             "test": (images, labels, np.arange(32, 40))}
    return array_splits("cifar10", parts, ["a", "b"], 1 / 255, None, "/data/fake")


def test_other_datasets_train_with_a_cost_notice():
    splits = _fake_cifar()
    logs: list[str] = []
    model, info = tb.ensure_backbone("digits-resnet", "cifar10:/data/fake", epochs=1,
                                     splits=splits, progress=False, log=logs.append)
    assert info.source == "trained" and info.num_classes == 2 and info.in_channels == 3
    assert "no --checkpoint" in logs[0] and "can take long" in logs[0]
    assert "cifar10-data-fake" in info.path
