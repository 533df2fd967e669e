"""The context of a fine-tuning: the dataset and frozen backbone (:class:`Context`), the
original multi-exit model rebuilt on it (:class:`OriginalModel`) and its shifted features.

A run configuration holds the structure and the training recipe but no branch weights, so the
original model is rebuilt as the search built it: the frozen backbone (checkpoint, or the cached
built-in one), and branches trained by proxy training (:func:`dse.train.proxy.train_design`)
from the configuration's training spec on the clean (unshifted) training split.

Fine-tuning then works on the frozen backbone's features of *shifted* images: every split is
shifted once (seeded), run through the backbone once, and the inputs of every exit classifier
(the exit blocks' outputs, and the last block's output for the final head) are kept. Training a
classifier then reads these tensors, never the backbone.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from dse.cost.assemble import place_exits
from dse.cost.flops import backbone_macs, branch_macs, exit_cum_macs, param_count
from dse.data import load_dataset, split_batches
from dse.design import RunConfig
from dse.errors import ConfigError
from dse.finetune.ops import ExitTrainCost
from dse.finetune.shifts import apply_shift
from dse.models.backbones import Backbone
from dse.models.exits import build_branch
from dse.models.multiexit import feature_shapes
from dse.train.backbone import ensure_backbone
from dse.train.features import FeatureCache, build_feature_cache
from dse.train.proxy import train_design

Log = Callable[[str], None]
SPLITS = ("train", "val", "test")
SHIFT_BATCH = 1024


@dataclass
class Context:
    """A loaded dataset and its frozen backbone, shared by every configuration of a study."""

    backbone: Backbone
    data: object  # dse.data.DataSplits
    backbone_name: str
    dataset: str
    seed: int
    device: torch.device
    _clean: dict = field(default_factory=dict, repr=False)
    _shifted: dict = field(default_factory=dict, repr=False)

    @property
    def last_block(self) -> int:
        return len(self.backbone.blocks) - 1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        info = self.data.info
        return (info.channels, info.input_size, info.input_size)


def load_context(backbone: str, dataset: str, *, seed: int = 0, checkpoint: str | None = None,
                 input_size: int | None = None, device: torch.device | str = "cpu",
                 log: Log | None = None) -> Context:
    """Load the dataset and the trained frozen backbone (checkpoint, cache, or trained now)."""
    data = load_dataset(dataset, seed=seed, input_size=input_size)
    model, _ = ensure_backbone(backbone, dataset, seed=seed, checkpoint=checkpoint,
                               input_size=input_size, device=device, progress=False, splits=data,
                               log=log)
    model.eval().requires_grad_(False)
    return Context(model, data, backbone, dataset, seed, torch.device(device))


def context_for(config: RunConfig, device: torch.device | str = "cpu", log: Log | None = None) -> Context:
    return load_context(config.backbone, config.dataset, seed=config.seed,
                        checkpoint=config.checkpoint, input_size=config.input_size,
                        device=device, log=log)


@dataclass
class OriginalModel:
    """The original classifiers, before any fine-tuning: one per exit (branches, then the
    backbone's head)."""

    exit_blocks: tuple[int, ...]        #: early exits' blocks
    classifiers: nn.ModuleList          #: branches then the head (deep copies, trainable)
    input_blocks: tuple[int, ...]       #: the block whose output each classifier reads
    costs: list[ExitTrainCost]          #: per-exit training cost (MACs, params)
    exit_macs: list[int]                #: cumulative inference MACs of every exit

    @property
    def num_exits(self) -> int:
        return len(self.classifiers)


def resolve_blocks(config: RunConfig, ctx: Context) -> tuple[int, ...]:
    """The configuration's exit blocks (as recorded, or placed by its rule)."""
    if config.exits.blocks is not None:
        blocks = tuple(config.exits.blocks)
    else:
        macs = backbone_macs(ctx.backbone, ctx.input_shape)
        blocks = place_exits(ctx.backbone, macs, config.exits.placement, config.exits.count,
                             config.exits.branch, ctx.data.info.num_classes, config.exits.positions,
                             config.exits.branch_kwargs).blocks
    if not blocks:
        raise ConfigError("selective fine-tuning needs at least one early exit; "
                          "the configuration has none")
    if blocks[-1] >= ctx.last_block:
        raise ConfigError(f"exit blocks must lie in 0..{ctx.last_block - 1} for backbone "
                          f"{ctx.backbone_name}, got {list(blocks)}")
    return blocks


def clean_cache(ctx: Context, blocks: Sequence[int]) -> FeatureCache:
    """Features of the clean training split at ``blocks`` (the proxy's feature cache)."""
    key = tuple(sorted(set(blocks)))
    cached = next((c for k, c in ctx._clean.items() if set(key) <= set(k)), None)
    if cached is None:
        cached = build_feature_cache(ctx.backbone, ctx.data, key, splits=("train",),
                                     device=ctx.device, seed=ctx.seed, cache_dir=False)
        ctx._clean[key] = cached
    return cached


def branch_seed(config: RunConfig) -> int:
    """The seed the search trained the branches with (``search.proxy_seed`` of the config's
    provenance when recorded), else the configuration's seed."""
    seed = dict(config.provenance).get("proxy_seed")
    return int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else config.seed


def train_original(config: RunConfig, ctx: Context, blocks: Sequence[int] | None = None,
                   seed: int | None = None) -> OriginalModel:
    """Rebuild the configuration's branches with proxy training; add the backbone's head.

    ``seed`` (default :func:`branch_seed`) initialises the branches and orders the minibatches.
    """
    blocks = tuple(blocks) if blocks is not None else resolve_blocks(config, ctx)
    source = clean_cache(ctx, blocks)
    macs = backbone_macs(ctx.backbone, ctx.input_shape)
    b_macs = [branch_macs(br, macs.block_out_shapes[b])
              for br, b in zip(_fresh_branches(config, ctx, blocks), blocks)]
    cum = exit_cum_macs(macs.block_macs, macs.head_macs, blocks, b_macs)
    result = train_design(source, config, blocks, ctx.data.info.num_classes,
                          seed=branch_seed(config) if seed is None else seed,
                          exit_costs=[c / cum[-1] for c in cum], device=ctx.device)
    head = copy.deepcopy(ctx.backbone.head).requires_grad_(True)
    classifiers = nn.ModuleList([*result.branches, head]).cpu()
    reach = macs.cum_macs
    costs = [ExitTrainCost(bm, param_count(br), reach[b])
             for bm, br, b in zip(b_macs, result.branches, blocks)]
    costs.append(ExitTrainCost(macs.head_macs, param_count(head), reach[ctx.last_block]))
    return OriginalModel(tuple(blocks), classifiers, (*blocks, ctx.last_block), costs, cum)


def _fresh_branches(config: RunConfig, ctx: Context, blocks: Sequence[int]) -> list[nn.Module]:
    shapes = feature_shapes(ctx.backbone, ctx.input_shape)
    return [build_branch(config.exits.branch, shapes[b], ctx.data.info.num_classes,
                         **config.exits.branch_kwargs) for b in blocks]


@dataclass
class ShiftedSplit:
    features: dict[int, torch.Tensor]  #: block -> [N, C, H, W] float32 (frozen backbone)
    labels: torch.Tensor               #: [N] int64


@torch.inference_mode()
def shifted_features(ctx: Context, shift: str | None, blocks: Sequence[int], *,
                     splits: Sequence[str] = SPLITS, seed: int | None = None) -> dict[str, ShiftedSplit]:
    """Shift every image of ``splits`` (seeded per split and batch) and keep ``blocks``' outputs.

    ``shift=None``: the original images, unshifted. Results are memoised on the context per
    (shift, seed, split), for all cached blocks.
    """
    seed = ctx.seed if seed is None else seed
    info = ctx.data.info
    want = tuple(sorted(set(blocks)))
    out: dict[str, ShiftedSplit] = {}
    for s_index, name in enumerate(splits):
        key = (shift, seed, name)
        have = ctx._shifted.get(key)
        if have is not None and set(want) <= set(have.features):
            out[name] = have
            continue
        feats: dict[int, list[torch.Tensor]] = {b: [] for b in want}
        labels = []
        ctx.backbone.to(ctx.device)
        for k, (x, y) in enumerate(split_batches(ctx.data.split(name), SHIFT_BATCH)):
            xs = x if shift is None else apply_shift(shift, x, seed=_batch_seed(seed, s_index, k),
                                                     mean=info.mean, std=info.std)
            outs = ctx.backbone.features(xs.to(ctx.device))
            for b in want:
                feats[b].append(outs[b].float().cpu())
            labels.append(y.cpu())
        with torch.inference_mode(False):
            split = ShiftedSplit({b: torch.cat(f).clone() for b, f in feats.items()},
                                 torch.cat(labels).clone())
        ctx._shifted[key] = split
        out[name] = split
    return out


def _batch_seed(seed: int, split_index: int, batch_index: int) -> int:
    """Distinct, reproducible seeds for every (split, batch): shifts differ across splits."""
    return (int(seed) * 1_000_003 + split_index * 10_007 + batch_index) % (2 ** 63)
