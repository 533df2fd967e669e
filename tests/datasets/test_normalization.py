"""Settable input normalisation (dataset / imagenet / none / mean,std) and imagefolder's
short-side resize + centre crop."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dse.data import load_dataset, normalize_splits, parse_normalize, split_tensors
from dse.data.imagefolder import short_side_crop
from dse.errors import ConfigError
from tests.datasets.builders import make_cifar10


@pytest.fixture()
def cifar(tmp_path):
    return load_dataset(f"cifar10:{make_cifar10(tmp_path)}", seed=0)


def _pixels(splits):
    """The val split's raw pixels on [0, 1], from the dataset's own normalisation."""
    x, _ = split_tensors(splits.val)
    mean = torch.tensor(splits.info.mean).view(1, -1, 1, 1)
    std = torch.tensor(splits.info.std).view(1, -1, 1, 1)
    return x * std + mean


@pytest.mark.parametrize("spec, mean, std", [
    ("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("none", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    (((0.5, 0.5, 0.5), (0.25, 0.5, 1.0)), (0.5, 0.5, 0.5), (0.25, 0.5, 1.0)),
])
def test_normalisation_is_applied_and_recorded(cifar, spec, mean, std):
    s = normalize_splits(cifar, spec)
    assert s.info.mean == mean and s.info.std == std
    x, y = split_tensors(s.val)
    want = (_pixels(cifar) - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    torch.testing.assert_close(x, want, rtol=1e-4, atol=1e-4)
    assert torch.equal(y, split_tensors(cifar.val)[1])
    assert normalize_splits(cifar, "dataset") is cifar


def test_bad_normalisation_is_one_clear_error(cifar):
    with pytest.raises(ConfigError, match="need 3 values"):
        normalize_splits(cifar, ((0.5,), (0.5,)))
    with pytest.raises(ConfigError, match="needs RGB"):
        normalize_splits(load_dataset("digits"), "imagenet")
    with pytest.raises(ConfigError, match="go together"):
        parse_normalize(None, (0.5,), None)
    with pytest.raises(ConfigError, match="must be > 0"):
        parse_normalize(None, (0.5,), (0.0,))
    assert parse_normalize(None) == "dataset"


def test_short_side_crop_keeps_the_aspect_ratio():
    # a 2x4 image whose columns are 0, 100, 200, 250: shorter side 2 -> size 2 keeps it 2x4,
    # the centre 2x2 crop is columns 1..2
    img = torch.tensor([[0, 100, 200, 250]] * 2, dtype=torch.uint8)[None]
    out = short_side_crop(img, 2)
    assert out.shape == (1, 2, 2) and out[0].tolist() == [[100.0, 200.0], [100.0, 200.0]]
    # a square image is only resized (as before)
    sq = torch.from_numpy(np.arange(16, dtype=np.uint8).reshape(1, 4, 4))
    assert short_side_crop(sq, 4).tolist() == sq.float().tolist()
    # 4x8 -> shorter side 2: resized to 2x4, then centre-cropped to 2x2
    wide = torch.zeros(1, 4, 8, dtype=torch.uint8)
    wide[:, :, :2] = 255  # the left quarter is cut away by the crop
    assert short_side_crop(wide, 2).max() < 255 / 2
