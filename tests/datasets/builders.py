"""Tiny dataset files in each real on-disk format, for tests anywhere in the suite.

Import as ``from tests.datasets.builders import make_cifar10`` (the repository root must be on
``sys.path``; ``tests/datasets/conftest.py`` puts it there). Every builder writes into ``root``
(created if needed) and returns the path to pass as ``NAME:PATH``. Pixel values and labels are
deterministic functions of the index (see :func:`fake_images`, :func:`fake_labels`), so tests can
recompute what a loader should return.
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np


def fake_images(n: int, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """uint8 [n, *shape]; image ``i`` has value ``i % 256`` at its first pixel (to trace order)."""
    x = np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x.reshape(n, -1)[:, 0] = np.arange(n) % 256
    return x


def fake_labels(n: int, num_classes: int) -> np.ndarray:
    """int64 [n]: 0, 1, ..., K-1, 0, 1, ... (every class equally often)."""
    return np.arange(n, dtype=np.int64) % num_classes


def _dump(path: Path, obj: dict, legacy_numpy: bool) -> None:
    """Pickle like the CIFAR files: protocol 2; ``legacy_numpy`` names numpy 1.x's module."""
    raw = pickle.dumps(obj, protocol=2)
    if legacy_numpy:  # the real files were written by numpy 1.x: numpy.core.multiarray
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(raw)


def make_cifar10(root: Path, n_train: int = 50, n_test: int = 20, *, legacy_numpy: bool = True,
                 bytes_keys: bool = False) -> Path:
    """``data_batch_1..5`` (n_train split over them), ``test_batch``, ``batches.meta``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    x = fake_images(n_train, (3072,), seed=1)
    y = fake_labels(n_train, 10)
    for b, rows in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        _dump(root / f"data_batch_{b}", {key("batch_label"): f"training batch {b} of 5",
                                          key("labels"): y[rows].tolist(), key("data"): x[rows]},
              legacy_numpy)
    _dump(root / "test_batch", {key("labels"): fake_labels(n_test, 10).tolist(),
                                key("data"): fake_images(n_test, (3072,), seed=2)}, legacy_numpy)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(root / "batches.meta", {key("label_names"): names, key("num_cases_per_batch"): 10000},
          legacy_numpy)
    return root


def make_cifar100(root: Path, n_train: int = 200, n_test: int = 100, *,
                  legacy_numpy: bool = True) -> Path:
    """``train``, ``test`` (fine and coarse labels) and ``meta`` of CIFAR-100."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for fname, n, seed in (("train", n_train, 3), ("test", n_test, 4)):
        fine = fake_labels(n, 100)
        _dump(root / fname, {"fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
                             "data": fake_images(n, (3072,), seed=seed)}, legacy_numpy)
    _dump(root / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                          "coarse_label_names": [f"coarse{i}" for i in range(20)]}, legacy_numpy)
    return root


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> Path:
    """An IDX file of a uint8 array (``path`` gets ``.gz`` appended when ``gz``)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    raw = header + a.tobytes()
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def make_mnist(root: Path, n_train: int = 60, n_test: int = 20, *, gz: bool = True,
               size: int = 28) -> Path:
    """The four MNIST / Fashion-MNIST IDX files (``*-ubyte.gz`` when ``gz``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 5), ("t10k", n_test, 6)):
        write_idx(root / f"{prefix}-images-idx3-ubyte", fake_images(n, (size, size), seed), gz=gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", fake_labels(n, 10), gz=gz)
    return root


def make_svhn(root: Path, n_train: int = 40, n_test: int = 20) -> Path:
    """``train_32x32.mat`` and ``test_32x32.mat``: X uint8 [32,32,3,N], y [N,1] with 10 = digit 0."""
    import scipy.io

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for fname, n, seed in (("train_32x32.mat", n_train, 7), ("test_32x32.mat", n_test, 8)):
        x = fake_images(n, (3, 32, 32), seed)  # N,C,H,W as the loader returns it
        digits = fake_labels(n, 10)
        y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
        scipy.io.savemat(str(root / fname), {"X": np.transpose(x, (2, 3, 1, 0)), "y": y})
    return root


def make_imagefolder(root: Path, classes: Sequence[str] = ("cat", "dog", "emu"),
                     per_class: int = 10, *, size: tuple[int, int] = (12, 12), mode: str = "RGB",
                     splits: Sequence[str] | None = None, ext: str = ".png") -> Path:
    """``root/<class>/<i>.png`` or, with ``splits``, ``root/<split>/<class>/<i>.png``."""
    from PIL import Image

    root = Path(root)
    channels = 1 if mode == "L" else 3
    seed = 9
    for split in splits or [None]:
        base = root / split if split else root
        for cls in classes:
            (base / cls).mkdir(parents=True, exist_ok=True)
            imgs = fake_images(per_class, (size[1], size[0], channels), seed)
            seed += 1
            for i, arr in enumerate(imgs):
                Image.fromarray(arr[:, :, 0] if mode == "L" else arr).save(
                    base / cls / f"{i:03d}{ext}")
    return root
