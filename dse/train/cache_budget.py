"""``--cache-budget``: the largest feature cache that fits a size the user gives.

The cache's size is known before any work (:mod:`dse.train.cache_size`): per sample, the maps at
every cached block plus the logits, label and row index; per split, a header. Given a budget in
bytes, the sample count per split is the largest ``max_samples`` whose splits fit, found after
one image through the backbone gives the shapes. :mod:`dse.train.streamed` decides from it
whether the search caches everything, a seeded subset, or nothing (features per batch).

:func:`check_request` refuses a request that cannot fit before the data are loaded: the split
sizes and image shape come from the dataset's metadata (:mod:`dse.data.meta`), the per-sample
size from zeros of that shape through the backbone, so ``dse search`` says "use --max-samples
N" within seconds of starting instead of after reading the whole dataset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from dse.data.meta import DataMeta
from dse.models.backbones import Backbone
from dse.train import cache_size
from dse.train.cache_size import fitting_max_samples, gib, total_bytes
from dse.train.feature_file import SUFFIX, read_header
from dse.train.features import SPLITS, attach_points, cache_folder, parse_dtype
from dse.train.split_features import file_specs, probe_input, probe_shapes, row_bytes


@dataclass(frozen=True)
class BudgetChoice:
    """What a cache budget allows: ``max_samples`` per split (None: every sample fits)."""

    max_samples: int | None
    bytes: int          # the cache's size with that cap
    full_bytes: int     # with every sample
    budget: int

    def describe(self) -> str:
        if self.max_samples is None:
            return (f"feature cache budget {gib(self.budget)}: every sample fits "
                    f"({gib(self.full_bytes)})")
        if self.max_samples == 0:
            return (f"feature cache budget {gib(self.budget)}: not one sample per split fits "
                    f"(every sample would need {gib(self.full_bytes)})")
        return (f"feature cache budget {gib(self.budget)}: caching a seeded subset of "
                f"{self.max_samples} samples per split ({gib(self.bytes)}; every sample would "
                f"need {gib(self.full_bytes)})")


def budget_samples(backbone: Backbone, data, budget: int, *, blocks: Sequence[int] | None = None,
                   splits: Sequence[str] = SPLITS, dtype: torch.dtype | str = torch.float16,
                   device: torch.device | str = "cpu") -> BudgetChoice:
    """The largest per-split ``max_samples`` whose cache of ``blocks`` (None: every attach
    point) takes at most ``budget`` bytes (``--cache-budget``); 0 when not even one sample of
    each split fits. Cheap: one image through the backbone gives the shapes."""
    dtype = parse_dtype(dtype)
    blocks = tuple(sorted(set(attach_points(backbone) if blocks is None else blocks)))
    shapes, num_classes = probe_shapes(backbone, data.split(splits[0]), blocks, device)
    per_sample, overhead = row_bytes(shapes, num_classes, dtype)
    sizes = [len(data.split(n)) for n in splits]
    full = total_bytes(per_sample, overhead, sizes, None)
    if full <= budget:
        return BudgetChoice(None, full, full, budget)
    fit = fitting_max_samples(per_sample, overhead, sizes, budget)
    return BudgetChoice(fit, total_bytes(per_sample, overhead, sizes, fit) if fit else 0, full,
                        budget)


def check_request(backbone: Backbone, meta: DataMeta, *, dtype: torch.dtype | str,
                  max_samples: int | None, cache_dir: str | Path | None = None,
                  device: torch.device | str = "cpu") -> None:
    """Raise the one-line ConfigError of :func:`~dse.train.cache_size.check_fits` when the
    feature cache of every attach point for ``meta``'s splits cannot fit on the disk, before any
    data are loaded. A split whose file may already be there (a feature file of the same rows
    and shapes, whatever its key) is not counted, so this refuses only what surely does not fit;
    :func:`~dse.train.features.build_feature_cache` checks the exact need again later."""
    dtype = parse_dtype(dtype)
    blocks = attach_points(backbone)
    zeros = torch.zeros(1, meta.channels, meta.input_size, meta.input_size)
    shapes, num_classes = probe_input(backbone, zeros, blocks, device)
    per_sample, overhead = row_bytes(shapes, num_classes, dtype)
    sizes = [meta.sizes[s] for s in SPLITS]
    folder = cache_folder(cache_dir)
    specs = file_specs(shapes, num_classes, dtype)
    present = _signatures(folder)
    todo = [n for n in sizes if _signature(specs, n if max_samples is None else min(n, max_samples))
            not in present]
    need = total_bytes(per_sample, overhead, todo, max_samples)
    cache_size.check_fits(need, cache_size.free_disk(folder), f"disk in {folder}",
                          per_sample=per_sample, overhead=overhead, sizes=sizes)


def _signature(specs, rows: int) -> tuple:
    return tuple((name, str(d).removeprefix("torch."), (rows, *shape)) for name, d, shape in specs)


def _signatures(folder: Path) -> set[tuple]:
    """The (name, dtype, shape) tuples of every feature file in ``folder``."""
    found = set()
    for path in folder.glob(f"*{SUFFIX}"):
        try:
            found.add(tuple((e["name"], e["dtype"], tuple(e["shape"])) for e in read_header(path)))
        except (OSError, ValueError, KeyError):
            continue
    return found
