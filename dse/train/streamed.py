"""Features streamed from the frozen backbone per batch: the search's source when no useful
feature cache fits its budget (large inputs: ImageNet-size backbones and images).

At CIFAR size a sample's maps at every attach point take KiB to tens of KiB; resnet50 at
224 px takes about 11 MB, so caching every attach point for 100,000 images needs a terabyte.
Two ways keep the proxy meaningful (our choice, picked by :func:`choose_source`):

- ``subset``: cache a seeded random subset of each split, as large as the budget allows, at full
  resolution and at every attach point (the proxy then trains and tunes on fewer samples, so
  its accuracy estimates are noisier: with n val samples the standard error of an accuracy p
  is sqrt(p (1 - p) / n), 1.6 points at n = 1,000 and p = 0.8);
- ``stream``: cache nothing and run the frozen backbone (inference mode, eval) on every
  minibatch a trial draws, and on val and test when a trial is evaluated. Every sample is used,
  memory is one batch, and each trial costs backbone passes (slower trials).

A subset smaller than :data:`MIN_SUBSET` samples per split (or the whole split, when smaller)
is not worth it, so the search streams instead. The batches are those a cache would give
(same rows, float32 features, the backbone's float32 logits), without the cache dtype's
rounding.

What a configuration of a streamed study (its provenance says ``feature_source: stream``) gets
afterwards, our choice: ``dse train --mode frozen`` runs the frozen backbone per batch too (its
path without a feature cache; no cache is built), while ``--init proxy`` and fine-tuning, which
need a cache of every block (the clean training split; each shifted split), are refused in one
line that says what to do instead (:func:`refuse_streamed`): building the cache the search
found too large would fill the disk the budget protects.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from dse.data import split_labels
from dse.errors import ConfigError
from dse.train.cache_budget import BudgetChoice
from dse.train.features import attach_points
from dse.train.frozen_features import gather
from dse.train.split_features import probe_shapes

#: our choice: the smallest cached subset per split worth a proxy (else stream)
MIN_SUBSET = 1000
#: rows per backbone pass when a whole split's final logits are needed
EVAL_ROWS = 256


def streamed_study(config) -> bool:
    """Whether run configuration ``config`` comes from a study that streamed its features."""
    return dict(config.provenance).get("feature_source") == "stream"


def refuse_streamed(config, what: str, instead: str) -> None:
    """A one-line ConfigError when ``config``'s study streamed its features and ``what`` would
    cache every block's features (see the module docstring); ``instead``: what to do."""
    if streamed_study(config):
        raise ConfigError(f"{what} caches the features of every block, but this configuration's "
                          "study streamed its features because no feature cache fitted its "
                          f"--cache-budget; {instead}")


def choose_source(choice: BudgetChoice, split_sizes: Sequence[int]) -> str:
    """``cache`` (every sample fits), ``subset`` (a big enough seeded subset fits) or
    ``stream`` (not even :data:`MIN_SUBSET` per split, or the split, fits)."""
    if choice.max_samples is None:
        return "cache"
    return "subset" if choice.max_samples >= min(MIN_SUBSET, max(split_sizes)) else "stream"


def describe_choice(choice: BudgetChoice, source: str) -> str:
    """One line: the budget, what fits, and the source the search uses."""
    if source == "stream":
        return (f"{choice.describe()}; fewer than {MIN_SUBSET} samples per split: streaming "
                f"features from the frozen backbone per batch instead (slower trials, every "
                f"sample used)")
    return choice.describe()


class StreamedFeatures:
    """A :class:`~dse.train.proxy.FeatureSource` that runs the frozen backbone per batch."""

    def __init__(self, backbone: nn.Module, data, device: torch.device | str = "cpu",
                 splits: Sequence[str] = ("train", "val", "test")) -> None:
        self.backbone = backbone.eval().to(device)
        self.device = torch.device(device)
        self.data = data
        self.blocks = tuple(attach_points(backbone))
        self.shapes, self.num_classes = probe_shapes(backbone, data.split(splits[0]),
                                                     self.blocks, device)
        self._splits = tuple(splits)
        self._labels = {s: split_labels(data.split(s)) for s in splits}
        self._final: dict[str, torch.Tensor] = {}

    def describe(self) -> str:
        sizes = ", ".join(f"{s} {len(v)}" for s, v in self._labels.items())
        return (f"features streamed from the frozen backbone per batch (no cache): "
                f"{len(self.blocks)} attach points, samples {sizes}")

    def num_samples(self, split: str) -> int:
        return int(self._split_labels(split).numel())

    def check_blocks(self, blocks: Sequence[int]) -> None:
        missing = [b for b in blocks if b not in self.shapes]
        if missing:
            raise ConfigError(f"exit blocks {missing} are not attach points of the backbone "
                              f"(0..{len(self.blocks) - 1})")

    def _split_labels(self, split: str) -> torch.Tensor:
        if split not in self._labels:
            raise ConfigError(f"streamed features hold splits {', '.join(self._splits)}; "
                              f"split {split!r} was not loaded")
        return self._labels[split]

    @torch.inference_mode()
    def _forward(self, split: str, idx: torch.Tensor, blocks: Sequence[int]
                 ) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = gather(self.data.split(split), idx.cpu()).to(self.device)
        outs = self.backbone.features(x)
        return [outs[b].float() for b in blocks], self.backbone.head(outs[-1]).float()

    def batch(self, split: str, idx: torch.Tensor, blocks: Sequence[int],
              device: torch.device | str = "cpu"
              ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """float32 features at ``blocks``, the backbone's logits and the labels of rows ``idx``
        (new tensors: inference-mode outputs cloned so autograd may use them)."""
        labels = self._split_labels(split)
        idx = torch.as_tensor(idx, dtype=torch.int64).cpu()
        feats, logits = self._forward(split, idx, blocks)
        return ([f.clone().to(device) for f in feats], logits.clone().to(device),
                labels[idx].to(device))

    def final_logits(self, split: str, progress: Callable[[int], None] | None = None
                     ) -> torch.Tensor:
        """The backbone's logits on a whole split [N, K] (computed once, in batches)."""
        if split not in self._final:
            n = self.num_samples(split)
            parts = []
            for start in range(0, n, EVAL_ROWS):
                parts.append(self._forward(split, torch.arange(start, min(n, start + EVAL_ROWS)),
                                           ())[1].cpu())
                if progress is not None:
                    progress(parts[-1].shape[0])
            self._final[split] = torch.cat(parts)
        return self._final[split]

    def labels(self, split: str) -> torch.Tensor:
        return self._split_labels(split)
