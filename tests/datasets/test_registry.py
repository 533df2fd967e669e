"""Spec parsing, the registry, errors common to every dataset, and the split helpers."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

import dse.data.base as base
from dse.data import (DATASETS, ArrayDataset, Normalizer, load_dataset, parse_spec,
                      split_batches, split_labels, split_tensors)
from dse.errors import ConfigError, DataError, UnknownNameError

REAL = [n for n in DATASETS.names() if n not in ("digits", "digits-hard")]  # need a PATH


def test_registered_names():
    assert DATASETS.names() == ["digits", "cifar10", "cifar100", "mnist", "fashion-mnist",
                                "svhn", "digits-hard", "imagefolder"]


def test_parse_spec(tmp_path):
    assert parse_spec("digits") == ("digits", None)
    assert parse_spec(f"CIFAR-10:{tmp_path}") == ("cifar10", tmp_path)
    assert parse_spec("fashion_mnist:") == ("fashion-mnist", None)
    name, path = parse_spec("svhn:~/svhn")
    assert name == "svhn" and "~" not in str(path)


def test_unknown_name_lists_names():
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'imagenet'.*digits, cifar10"):
        load_dataset("imagenet:/x")


@pytest.mark.parametrize("spec", ["", "   ", None])
def test_empty_spec(spec):
    with pytest.raises(ConfigError, match="NAME or NAME:PATH"):
        parse_spec(spec)


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "32"])
def test_bad_input_size(size):
    with pytest.raises(ConfigError, match="input_size must be a positive integer"):
        load_dataset("digits", input_size=size)


@pytest.mark.parametrize("name", REAL)
def test_real_dataset_without_path_says_nothing_is_downloaded(name):
    with pytest.raises(DataError, match=rf"dataset '{name}' needs a path: .*nothing is downloaded"):
        load_dataset(name)


@pytest.mark.parametrize("name", REAL)
def test_missing_path(name, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=rf"{missing}: no such folder; expected"):
        load_dataset(f"{name}:{missing}")


@pytest.mark.parametrize("name", REAL)
def test_file_or_archive_instead_of_folder(name, tmp_path):
    (tmp_path / "data.bin").write_bytes(b"x")
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"x")
    with pytest.raises(DataError, match=r"data.bin: is a file; expected"):
        load_dataset(f"{name}:{tmp_path / 'data.bin'}")
    with pytest.raises(DataError, match=r"is an archive; extract it"):
        load_dataset(f"{name}:{tmp_path / 'cifar-10-python.tar.gz'}")


@pytest.mark.parametrize("name", REAL)
def test_empty_folder_is_the_wrong_format(name, tmp_path):
    with pytest.raises(DataError, match=rf"^{tmp_path}: no .*expected"):
        load_dataset(f"{name}:{tmp_path}")


def test_errors_are_one_line(tmp_path):
    for name in REAL:
        with pytest.raises(DataError) as err:
            load_dataset(f"{name}:{tmp_path}")
        assert "\n" not in str(err.value)


def _u8(n=10, c=3, h=4):
    return torch.arange(n * c * h * h, dtype=torch.int64).remainder(256).to(torch.uint8).view(n, c, h, h)


def test_normalizer_formula():
    norm = Normalizer(scale=1 / 255, mean=(0.5, 0.25), std=(0.5, 2.0), size=2)
    u8 = torch.tensor([[[[0, 255], [51, 102]], [[255, 0], [0, 0]]]], dtype=torch.uint8)
    x = norm(u8)
    assert torch.allclose(x[0, 0], torch.tensor([[-1.0, 1.0], [-0.6, -0.2]]))
    assert torch.allclose(x[0, 1], torch.tensor([[0.375, -0.125], [-0.125, -0.125]]))


def test_lazy_conversion_matches_eager(monkeypatch):
    images, labels = _u8(), torch.arange(10) % 3
    norm = Normalizer(1 / 255, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5), size=6)
    eager = ArrayDataset(images, labels, torch.tensor([1, 4, 7]), norm)
    monkeypatch.setattr(base, "EAGER_BYTES", 0)
    lazy = ArrayDataset(images, labels, torch.tensor([1, 4, 7]), norm)
    assert eager._float is not None and lazy._float is None
    Xe, ye = eager.tensors()
    Xl, yl = lazy.tensors()
    assert Xl.shape == (3, 3, 6, 6) and torch.allclose(Xe, Xl) and torch.equal(ye, yl)
    assert torch.allclose(lazy[2][0], Xe[2]) and lazy[2][1] == 7 % 3
    assert torch.allclose(lazy[-3][0], Xe[0]) and lazy[-3][1] == 1
    with pytest.raises(IndexError):
        lazy[3]
    got = list(lazy.batches(2, device="cpu"))
    assert [b[0].shape[0] for b in got] == [2, 1] and torch.allclose(torch.cat([b[0] for b in got]), Xe)
    items = lazy.__getitems__([2, 0])
    assert torch.allclose(items[0][0], Xe[2]) and items[1][1] == 1


@pytest.mark.parametrize("eager", [True, False])
def test_subset_batches_follow_the_subset_order(monkeypatch, eager):
    if not eager:
        monkeypatch.setattr(base, "EAGER_BYTES", 0)
    norm = Normalizer(1 / 255, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), size=4)
    ds = ArrayDataset(_u8(), torch.arange(10), torch.tensor([0, 2, 4, 6, 8]), norm)
    sub = torch.utils.data.Subset(ds, [4, 0, 3])
    got = list(split_batches(sub, 2))
    assert [b[1].tolist() for b in got] == [[8, 0], [6]]
    X = torch.cat([b[0] for b in got])
    assert torch.allclose(X, torch.stack([ds[4][0], ds[0][0], ds[3][0]]))
    Xt, yt = split_tensors(sub)
    assert torch.allclose(Xt, X) and yt.tolist() == [8, 0, 6]


def test_helpers_on_a_plain_dataset():
    X = torch.randn(5, 1, 2, 2)
    y = torch.tensor([0, 1, 0, 1, 1])
    ds = TensorDataset(X, y)
    Xt, yt = split_tensors(ds)
    assert torch.equal(Xt, X) and torch.equal(yt, y)
    assert torch.equal(split_labels(ds), y)
    assert [b[0].shape[0] for b in split_batches(ds, 2)] == [2, 2, 1]


def test_data_splits_split_name():
    splits = load_dataset("digits")
    assert splits.split("val") is splits.val
    with pytest.raises(ValueError, match="train, val or test"):
        splits.split("holdout")
