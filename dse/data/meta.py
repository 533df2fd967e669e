"""A dataset's shape without loading it: split sizes, channels, image size, classes.

Loading CIFAR-10 (reading 180 MB of pickles, the train split's channel statistics) takes about
2 s here; sizing a feature cache needs only how many images each split holds and their shape.
:func:`dataset_meta` reads that from the files' headers and outlines (CIFAR pickles via
:mod:`dse.data.pickle_outline`, the IDX headers of MNIST and Fashion-MNIST), for the registered
names below; for any other dataset, or files it cannot read that way, it returns None and the
caller loads the data (whose loader then says what is wrong). The sizes are those the loader
gives: val is the seeded, stratified :data:`~dse.data.splits.VAL_FRACTION` of the official
train set, whose size :func:`~dse.data.splits.split_counts` knows without the labels.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from dse.data.builtin import cifar_folder, find_idx
from dse.data.pickle_outline import pickle_outline
from dse.data.registry import parse_spec
from dse.data.splits import VAL_FRACTION, split_counts
from dse.errors import DseError


@dataclass(frozen=True)
class DataMeta:
    """What sizing a request needs: ``sizes`` maps train, val and test to their image counts."""

    name: str
    num_classes: int
    channels: int
    input_size: int         # pixels, square, after any resize
    sizes: dict[str, int]


def _official(name: str, classes: int, channels: int, size: int, n_train: int, n_test: int,
              input_size: int | None) -> DataMeta:
    train, val = split_counts(n_train, (1 - VAL_FRACTION, VAL_FRACTION))
    return DataMeta(name, classes, channels, input_size or size,
                    {"train": train, "val": val, "test": n_test})


def _cifar_count(path: Path, label_key: str) -> int:
    outline = pickle_outline(path)
    if not isinstance(outline, dict):
        raise ValueError(f"{path}: not a pickled dict")
    keys = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in outline.items()}
    labels = keys.get(label_key)
    if not isinstance(labels, list):
        raise ValueError(f"{path}: no '{label_key}' list")
    return len(labels)


def _cifar(name: str, folder_name: str, train: Sequence[str], test: str, label_key: str,
           classes: int) -> Callable[[Path, int | None], DataMeta]:
    def meta(path: Path, input_size: int | None) -> DataMeta:
        folder = cifar_folder(path, folder_name, train[0])
        n_train = sum(_cifar_count(folder / f, label_key) for f in train)
        return _official(name, classes, 3, 32, n_train, _cifar_count(folder / test, label_key),
                         input_size)
    return meta


def _idx_count(name: str, folder: Path, stem: str) -> tuple[int, int]:
    """(images, rows) from an IDX images header, gzipped or not (16 bytes read), found where
    the loader finds it (:func:`dse.data.builtin.find_idx`)."""
    p = find_idx(name, folder, stem)
    with (gzip.open if p.suffix == ".gz" else open)(p, "rb") as f:
        head = f.read(16)
    if len(head) < 16:
        raise ValueError(f"{p}: truncated")
    return int.from_bytes(head[4:8], "big"), int.from_bytes(head[8:12], "big")


def _idx(name: str) -> Callable[[Path, int | None], DataMeta]:
    def meta(path: Path, input_size: int | None) -> DataMeta:
        n_train, rows = _idx_count(name, path, "train-images-idx3-ubyte")
        n_test, _ = _idx_count(name, path, "t10k-images-idx3-ubyte")
        return _official(name, 10, 1, rows, n_train, n_test, input_size)
    return meta


#: canonical dataset name -> its metadata reader ``(path, input_size) -> DataMeta``
READERS: dict[str, Callable[[Path, int | None], DataMeta]] = {
    "cifar10": _cifar("cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                      "test_batch", "labels", 10),
    "cifar100": _cifar("cifar100", "cifar-100-python", ["train"], "test", "fine_labels", 100),
    "mnist": _idx("mnist"),
    "fashion-mnist": _idx("fashion-mnist"),
}


def dataset_meta(spec: str, *, input_size: int | None = None) -> DataMeta | None:
    """The split sizes and image shape of dataset ``spec`` (``NAME:PATH``) read cheaply, or None
    when this dataset has no such reader or its files do not read that way."""
    try:
        name, path = parse_spec(spec)
    except DseError:
        return None
    reader = READERS.get(name)
    if reader is None or path is None or not path.is_dir():
        return None
    try:
        return reader(path, input_size)
    except (OSError, ValueError, EOFError, DseError):
        return None
