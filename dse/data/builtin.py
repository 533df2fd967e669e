"""Array-backed datasets: digits (bundled), CIFAR-10/100, MNIST, Fashion-MNIST, SVHN.

Splits (see :mod:`dse.data.splits`):

- ``digits`` (scikit-learn's 1,797 8x8 images, 10 classes): stratified 60/20/20 by seed.
- datasets with an official test set keep it as test; val is a stratified, seeded 10% of the
  official train set (CIFAR ``test_batch``/``test``, MNIST ``t10k-*``, SVHN ``test_32x32.mat``).

Pixels are kept as uint8 and scaled to [0, 1] on conversion (digits store 0..16, so 1/16).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from dse.data.base import DataSplits, array_splits
from dse.data.formats import (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, check_labels, read_cifar_batch,
                              read_idx, read_pickle_dict, read_svhn_mat)
from dse.data.registry import DATASETS, require_folder
from dse.data.splits import VAL_FRACTION, stratified_split
from dse.errors import DataError

DIGIT_CLASSES = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@DATASETS.register("digits")
def load_digits(path: Path | None, *, seed: int, input_size: int | None) -> DataSplits:
    """scikit-learn's bundled 8x8 digits (values 0..16), split 60/20/20, stratified by seed."""
    if path is not None:
        raise DataError(f"dataset 'digits' is bundled with scikit-learn and takes no path, "
                        f"got 'digits:{path}'")
    from sklearn.datasets import load_digits as sk_digits  # slow import, only when used

    bunch = sk_digits()
    images = torch.from_numpy(bunch.images.astype(np.uint8)[:, None])  # [1797, 1, 8, 8]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train, val, test = stratified_split(bunch.target, (0.6, 0.2, 0.2), seed)
    parts = {"train": (images, labels, train), "val": (images, labels, val),
             "test": (images, labels, test)}
    return array_splits("digits", parts, DIGIT_CLASSES, 1 / 16, input_size, None)


def official_test_splits(
    name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str], *, seed: int, input_size: int | None, path: Path,
) -> DataSplits:
    """Keep the official test set; val = stratified, seeded ``VAL_FRACTION`` of train."""
    train_x, train_y = train
    if train_x.shape[1:] != test[0].shape[1:]:
        raise DataError(f"{path}: train images are {list(train_x.shape[1:])} (C,H,W) but test "
                        f"images are {list(test[0].shape[1:])}; expected the same shape")
    tr, va = stratified_split(train_y, (1 - VAL_FRACTION, VAL_FRACTION), seed)
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    parts = {"train": (x, y, tr), "val": (x, y, va),
             "test": (torch.from_numpy(test[0]), torch.from_numpy(test[1]), None)}
    return array_splits(name, parts, class_names, 1 / 255, input_size, str(path))


# ---------------------------------------------------------------- CIFAR (python pickles)

def cifar_folder(path: Path, folder_name: str, first_file: str) -> Path:
    """The folder holding the CIFAR files: ``path``, or its extracted ``folder_name`` when
    the parent of the extracted folder was given."""
    if not (path / first_file).exists() and (path / folder_name).is_dir():
        return path / folder_name
    return path


def _cifar(name: str, path: Path | None, folder_name: str, train_files: Sequence[str],
           test_file: str, meta: tuple[str, str], label_key: str, num_classes: int,
           default_names: Sequence[str], seed: int, input_size: int | None) -> DataSplits:
    listing = "data_batch_1..5" if len(train_files) == 5 else ", ".join(train_files)
    expected = f"the extracted {folder_name} folder ({listing}, {test_file}, {meta[0]})"
    folder = cifar_folder(require_folder(name, path, expected), folder_name, train_files[0])
    for fname in (*train_files, test_file):
        if not (folder / fname).is_file():
            raise DataError(f"{folder}: no '{fname}'; expected {expected}")
    names = list(default_names)
    if (folder / meta[0]).is_file():
        listed = read_pickle_dict(folder / meta[0], "CIFAR meta").get(meta[1], names)
        names = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in listed]
        if len(names) != num_classes:
            raise DataError(f"{folder / meta[0]}: '{meta[1]}' lists {len(names)} classes, "
                            f"expected {num_classes}")
    batches = [read_cifar_batch(folder / f, label_key, num_classes) for f in train_files]
    train = (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    del batches
    test = read_cifar_batch(folder / test_file, label_key, num_classes)
    return official_test_splits(name, train, test, names, seed=seed, input_size=input_size,
                                path=folder)


@DATASETS.register("cifar10", "cifar-10")
def load_cifar10(path: Path | None, *, seed: int, input_size: int | None) -> DataSplits:
    """CIFAR-10 from the extracted ``cifar-10-batches-py`` folder."""
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    return _cifar("cifar10", path, "cifar-10-batches-py", train_files, "test_batch",
                  ("batches.meta", "label_names"), "labels", 10, CIFAR10_CLASSES, seed, input_size)


@DATASETS.register("cifar100", "cifar-100")
def load_cifar100(path: Path | None, *, seed: int, input_size: int | None) -> DataSplits:
    """CIFAR-100 (fine labels) from the extracted ``cifar-100-python`` folder."""
    return _cifar("cifar100", path, "cifar-100-python", ["train"], "test",
                  ("meta", "fine_label_names"), "fine_labels", 100,
                  tuple(str(i) for i in range(100)), seed, input_size)


# ---------------------------------------------------------------- MNIST-style IDX files

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def find_idx(name: str, folder: Path, stem: str) -> Path:
    """``stem`` or ``stem.gz`` (also the ``train-images.idx3-ubyte`` spelling, and ``raw/``)."""
    dotted = stem.replace("-idx", ".idx")
    for base in (folder, folder / "raw"):
        for candidate in (stem, stem + ".gz", dotted, dotted + ".gz"):
            if (base / candidate).is_file():
                return base / candidate
    raise DataError(f"{folder}: no '{stem}[.gz]'; expected the {name} IDX files "
                    f"{', '.join(s + '[.gz]' for s in IDX_STEMS)}")


def _idx_pair(name: str, folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    img_path = find_idx(name, folder, f"{prefix}-images-idx3-ubyte")
    lab_path = find_idx(name, folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(img_path, IDX_IMAGES_MAGIC)
    labels = read_idx(lab_path, IDX_LABELS_MAGIC).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{lab_path}: {labels.shape[0]} labels for {images.shape[0]} images "
                        f"in {img_path.name}")
    check_labels(lab_path, labels, 10)
    return images[:, None], labels  # [N, 1, rows, cols]


def _idx_dataset(name: str, path: Path | None, class_names: Sequence[str], seed: int,
                 input_size: int | None) -> DataSplits:
    folder = require_folder(name, path, "a folder with the IDX files train-images-idx3-ubyte[.gz], "
                                        "train-labels-idx1-ubyte[.gz], t10k-*")
    train = _idx_pair(name, folder, "train")
    test = _idx_pair(name, folder, "t10k")
    return official_test_splits(name, train, test, class_names, seed=seed,
                                input_size=input_size, path=folder)


@DATASETS.register("mnist")
def load_mnist(path: Path | None, *, seed: int, input_size: int | None) -> DataSplits:
    """MNIST from its four IDX files, gzipped or not."""
    return _idx_dataset("mnist", path, DIGIT_CLASSES, seed, input_size)


@DATASETS.register("fashion-mnist", "fashion_mnist", "fashionmnist")
def load_fashion_mnist(path: Path | None, *, seed: int, input_size: int | None) -> DataSplits:
    """Fashion-MNIST (Xiao et al. 2017): same IDX layout and file names as MNIST."""
    return _idx_dataset("fashion-mnist", path, FASHION_CLASSES, seed, input_size)


# ---------------------------------------------------------------- SVHN (.mat)

@DATASETS.register("svhn")
def load_svhn(path: Path | None, *, seed: int, input_size: int | None) -> DataSplits:
    """SVHN cropped digits from ``train_32x32.mat`` and ``test_32x32.mat`` (extra is unused)."""
    expected = "a folder with train_32x32.mat and test_32x32.mat"
    folder = require_folder("svhn", path, expected)
    for fname in ("train_32x32.mat", "test_32x32.mat"):
        if not (folder / fname).is_file():
            raise DataError(f"{folder}: no '{fname}'; expected {expected}")
    train = read_svhn_mat(folder / "train_32x32.mat")
    test = read_svhn_mat(folder / "test_32x32.mat")
    return official_test_splits("svhn", train, test, DIGIT_CLASSES, seed=seed,
                                input_size=input_size, path=folder)
