"""Feature cache: contents, memory bounds, dtype, and the on-disk cache."""
from __future__ import annotations

import pytest
import torch

from dse.data import split_tensors
from dse.errors import ConfigError
from dse.train import features as tf
from dse.train.feature_file import read_feature_file


def test_cache_holds_backbone_features_logits_and_labels(backbone, digits, cache32):
    assert cache32.blocks == (0, 1, 2, 3, 4, 5)  # every attach point: all blocks but the last
    assert set(cache32.splits) == {"train", "val", "test"}
    x, y = split_tensors(digits.val)
    with torch.no_grad():
        feats = backbone.features(x)
        logits = backbone(x)
    val = cache32.split("val")
    for b in cache32.blocks:
        assert cache32.shapes[b] == tuple(feats[b].shape[1:])
        torch.testing.assert_close(val.features[b], feats[b], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(val.logits, logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(val.labels, y) and torch.equal(val.indices, torch.arange(len(y)))
    assert cache32.num_classes == 10 and not backbone.training


def test_sizes_are_counted(cache32):
    # digits-resnet on 8x8: blocks 0-2 are 16x8x8, 3-4 are 32x4x4, 5 is 64x2x2
    per_sample = (3 * 16 * 64 + 2 * 32 * 16 + 64 * 4) * 4 + 10 * 4 + 8 + 8
    assert cache32.nbytes == per_sample * (1078 + 360 + 359)
    assert f"{cache32.nbytes / 2**20:.1f} MiB" in cache32.describe()
    assert "float32" in cache32.describe()


def test_float16_halves_feature_storage(cache16, cache32):
    assert cache16.dtype == torch.float16 and cache16.blocks == (1, 3)
    assert cache16.split("train").features[1].dtype == torch.float16
    torch.testing.assert_close(cache16.split("train").features[1].float(),
                               cache32.split("train").features[1], rtol=1e-3, atol=1e-3)
    feats, logits, labels = cache16.batch("train", torch.tensor([5, 0]), [3, 1])
    assert [f.dtype for f in feats] == [torch.float32, torch.float32]  # branches see float32
    assert feats[0].shape == (2, 32, 4, 4) and logits.shape == (2, 10)
    assert torch.equal(labels, cache32.split("train").labels[[5, 0]])


def test_max_samples_keeps_a_seeded_subset(backbone, digits):
    a = tf.build_feature_cache(backbone, digits, [2], splits=("train",), max_samples=50,
                               seed=1, cache_dir=False)
    b = tf.build_feature_cache(backbone, digits, [2], splits=("train",), max_samples=50,
                               seed=1, cache_dir=False)
    c = tf.build_feature_cache(backbone, digits, [2], splits=("train",), max_samples=50,
                               seed=2, cache_dir=False)
    rows = a.split("train").indices
    assert len(a.split("train")) == 50 and torch.equal(rows, b.split("train").indices)
    assert not torch.equal(rows, c.split("train").indices)
    assert torch.equal(rows, rows.sort().values) and len(set(rows.tolist())) == 50
    x, y = split_tensors(digits.train)
    with torch.no_grad():
        expected = backbone.features(x[rows])[2].half()
    torch.testing.assert_close(a.split("train").features[2].float(), expected.float(),
                               rtol=1e-3, atol=1e-3)
    assert torch.equal(a.split("train").labels, y[rows])


def test_subset_indices():
    assert torch.equal(tf.subset_indices(5, None, 0), torch.arange(5))
    assert torch.equal(tf.subset_indices(5, 9, 0), torch.arange(5))
    with pytest.raises(ConfigError, match="max_samples must be >= 1"):
        tf.subset_indices(5, 0, 0)


def test_disk_cache_is_reused_and_keyed(backbone, digits, tmp_path, monkeypatch):
    first = tf.build_feature_cache(backbone, digits, [1], splits=("val",), cache_dir=tmp_path)
    files = sorted(tmp_path.glob("*.feat"))
    assert len(files) == 1 and files[0].stem == first.keys["val"]

    def no_compute(*args, **kwargs):
        raise AssertionError("features should come from disk")

    monkeypatch.setattr(tf, "stream_split_features", no_compute)
    again = tf.build_feature_cache(backbone, digits, [1], splits=("val",), cache_dir=tmp_path)
    assert torch.equal(again.split("val").features[1], first.split("val").features[1])
    assert torch.equal(again.split("val").logits, first.split("val").logits)
    monkeypatch.undo()

    # other weights, dtype, sample limit or seed of a subset -> another key
    changed = [dict(dtype=torch.float32), dict(max_samples=10), dict(max_samples=10, seed=1)]
    keys = {first.keys["val"]}
    for kwargs in changed:
        c = tf.build_feature_cache(backbone, digits, [1], splits=("val",), cache_dir=tmp_path, **kwargs)
        keys.add(c.keys["val"])
    other = tf.build_feature_cache(backbone, digits, [1], splits=("val",), cache_dir=False)
    assert other.keys == {}
    import copy

    tweaked = copy.deepcopy(backbone)
    with torch.no_grad():
        tweaked.head.fc.bias[0] += 1.0
    keys.add(tf.build_feature_cache(tweaked, digits, [1], splits=("val",), cache_dir=tmp_path).keys["val"])
    assert len(keys) == 5


def test_damaged_disk_cache_is_recomputed(backbone, digits, tmp_path):
    first = tf.build_feature_cache(backbone, digits, [4], splits=("test",), cache_dir=tmp_path)
    path = tmp_path / f"{first.keys['test']}.feat"
    expected = first.split("test").features[4].clone()
    del first
    path.write_bytes(b"garbage")
    again = tf.build_feature_cache(backbone, digits, [4], splits=("test",), cache_dir=tmp_path)
    assert torch.equal(again.split("test").features[4], expected)
    assert read_feature_file(path)["block4"].shape == expected.shape  # rewritten


def test_default_disk_location_is_the_dse_cache(backbone, digits, tmp_path, monkeypatch):
    monkeypatch.setenv("DSE_CACHE", str(tmp_path))
    c = tf.build_feature_cache(backbone, digits, [5], splits=("val",))
    assert (tmp_path / "features" / f"{c.keys['val']}.feat").is_file()


def test_log_receives_the_size(backbone, digits):
    lines: list[str] = []
    tf.build_feature_cache(backbone, digits, [5], splits=("val",), cache_dir=False, log=lines.append)
    assert len(lines) == 1 and "MiB" in lines[0] and "val 360" in lines[0]


def test_derived_is_memoised(cache32):
    calls = []

    def gap(x):
        calls.append(x.shape[0])
        return x.mean(dim=(2, 3))

    a = cache32.derived("val", 1, "gap", gap, batch_size=100)
    b = cache32.derived("val", 1, "gap", gap)
    assert a is b and calls == [100, 100, 100, 60]
    torch.testing.assert_close(a, cache32.split("val").features[1].mean(dim=(2, 3)))


@pytest.mark.parametrize("kwargs, message", [
    (dict(blocks=[6]), "attach points are 0..5"),
    (dict(blocks=[-1]), "attach points"),
    (dict(dtype="int8"), "dtype must be one of"),
    (dict(splits=("holdout",)), "split must be one of"),
])
def test_bad_arguments(backbone, digits, kwargs, message):
    blocks = kwargs.pop("blocks", [1])
    with pytest.raises(ConfigError, match=message):
        tf.build_feature_cache(backbone, digits, blocks, cache_dir=False, **kwargs)


def test_missing_split_and_block_errors(cache16):
    with pytest.raises(ConfigError, match="split 'test' was not cached"):
        cache16.split("test")
    with pytest.raises(ConfigError, match=r"exit blocks \[2\] are not in the feature cache"):
        cache16.check_blocks([1, 2])
