"""Datasets: load ``NAME`` or ``NAME:PATH`` as deterministic train / val / test splits.

Registered (``DATASETS.names()``): ``digits`` (scikit-learn's bundled 8x8 digits, the embedded
default), ``cifar10`` / ``cifar100`` (the python pickle folders), ``mnist`` / ``fashion-mnist``
(IDX files, gzipped or not), ``svhn`` (``*_32x32.mat``), ``digits-hard`` (digits rendered
onto a cluttered 16x16 canvas, generated and cached on first use), ``imagefolder`` (class-per-folder
images via Pillow). Nothing is downloaded: real datasets are read from PATH.

    splits = load_dataset("cifar10:/data/cifar-10-batches-py", seed=0)
    X, y = split_tensors(splits.val)            # float32 [N,C,H,W] normalised, int64 [N]
    for X, y in split_batches(splits.train, 512, device="cuda"): ...

``val`` is what thresholds and the search are tuned on; ``test`` is only for final numbers.
"""
from __future__ import annotations

from dse.data.base import (ArrayDataset, DatasetInfo, DataSplits, Normalizer, split_batches,
                           split_labels, split_tensors)
from dse.data.registry import DATASETS, DEFAULT_DATASET, data_version, load_dataset, parse_spec
from dse.data import builtin as _builtin  # noqa: F401  (registers the array datasets)
from dse.data import digits_hard as _digits_hard  # noqa: F401  (registers digits-hard)
from dse.data import imagefolder as _imagefolder  # noqa: F401  (registers imagefolder, last)
from dse.data.imagefolder import ImageFolderDataset
from dse.data.normalization import normalize_splits, parse_normalize
from dse.data.splits import stratified_split

__all__ = [
    "ArrayDataset", "DATASETS", "DEFAULT_DATASET", "DataSplits", "DatasetInfo",
    "ImageFolderDataset", "Normalizer", "data_version", "load_dataset", "parse_spec", "split_batches",
    "split_labels", "split_tensors", "stratified_split", "normalize_splits", "parse_normalize",
]
