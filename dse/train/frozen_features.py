"""Frozen ``dse train`` on the feature cache, and the data a training run reads per batch.

In frozen mode the backbone is fixed, so without input augmentation every step's backbone pass
recomputes what the study's feature cache already holds (:mod:`dse.train.features`): the maps at
the exit blocks and the final logits (which also give ``labels: pseudo``). With
:func:`study_cache` the run asks for the cache under the same key the search used (all attach
points, the study's feature dtype, seed, dataset and ``max_samples``), so it finds the study's
files, or builds them once; each step then runs only the branches, as the search's proxy does.
Our choice: the cache path needs ``--no-augment`` (shifted images have other features) and no
HDKD (its virtual step re-runs the model on val images); otherwise the backbone runs per step.

The features are those of the cache's dtype (float16 by default), so the numbers differ from
the per-step float32 backbone pass by that rounding only.

:func:`gather` reads one batch of a split, so a run never converts a whole training split into
one float32 tensor (:func:`dse.train.features.cap_splits` keeps the cache's rows of each split).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from dse.data import ArrayDataset
from dse.evaluation.outputs import ExitOutputs
from dse.train.features import FeatureCache, build_feature_cache
from dse.train.losses import isc_combine

#: rows per evaluation batch on cached features
EVAL_ROWS = 1024


def study_cache(config: Any, backbone: nn.Module, splits: DataSplits, dataset: str, *,
                max_samples: int | None, device: torch.device, progress: bool | None,
                log: Any) -> FeatureCache:
    """The study's feature cache for ``config`` (found on disk, or built once)."""
    prov = dict(config.provenance)
    dtype = prov.get("feature_dtype") or "float16"
    if max_samples is None:
        max_samples = prov.get("max_samples")
    return build_feature_cache(backbone, splits, dtype=dtype, max_samples=max_samples,
                               device=device, seed=config.seed, dataset_key=dataset,
                               progress=progress, log=log)


def branch_outputs(model: nn.Module, feats: Sequence[torch.Tensor], final_logits: torch.Tensor
                   ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """What ``MultiExitNet.forward`` returns, from the features at its exit blocks."""
    outs = [branch(f) for branch, f in zip(model.branches, feats)]
    ones = torch.ones(final_logits.shape[0], dtype=final_logits.dtype, device=final_logits.device)
    return [*outs, (final_logits, ones)]


@torch.no_grad()
def cached_outputs(model: nn.Module, cache: FeatureCache, split: str, *, isc: bool,
                   device: torch.device | str = "cpu") -> ExitOutputs:
    """:func:`dse.train.model_file.collect_outputs` of a split, from its cached features."""
    was = model.training
    model.eval()
    n = cache.num_samples(split)
    logits: list[list[torch.Tensor]] = []
    conf: list[list[torch.Tensor]] = []
    for start in range(0, n, EVAL_ROWS):
        idx = torch.arange(start, min(n, start + EVAL_ROWS))
        feats, final, _ = cache.batch(split, idx, model.exit_blocks, device)
        outs = branch_outputs(model, feats, final)
        zs = [z for z, _ in outs]
        zs = isc_combine(zs) if isc else zs
        logits.append([z.float().cpu() for z in zs])
        conf.append([h.float().cpu() for _, h in outs])
    model.train(was)
    exits = len(logits[0])
    return ExitOutputs.from_exits([torch.cat([b[e] for b in logits]).numpy() for e in range(exits)],
                                  [torch.cat([b[e] for b in conf]).numpy() for e in range(exits)],
                                  cache.split(split).labels.cpu().numpy())


def gather(ds: Dataset, idx: torch.Tensor) -> torch.Tensor:
    """Images ``idx`` of a split as one float32 batch, converted from uint8 in one step for
    dse's own splits (and subsets of them); other datasets item by item."""
    if isinstance(ds, Subset) and isinstance(ds.dataset, ArrayDataset):
        idx, ds = torch.as_tensor(ds.indices, dtype=torch.int64)[idx], ds.dataset
    if isinstance(ds, ArrayDataset):
        return next(ds.batches(int(idx.numel()), rows=idx))[0]
    return torch.stack([ds[i][0] for i in idx.tolist()])
