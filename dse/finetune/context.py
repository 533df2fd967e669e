"""The context of a fine-tuning: the dataset and frozen backbone (:class:`Context`), the
original multi-exit model rebuilt on it (:class:`OriginalModel`) and its shifted features.

A run configuration holds the structure and the training recipe but no branch weights, so the
original model is rebuilt as the search built it: the frozen backbone (checkpoint, or the cached
built-in one), and the branches the search proxy-trained, loaded from the dse cache
(:mod:`dse.train.saved_exits`), or, when they are not there, trained again by proxy training
(:func:`dse.train.proxy.train_design`, same seed: the same weights) from the configuration's
training spec on the clean (unshifted) training split.

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
from dse.data import load_dataset
from dse.design import RunConfig
from dse.errors import ConfigError
from dse.finetune.ops import ExitTrainCost
from dse.finetune.shifted_cache import shifted_split, split_index_of
from dse.models.backbones import Backbone
from dse.models.exits import build_branch
from dse.models.multiexit import feature_shapes
from dse.train.backbone import ensure_backbone
from dse.train.features import FeatureCache, build_feature_cache
from dse.train.saved_exits import trained_exits

Log = Callable[[str], None]
SPLITS = ("train", "val", "test")


@dataclass
class Context:
    """A loaded dataset and its frozen backbone, shared by every configuration of a study."""

    backbone: Backbone
    data: object  # dse.data.DataSplits
    backbone_name: str
    dataset: str
    seed: int
    device: torch.device
    #: where shifted features are cached (None: the dse cache; False: memory only)
    cache_folder: object = None
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
    #: the branches were the search's, loaded from the dse cache (False: trained again)
    loaded: bool = False

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
    """Features of the clean training split at every attach point (``blocks`` among them): the
    proxy's feature cache, read from the disk cache the search wrote for the same backbone,
    dataset and seed (built and kept there when missing), so rebuilding a configuration's exits
    runs no backbone pass."""
    if ctx._clean.get("train") is None:
        ctx._clean["train"] = build_feature_cache(ctx.backbone, ctx.data, None, splits=("train",),
                                                  device=ctx.device, seed=ctx.seed,
                                                  cache_dir=ctx.cache_folder,
                                                  dataset_key=ctx.dataset, progress=False)
    return ctx._clean["train"]


def branch_seed(config: RunConfig) -> int:
    """The seed the search trained the branches with (``search.proxy_seed`` of the config's
    provenance when recorded), else the configuration's seed."""
    seed = dict(config.provenance).get("proxy_seed")
    return int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else config.seed


def train_original(config: RunConfig, ctx: Context, blocks: Sequence[int] | None = None,
                   seed: int | None = None, log: Log | None = None) -> OriginalModel:
    """The configuration's branches as the search proxy-trained them (loaded when kept, else
    trained again), and the backbone's head.

    ``seed`` (default :func:`branch_seed`) initialises the branches and orders the minibatches.
    ``log`` receives one line saying whether the exits were loaded or trained again.
    """
    blocks = tuple(blocks) if blocks is not None else resolve_blocks(config, ctx)
    source = clean_cache(ctx, blocks)
    macs = backbone_macs(ctx.backbone, ctx.input_shape)
    b_macs = [branch_macs(br, macs.block_out_shapes[b])
              for br, b in zip(_fresh_branches(config, ctx, blocks), blocks)]
    cum = exit_cum_macs(macs.block_macs, macs.head_macs, blocks, b_macs)
    seed = branch_seed(config) if seed is None else seed
    result, loaded = trained_exits(source, config, blocks, ctx.data.info.num_classes, seed=seed,
                                   exit_costs=[c / cum[-1] for c in cum], device=ctx.device)
    if log is not None:
        log(f"the search's exits (proxy seed {seed}): "
            + ("loaded from the dse cache" if loaded else
               f"not kept, trained again ({config.training.steps} proxy steps)"))
    head = copy.deepcopy(ctx.backbone.head).requires_grad_(True)
    classifiers = nn.ModuleList([*result.branches, head]).cpu()
    reach = macs.cum_macs
    costs = [ExitTrainCost(bm, param_count(br), reach[b])
             for bm, br, b in zip(b_macs, result.branches, blocks)]
    costs.append(ExitTrainCost(macs.head_macs, param_count(head), reach[ctx.last_block]))
    return OriginalModel(tuple(blocks), classifiers, (*blocks, ctx.last_block), costs, cum,
                         loaded)


def _fresh_branches(config: RunConfig, ctx: Context, blocks: Sequence[int]) -> list[nn.Module]:
    shapes = feature_shapes(ctx.backbone, ctx.input_shape)
    return [build_branch(config.exits.branch, shapes[b], ctx.data.info.num_classes,
                         **config.exits.branch_kwargs) for b in blocks]


@dataclass
class ShiftedSplit:
    features: dict[int, torch.Tensor]  #: block -> [N, C, H, W] float32 (frozen backbone)
    labels: torch.Tensor               #: [N] int64


def shifted_features(ctx: Context, shift: str | None, blocks: Sequence[int], *,
                     splits: Sequence[str] = SPLITS, seed: int | None = None,
                     log: Log | None = None) -> dict[str, ShiftedSplit]:
    """The frozen backbone's features of every image of ``splits``, shifted (seeded per split
    and batch), at every block (``blocks`` are checked to be among them).

    ``shift=None``: the original images. Computed once per (shift, seed, split) and cached on
    disk (:mod:`dse.finetune.shifted_cache`), and memoised on the context.
    """
    seed = ctx.seed if seed is None else seed
    out: dict[str, ShiftedSplit] = {}
    for name in splits:
        key = (shift, seed, name)
        if key not in ctx._shifted:
            feats, labels = shifted_split(ctx.backbone, ctx.data, name, split_index_of(name),
                                          shift, seed, device=ctx.device,
                                          folder=ctx.cache_folder, log=log)
            ctx._shifted[key] = ShiftedSplit(feats, labels)
        missing = set(blocks) - set(ctx._shifted[key].features)
        if missing:
            raise ConfigError(f"no block {sorted(missing)} in backbone {ctx.backbone_name}")
        out[name] = ctx._shifted[key]
    return out
