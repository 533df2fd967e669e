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
split, seed, input size, dtype, max_samples, blocks), written atomically, read back memory-mapped.
"""
from __future__ import annotations

import contextlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable, Sequence

import torch
from torch.utils.data import Subset

from dse.cache import atomic_torch_save, digest, file_lock, state_digest
from dse.cache import cache_dir as default_cache_dir
from dse.data import split_batches, split_labels
from dse.errors import ConfigError
from dse.models.backbones import Backbone
from dse.train.engine import progress_bar

SPLITS = ("train", "val", "test")
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
FORMAT_VERSION = 1


@dataclass
class SplitFeatures:
    """One split's cached tensors (CPU unless moved)."""

    features: dict[int, torch.Tensor]  # block -> [N, C, H, W], cache dtype
    logits: torch.Tensor               # [N, K] float32, the backbone's own output
    labels: torch.Tensor               # [N] int64 ground truth
    indices: torch.Tensor              # [N] rows of the split kept (all unless max_samples)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        tensors = [*self.features.values(), self.logits, self.labels, self.indices]
        return sum(t.numel() * t.element_size() for t in tensors)


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
        feats = [s.features[b].index_select(0, idx).to(device=device, dtype=torch.float32,
                                                         non_blocking=True) for b in blocks]
        logits = s.logits.index_select(0, idx).to(device)
        return feats, logits, s.labels.index_select(0, idx).to(device)

    @torch.no_grad()
    def derived(self, split: str, block: int, key: Hashable,
                fn: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 2048) -> torch.Tensor:
        """``fn`` (a parameter-free map, e.g. global average pooling) of every cached feature
        map of ``block``, float32, computed once and memoised under ``key``."""
        memo_key = (split, block, key)
        if memo_key not in self._derived:
            f = self.split(split).features[block]
            self._derived[memo_key] = torch.cat([fn(f[i:i + batch_size].float())
                                                 for i in range(0, f.shape[0], batch_size)])
        return self._derived[memo_key]

    def to(self, device: torch.device | str) -> FeatureCache:
        """A copy with every tensor on ``device`` (e.g. CUDA, when the cache fits there)."""
        moved = {name: SplitFeatures({b: f.to(device) for b, f in s.features.items()},
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


@torch.inference_mode()
def compute_split_features(backbone: Backbone, ds, blocks: Sequence[int], rows: torch.Tensor, *,
                           dtype: torch.dtype, batch_size: int = 256,
                           device: torch.device | str = "cpu",
                           progress: Callable[[int], None] | None = None) -> SplitFeatures:
    """Run the frozen backbone over ``ds[rows]`` in batches and keep features at ``blocks``."""
    backbone.eval().to(device)
    n = int(rows.numel())
    source = ds if n == len(ds) else Subset(ds, rows.tolist())
    feats: dict[int, torch.Tensor] = {}
    logits: torch.Tensor | None = None
    labels = torch.empty(n, dtype=torch.int64)
    start = 0
    for x, y in split_batches(source, batch_size, device):
        outs = backbone.features(x)
        z = backbone.head(outs[-1]).float()
        stop = start + x.shape[0]
        with torch.inference_mode(False):  # storage that autograd may read later
            if logits is None:
                logits = torch.empty((n, z.shape[1]), dtype=torch.float32)
                for b in blocks:
                    feats[b] = torch.empty((n, *outs[b].shape[1:]), dtype=dtype)
        for b in blocks:
            feats[b][start:stop] = outs[b].to("cpu", dtype)
        logits[start:stop] = z.cpu()
        labels[start:stop] = y.cpu()
        start = stop
        if progress is not None:
            progress(x.shape[0])
    if logits is None:
        raise ConfigError("cannot cache features of an empty split")
    expected = split_labels(ds)[rows]
    if not torch.equal(labels, expected):  # the order of split_batches must match the rows
        raise RuntimeError("feature cache: batch order does not match the split's labels")
    return SplitFeatures(feats, logits, labels, rows.clone())


def split_key(backbone_digest: str, data, split: str, *, seed: int, dtype: torch.dtype,
              max_samples: int | None, blocks: Sequence[int], dataset_key: str | None) -> str:
    """The on-disk key of one split's features (sha256, hex)."""
    info = data.info
    labels = split_labels(data.split(split))
    return digest(FORMAT_VERSION, backbone_digest, dataset_key, info.name, info.path,
                  info.input_size, info.channels, info.mean, info.std, split, len(labels),
                  digest(labels.tolist()), seed, str(dtype), max_samples, tuple(blocks), length=64)


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
    ``max_samples`` bounds each split (a random subset drawn with ``seed``); ``dataset_key``
    (e.g. the dataset spec) adds to the key. ``log`` receives one line with the cache size.
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
    folder = None if cache_dir is False else (
        default_cache_dir("features") if cache_dir in (None, True) else Path(cache_dir))
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    weights = state_digest(backbone) if folder is not None else ""
    was_training = backbone.training
    first = next(backbone.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    result: dict[str, SplitFeatures] = {}
    keys: dict[str, str] = {}
    for name in splits:
        ds = data.split(name)
        rows = subset_indices(len(ds), max_samples, seed)
        key = None
        if folder is not None:
            key = split_key(weights, data, name, seed=seed, dtype=dtype, max_samples=max_samples,
                            blocks=blocks, dataset_key=dataset_key)
            keys[name] = key
        path = folder / f"{key}.pt" if folder is not None else None
        with file_lock(path) if path is not None else contextlib.nullcontext():
            loaded = _load_split(path, blocks) if path is not None and path.is_file() else None
            if loaded is not None:
                result[name] = loaded
                continue
            with progress_bar(int(rows.numel()), f"features {name}", enabled=progress,
                              leave=False, unit="img") as bar:
                result[name] = compute_split_features(backbone, ds, blocks, rows, dtype=dtype,
                                                      batch_size=batch_size, device=device,
                                                      progress=bar.update)
            if path is not None:
                _save_split(path, result[name])
    backbone.train(was_training).to(home)
    any_split = next(iter(result.values()))
    shapes = {b: tuple(any_split.features[b].shape[1:]) for b in blocks}
    cache = FeatureCache(blocks, shapes, int(any_split.logits.shape[1]), dtype, result, keys)
    if log is not None:
        log(cache.describe())
    return cache


def _save_split(path: Path, s: SplitFeatures) -> None:
    atomic_torch_save({"features": {str(b): f for b, f in s.features.items()}, "logits": s.logits,
                       "labels": s.labels, "indices": s.indices, "version": FORMAT_VERSION}, path)


def _load_split(path: Path, blocks: Sequence[int]) -> SplitFeatures | None:
    """A cached split, or None when the file is unreadable (it is then recomputed)."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        feats = {b: raw["features"][str(b)] for b in blocks}
        return SplitFeatures(feats, raw["logits"], raw["labels"], raw["indices"])
    except (RuntimeError, KeyError, TypeError, EOFError, OSError, pickle.UnpicklingError):
        return None
