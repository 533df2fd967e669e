"""The embedded default: scikit-learn's bundled 8x8 digits, split 60/20/20 by seed."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from dse.data import DATASETS, DEFAULT_DATASET, ArrayDataset, load_dataset, split_tensors
from dse.errors import DataError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def test_default_is_digits_and_registered_first():
    assert DEFAULT_DATASET == "digits"
    assert DATASETS.names()[0] == "digits"


def test_info_and_sizes(digits):
    info = digits.info
    assert (info.name, info.num_classes, info.channels, info.input_size) == ("digits", 10, 1, 8)
    assert info.class_names == tuple("0123456789")
    assert info.path is None
    # 1,797 images: round(0.6 N)=1078, round(0.8 N)=1438 -> 1078 / 360 / 359
    assert digits.sizes() == {"train": 1078, "val": 360, "test": 359}


def test_items_and_tensors(digits):
    x, y = digits.train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and isinstance(y, int)
    X, Y = split_tensors(digits.val)
    assert X.shape == (360, 1, 8, 8) and X.dtype == torch.float32 and Y.dtype == torch.int64
    assert torch.equal(X[5], digits.val[5][0]) and int(Y[5]) == digits.val[5][1]
    assert isinstance(digits.train, ArrayDataset)


def test_train_split_is_normalised_by_its_own_stats(digits):
    X, _ = split_tensors(digits.train)
    assert abs(float(X.mean())) < 1e-5 and abs(float(X.std(unbiased=False)) - 1) < 1e-5
    # the stats are on the [0, 1] scale (raw digits are 0..16): mean pixel of digits ~ 4.9/16
    assert 0.25 < digits.info.mean[0] < 0.35 and 0.3 < digits.info.std[0] < 0.45
    # reconstruct raw values: x * std + mean, times 16, must be integers 0..16
    raw = (X * digits.info.std[0] + digits.info.mean[0]) * 16
    assert torch.allclose(raw, raw.round(), atol=1e-4) and raw.min() > -1e-4 and raw.max() < 16.001


def test_stratified(digits):
    per_split = {s: torch.bincount(split_tensors(digits.split(s))[1], minlength=10)
                 for s in ("train", "val", "test")}
    per_class = sum(per_split.values())
    assert int(per_class.sum()) == 1797
    for split, frac in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        assert torch.all((per_split[split] - frac * per_class).abs() < 2), split


def test_splits_disjoint_and_cover(digits):
    rows = [set(digits.split(s).indices.tolist()) for s in ("train", "val", "test")]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert len(rows[0] | rows[1] | rows[2]) == 1797


def test_same_seed_same_splits_other_seed_other_val(digits):
    again = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    for s in ("train", "val", "test"):
        assert torch.equal(digits.split(s).indices, again.split(s).indices)
        assert torch.equal(split_tensors(digits.split(s))[0], split_tensors(again.split(s))[0])
    assert not torch.equal(digits.val.indices, other.val.indices)
    assert other.sizes() == digits.sizes()


def test_input_size_resizes_bilinear():
    up = load_dataset("digits", input_size=16)
    assert up.info.input_size == 16 and up.train[0][0].shape == (1, 16, 16)
    base = load_dataset("digits")
    X8, _ = split_tensors(base.val)
    X16, _ = split_tensors(up.val)
    # the same mean/std, and bilinear upsampling keeps the image mean (within interpolation)
    assert up.info.mean == base.info.mean
    assert torch.allclose(X16.mean(dim=(1, 2, 3)), X8.mean(dim=(1, 2, 3)), atol=0.05)


def test_dataloader_batches_via_getitems(digits):
    loader = DataLoader(digits.test, batch_size=64, shuffle=False)
    X, y = next(iter(loader))
    assert X.shape == (64, 1, 8, 8) and y.dtype == torch.int64
    assert torch.equal(X, split_tensors(digits.test)[0][:64])
    items = digits.test.__getitems__([3, 1])
    assert torch.equal(items[0][0], digits.test[3][0]) and items[1][1] == digits.test[1][1]


def test_digits_takes_no_path(tmp_path):
    with pytest.raises(DataError, match=r"'digits' is bundled with scikit-learn and takes no path"):
        load_dataset(f"digits:{tmp_path}")
