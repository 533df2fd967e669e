"""Choosing the input normalisation: the train split's statistics, a preset, or given values.

Every loader measures per-channel mean and std on its train split (:mod:`dse.data.base`). A
backbone trained elsewhere expects the statistics it was trained with (ImageNet's, typically),
so feeding it inputs normalised by this dataset's own statistics shifts every activation.
:func:`normalize_splits` re-targets loaded splits: ``"dataset"`` (the default: unchanged),
``"imagenet"`` (the torchvision preset), ``"none"`` (mean 0, std 1: pixels on [0, 1]) or an
explicit ``(mean, std)``. The choice lands in :class:`~dse.data.DatasetInfo`, which the model
files and checkpoints store and the feature-cache key includes.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from dse.data.base import ArrayDataset, DataSplits, Normalizer
from dse.data.imagefolder import ImageFolderDataset
from dse.errors import ConfigError

#: torchvision's ImageNet statistics (RGB, [0, 1] scale)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PRESETS = ("dataset", "imagenet", "none")

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def parse_normalize(spec: str | None, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None) -> str | Stats:
    """The CLI's ``--normalize`` / ``--mean`` / ``--std`` as a preset name or ``(mean, std)``."""
    if (mean is None) != (std is None):
        raise ConfigError("--mean and --std go together (one value per channel each)")
    if mean is not None:
        if spec not in (None, "dataset"):
            raise ConfigError(f"--normalize {spec} and --mean/--std: give one of them")
        if any(s <= 0 for s in std):
            raise ConfigError(f"--std values must be > 0, got {list(std)}")
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    spec = spec or "dataset"
    if spec not in PRESETS:
        raise ConfigError(f"--normalize must be one of {', '.join(PRESETS)}, got {spec!r}")
    return spec


def normalize_splits(splits: DataSplits, spec: str | Stats) -> DataSplits:
    """``splits`` with the normalisation ``spec`` (see the module docstring)."""
    info = splits.info
    c = info.channels
    if spec == "dataset":
        return splits
    if spec == "imagenet":
        if c != 3:
            raise ConfigError(f"--normalize imagenet needs RGB images; {info.name} has {c} channel")
        mean, std = IMAGENET
    elif spec == "none":
        mean, std = (0.0,) * c, (1.0,) * c
    else:
        mean, std = spec
    if len(mean) != c or len(std) != c:
        raise ConfigError(f"--mean/--std need {c} values (one per channel), got {len(mean)} "
                          f"and {len(std)}")

    def redo(ds):
        old = ds.normalize
        norm = Normalizer(scale=old.scale, mean=tuple(mean), std=tuple(std), size=old.size)
        if isinstance(ds, (ArrayDataset, ImageFolderDataset)):
            return ds.renormalized(norm)
        raise ConfigError(f"cannot change the normalisation of a {type(ds).__name__}")

    return DataSplits(replace(info, mean=tuple(mean), std=tuple(std)), redo(splits.train),
                      redo(splits.val), redo(splits.test))
