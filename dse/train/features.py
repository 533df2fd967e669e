"""Feature cache: the frozen backbone's features at the attach points, computed once per study.

Post-trained early exits freeze the backbone, so the feature map after every block is a fixed
function of the input: computing it once (``torch.inference_mode``, in batches) and training
every trial's branches from the stored maps removes the backbone forward pass from the search's
inner loop. Per split (train and val for training and tuning; test only for final numbers) the
cache holds the features of each cached block [N, C, H, W], the backbone's final logits [N, K]
(teacher for distillation, ``pseudo`` labels and the final exit's outputs) and the labels.

Memory: N x sum_b (C_b H_b W_b) x bytes per value. Early blocks are the big ones (a CIFAR
ResNet's first stage is 16 x 32 x 32 = 16,384 values per sample per block, 1.6 GiB in float16
for 50,000 images), so the cache stores float16 by default, takes the blocks a study can use,
and ``max_samples`` keeps a seeded random subset of each split. :meth:`FeatureCache.describe`
states the size. On disk, each split is one file keyed by sha256 of (backbone weights, dataset,
split, seed, input size, dtype, max_samples, blocks) (:mod:`dse.train.feature_file`): written
batch by batch as the backbone runs, so building holds one batch in memory, not the cache;
renamed into place when complete; read back memory-mapped. One split's tensors, the backbone
passes that fill them and the reading of rows are :mod:`dse.train.split_features`. Before a
build, its size is checked against the free disk (:mod:`dse.train.cache_size`). This module
picks the blocks, rows, keys and folder, checks the room and assembles a :class:`FeatureCache`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable, Sequence

import torch
from torch.utils.data import Dataset, Subset

from dse.cache import cache_dir as default_cache_dir
from dse.cache import digest, file_lock, state_digest
from dse.data import DataSplits, split_labels
from dse.errors import ConfigError
from dse.models.backbones import Backbone
from dse.train.cache_size import available_memory, check_fits, free_disk, total_bytes
from dse.train.feature_file import SUFFIX
from dse.train.split_features import (SplitFeatures, compute_split_features, file_specs,
                                      load_split, probe_shapes, row_bytes, stream_split_features)
from dse.train.ticker import progress as ticker

# file_specs, SplitFeatures and compute_split_features are imported from here by tests and
# benchmarks (their home is dse.train.split_features)
__all__ = ["DTYPES", "FORMAT_VERSION", "SPLITS", "FeatureCache", "SplitFeatures",
           "attach_points", "build_feature_cache", "cache_folder", "cap_splits",
           "compute_split_features", "file_specs", "parse_dtype", "split_key",
           "subset_indices"]

SPLITS = ("train", "val", "test")
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
FORMAT_VERSION = 2  # 2: streamed .feat files (feature_file.py)


@dataclass
class FeatureCache:
    """Features at ``blocks`` for several splits of one dataset under one frozen backbone."""

    blocks: tuple[int, ...]
    shapes: dict[int, tuple[int, int, int]]
    num_classes: int
    dtype: torch.dtype
    splits: dict[str, SplitFeatures]
    keys: dict[str, str] = field(default_factory=dict)  # split -> on-disk key
    _derived: dict = field(default_factory=dict, repr=False)

    def split(self, name: str) -> SplitFeatures:
        if name not in self.splits:
            raise ConfigError(f"the feature cache holds splits {', '.join(self.splits)}; "
                              f"split {name!r} was not cached")
        return self.splits[name]

    def num_samples(self, split: str) -> int:
        return len(self.split(split))

    def final_logits(self, split: str) -> torch.Tensor:
        """The backbone's own logits on a split [N, K] (float32)."""
        return self.split(split).logits

    def labels(self, split: str) -> torch.Tensor:
        return self.split(split).labels

    def check_blocks(self, blocks: Sequence[int]) -> None:
        missing = [b for b in blocks if b not in self.shapes]
        if missing:
            raise ConfigError(f"exit blocks {missing} are not in the feature cache "
                              f"(cached blocks: {list(self.blocks)})")

    def batch(self, split: str, idx: torch.Tensor, blocks: Sequence[int],
              device: torch.device | str = "cpu") -> tuple[list[torch.Tensor], torch.Tensor,
                                                          torch.Tensor]:
        """float32 features at each of ``blocks``, final logits and labels of rows ``idx``."""
        s = self.split(split)
        idx = idx.to(s.labels.device)
        feats = [s.rows(b, idx).to(device=device, dtype=torch.float32, non_blocking=True)
                 for b in blocks]
        logits = s.logits.index_select(0, idx).to(device)
        return feats, logits, s.labels.index_select(0, idx).to(device)

    @torch.no_grad()
    def derived(self, split: str, block: int, key: Hashable,
                fn: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 1024) -> torch.Tensor:
        """``fn`` (a parameter-free map, e.g. global average pooling) of every cached feature
        map of ``block``, float32, computed once and memoised under ``key`` (read
        ``batch_size`` rows at a time)."""
        memo_key = (split, block, key)
        if memo_key not in self._derived:
            s = self.split(split)
            n = len(s)
            self._derived[memo_key] = torch.cat([
                fn(s.rows(block, torch.arange(i, min(n, i + batch_size))).float())
                for i in range(0, n, batch_size)])
        return self._derived[memo_key]

    def to(self, device: torch.device | str) -> FeatureCache:
        """A copy with every tensor on ``device`` (e.g. CUDA, when the cache fits there),
        copied in chunks of rows (a file-backed block never whole in host memory)."""
        moved = {name: SplitFeatures({b: _moved(s, b, device) for b in s.features},
                                     s.logits.to(device), s.labels.to(device), s.indices.to(device))
                 for name, s in self.splits.items()}
        return FeatureCache(self.blocks, self.shapes, self.num_classes, self.dtype, moved, self.keys)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.splits.values())

    def describe(self) -> str:
        sizes = ", ".join(f"{name} {len(s)}" for name, s in self.splits.items())
        dtype = str(self.dtype).removeprefix("torch.")
        return (f"feature cache: {len(self.blocks)} blocks {list(self.blocks)}, samples {sizes}, "
                f"{dtype}, {self.nbytes / 2**20:.1f} MiB")


def _moved(s: SplitFeatures, block: int, device: torch.device | str, chunk: int = 1024
           ) -> torch.Tensor:
    """Block ``block`` of ``s`` on ``device``, copied ``chunk`` rows at a time."""
    f = s.features[block]
    out = torch.empty(f.shape, dtype=f.dtype, device=device)
    for i in range(0, f.shape[0], chunk):
        out[i:i + chunk] = s.rows(block, torch.arange(i, min(f.shape[0], i + chunk)))
    return out


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ConfigError(f"feature cache dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def attach_points(backbone: Backbone) -> list[int]:
    """Blocks an exit can follow: all but the last (whose output feeds the head)."""
    return list(range(len(backbone.blocks) - 1))


def subset_indices(n: int, max_samples: int | None, seed: int) -> torch.Tensor:
    """All rows, or a seeded random subset of ``max_samples`` rows in ascending order."""
    if max_samples is None or max_samples >= n:
        return torch.arange(n)
    if max_samples < 1:
        raise ConfigError(f"feature cache max_samples must be >= 1, got {max_samples}")
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:max_samples].sort().values


def cap_splits(splits: DataSplits, max_samples: int | None, seed: int) -> DataSplits:
    """Each split cut to the seeded ``max_samples`` rows :func:`subset_indices` picks (the rows
    the feature cache keeps); unchanged when ``None`` or at least the split's size."""
    if max_samples is None:
        return splits

    def cap(ds: Dataset) -> Dataset:
        rows = subset_indices(len(ds), max_samples, seed)
        return ds if len(rows) == len(ds) else Subset(ds, rows.tolist())

    return DataSplits(splits.info, cap(splits.train), cap(splits.val), cap(splits.test))


def split_key(backbone_digest: str, data, split: str, *, seed: int, dtype: torch.dtype,
              max_samples: int | None, blocks: Sequence[int], dataset_key: str | None) -> str:
    """The on-disk key of one split's features (sha256, hex).

    ``max_samples`` at or above the split's size keeps every row, so it keys like ``None`` (and
    the seed, which then picks nothing, drops out): the same content is one file.
    """
    info = data.info
    labels = split_labels(data.split(split))
    if max_samples is None or max_samples >= len(labels):
        max_samples = seed = None
    return digest(FORMAT_VERSION, backbone_digest, dataset_key, info.name, info.path,
                  info.input_size, info.channels, info.mean, info.std, split, len(labels),
                  digest(labels.tolist()), seed, str(dtype), max_samples, tuple(blocks), length=64)


def cache_folder(cache_dir: str | Path | None | bool) -> Path | None:
    """``None``/``True``: the dse cache's ``features/``; a path: that folder; ``False``: none."""
    if cache_dir is False:
        return None
    folder = default_cache_dir("features") if cache_dir in (None, True) else Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_feature_cache(backbone: Backbone, data, blocks: Sequence[int] | None = None, *,
                        splits: Sequence[str] = SPLITS, dtype: torch.dtype | str = torch.float16,
                        max_samples: int | None = None, batch_size: int = 256,
                        device: torch.device | str = "cpu", seed: int = 0,
                        cache_dir: str | Path | None | bool = None,
                        dataset_key: str | None = None, progress: bool | None = None,
                        log: Callable[[str], None] | None = None) -> FeatureCache:
    """Compute (or load from disk) the features of ``data``'s ``splits`` at ``blocks``.

    ``blocks=None`` caches every attach point. ``cache_dir``: ``None`` uses the dse cache folder
    (``features/``), a path uses that folder, ``False`` keeps everything in memory only.
    On disk, each split streams into its file batch by batch and is read back memory-mapped.
    Before any split is computed, its size is checked against the free disk (or, in memory,
    the available RAM): a ConfigError names both and the ``max_samples`` that fits.
    ``max_samples`` bounds each split (a random subset drawn with ``seed``); ``dataset_key``
    (e.g. the dataset spec) adds to the key. ``progress``: a bar (True, or None on a terminal),
    plain periodic lines on stderr (None elsewhere), nothing (False). ``log`` receives one
    line with the cache size.
    """
    dtype = parse_dtype(dtype)
    points = attach_points(backbone)
    blocks = tuple(sorted(set(points if blocks is None else blocks)))
    bad = [b for b in blocks if b not in points]
    if bad:
        raise ConfigError(f"cannot cache features at blocks {bad}: attach points are "
                          f"0..{len(points) - 1}")
    for s in splits:
        if s not in SPLITS:
            raise ConfigError(f"feature cache split must be one of {', '.join(SPLITS)}, got {s!r}")
    if max_samples is not None and max_samples < 1:
        raise ConfigError(f"feature cache max_samples must be >= 1, got {max_samples}")
    folder = cache_folder(cache_dir)
    weights = state_digest(backbone) if folder is not None else ""
    was_training = backbone.training
    first = next(backbone.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    paths: dict[str, Path] = {}
    if folder is not None:
        for name in splits:
            key = split_key(weights, data, name, seed=seed, dtype=dtype, max_samples=max_samples,
                            blocks=blocks, dataset_key=dataset_key)
            paths[name] = folder / f"{key}{SUFFIX}"
    result: dict[str, SplitFeatures] = {}
    for name, path in paths.items():  # what is on disk already
        loaded = load_split(path, blocks) if path.is_file() else None
        if loaded is not None:
            result[name] = loaded
    todo = [name for name in splits if name not in result]
    shapes, num_classes = probe_shapes(backbone, data.split(splits[0]), blocks, device)
    if todo:
        _check_room(data, todo, splits, shapes, num_classes, dtype, max_samples, folder)
    for name in todo:
        ds = data.split(name)
        rows = subset_indices(len(ds), max_samples, seed)
        path = paths.get(name)
        with file_lock(path) if path is not None else contextlib.nullcontext():
            loaded = load_split(path, blocks) if path is not None and path.is_file() else None
            if loaded is not None:  # another process built it while this one waited
                result[name] = loaded
                continue
            with ticker(int(rows.numel()), f"features {name}", enabled=progress) as bar:
                if path is None:
                    result[name] = compute_split_features(
                        backbone, ds, blocks, rows, dtype=dtype, batch_size=batch_size,
                        device=device, progress=bar.update)
                else:
                    result[name] = stream_split_features(
                        backbone, ds, blocks, rows, path, shapes=shapes, num_classes=num_classes,
                        dtype=dtype, batch_size=batch_size, device=device, progress=bar.update)
    backbone.train(was_training).to(home)
    keys = {name: path.stem for name, path in paths.items()}
    cache = FeatureCache(blocks, shapes, num_classes, dtype, {n: result[n] for n in splits}, keys)
    if log is not None:
        log(cache.describe())
    return cache


def _check_room(data, todo: Sequence[str], splits: Sequence[str],
                shapes: dict[int, tuple[int, ...]], num_classes: int, dtype: torch.dtype,
                max_samples: int | None, folder: Path | None) -> None:
    """Raise before any work when the splits still to build do not fit (disk, or RAM)."""
    per_sample, overhead = row_bytes(shapes, num_classes, dtype)
    need = total_bytes(per_sample, overhead, [len(data.split(n)) for n in todo], max_samples)
    free, where = ((free_disk(folder), f"disk in {folder}") if folder is not None
                   else (available_memory(), "memory"))
    check_fits(need, free, where, per_sample=per_sample, overhead=overhead,
               sizes=[len(data.split(n)) for n in splits])
