"""``--cache-budget``: the largest feature cache that fits a size the user gives.

The cache's size is known before any work (:mod:`dse.train.cache_size`): per sample, the maps at
every cached block plus the logits, label and row index; per split, a header. Given a budget in
bytes, the sample count per split is the largest ``max_samples`` whose splits fit, found after
one image through the backbone gives the shapes. :mod:`dse.train.streamed` decides from it
whether the search caches everything, a seeded subset, or nothing (features per batch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from dse.models.backbones import Backbone
from dse.train.cache_size import fitting_max_samples, gib, total_bytes
from dse.train.features import SPLITS, attach_points, parse_dtype, probe_shapes, row_bytes


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
