"""SVHN from tiny MATLAB .mat files written with scipy.io.savemat."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from dse.data import load_dataset, split_labels, split_tensors
from dse.errors import DataError
from tests.datasets.builders import fake_images, fake_labels


def test_loads_and_maps_label_10_to_0(svhn_dir):
    s = load_dataset(f"svhn:{svhn_dir}", seed=0)
    info = s.info
    assert (info.name, info.num_classes, info.channels, info.input_size) == ("svhn", 10, 3, 32)
    assert s.sizes() == {"train": 36, "val": 4, "test": 20}
    assert split_labels(s.test).tolist() == fake_labels(20, 10).tolist()  # file has 10 for 0
    X, _ = split_tensors(s.test)
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    raw = (X * std + mean) * 255  # HxWxCxN in the file -> NxCxHxW, same pixels
    assert torch.allclose(raw, torch.from_numpy(fake_images(20, (3, 32, 32), 8)).float(), atol=1e-3)


def test_seeded_val(svhn_dir):
    a = load_dataset(f"svhn:{svhn_dir}", seed=0)
    b = load_dataset(f"svhn:{svhn_dir}", seed=0)
    c = load_dataset(f"svhn:{svhn_dir}", seed=5)
    assert torch.equal(a.val.indices, b.val.indices) and not torch.equal(a.val.indices, c.val.indices)


def test_missing_test_file(svhn_dir):
    (svhn_dir / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"no 'test_32x32.mat'; expected a folder with train_32x32.mat"):
        load_dataset(f"svhn:{svhn_dir}")


def test_corrupt_mat(svhn_dir):
    path = svhn_dir / "train_32x32.mat"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"train_32x32.mat: "):
        load_dataset(f"svhn:{svhn_dir}")
    path.write_bytes(b"definitely not matlab" * 20)
    with pytest.raises(DataError, match=r"train_32x32.mat: not a readable .mat file"):
        load_dataset(f"svhn:{svhn_dir}")


def test_missing_variable(svhn_dir):
    scipy.io.savemat(str(svhn_dir / "test_32x32.mat"), {"images": np.zeros((2, 2))})
    with pytest.raises(DataError, match=r"test_32x32.mat: expected 'X' \[H,W,3,N\] and 'y'"):
        load_dataset(f"svhn:{svhn_dir}")


def test_label_out_of_range(svhn_dir):
    x = np.zeros((32, 32, 3, 2), np.uint8)
    scipy.io.savemat(str(svhn_dir / "test_32x32.mat"), {"X": x, "y": np.array([[0], [3]])})
    with pytest.raises(DataError, match=r"SVHN labels must be in 1..10 \(10 = digit 0\), got 0..3"):
        load_dataset(f"svhn:{svhn_dir}")


def test_count_mismatch(svhn_dir):
    x = np.zeros((32, 32, 3, 3), np.uint8)
    scipy.io.savemat(str(svhn_dir / "test_32x32.mat"), {"X": x, "y": np.array([[1], [3]])})
    with pytest.raises(DataError, match=r"3 images in 'X' but 2 labels in 'y'"):
        load_dataset(f"svhn:{svhn_dir}")


def test_train_test_shape_mismatch(svhn_dir):
    x = np.zeros((16, 16, 3, 2), np.uint8)
    scipy.io.savemat(str(svhn_dir / "test_32x32.mat"), {"X": x, "y": np.array([[1], [3]])})
    with pytest.raises(DataError, match=r"train images are \[3, 32, 32\] .* test images are \[3, 16, 16\]"):
        load_dataset(f"svhn:{svhn_dir}")


def test_matlab_v73_file(svhn_dir):
    path = svhn_dir / "train_32x32.mat"
    raw = bytearray(path.read_bytes())
    assert raw[126:128] == b"IM"  # little-endian v5 header; version bytes 124..125
    raw[124:126] = b"\x00\x02"  # what a v7.3 (HDF5) file declares
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"train_32x32.mat: MATLAB v7.3 file; expected the v5 .mat"):
        load_dataset(f"svhn:{svhn_dir}")
