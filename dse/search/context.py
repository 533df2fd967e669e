"""The per-study setup shared by every trial a process runs: data, frozen backbone, feature
cache, MACs, layer records and the hardware profile.

Built once per process (``dse search`` and every ``dse worker``) from :class:`StudySettings`,
which a study stores in its ``user_attrs`` so a worker on another machine rebuilds the same
context from the storage alone. Per-exit costs of a candidate are assembled from cached pieces:
the backbone's block records and MACs (once per study) and each branch's records and MACs (once
per branch type, parameters and block), so costing a trial takes milliseconds:

    exit_macs_n    = sum(block_macs[: b_n + 1]) + sum(branch_macs[: n + 1])   (dse.cost.flops)
    exit_latency_n = the latency model on (block, branch and head records, profile, runtime)
    exit_energy_n  = power_w * exit_latency_n                                 (dse.cost.latency)
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Sequence

import torch

from dse.cost.flops import backbone_macs, branch_macs, exit_cum_macs
from dse.cost.latency import energy_mj, predict
from dse.cost.op_trace import trace, trace_multiexit, with_exits
from dse.cost.profiles import load_profile
from dse.data import load_dataset
from dse.data.meta import dataset_meta
from dse.device import select_device
from dse.errors import ConfigError
from dse.models.backbones import build_backbone
from dse.models.exits import build_branch
from dse.train.backbone import ensure_backbone
from dse.train.cache_budget import budget_samples, check_request
from dse.train.features import SPLITS, build_feature_cache
from dse.train.streamed import StreamedFeatures, choose_source, describe_choice

Log = Callable[[str], None]
#: a feature cache up to this size is held in memory during a search (digits: 15 MiB); a
#: larger one is read from its file batch by batch (bounded memory)
RESIDENT_BYTES = 256 * 2 ** 20


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class StudySettings:
    """Everything that defines a study besides its trials (stored in the study's user_attrs)."""

    backbone: str = "digits-resnet"
    checkpoint: str | None = None
    dataset: str = "digits"
    input_size: int | None = None
    seed: int = 0
    profile: str = "jetson"
    runtime: str | None = None
    batch: int = 1
    space_file: str = "default"
    objectives: tuple[str, ...] = ("accuracy", "latency_ms")
    budget_ms: float | None = None
    max_drop: float | None = None        # accuracy points (percent) below the backbone alone
    sampler: str = "tpe"
    backbone_epochs: int | None = None   # for a backbone trained on the fly (None: the default)
    feature_dtype: str = "float16"
    max_samples: int | None = None       # cap on cached samples per split (None: all)
    feature_source: str = "cache"        # "cache", or "stream": backbone per batch (no cache)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        return d


@dataclass(frozen=True)
class ExitCosts:
    """Cumulative cost of leaving at each exit (early exits, then the final one)."""

    macs: tuple[int, ...]
    latency_ms: tuple[float, ...]
    energy_mj: tuple[float, ...]


@dataclass
class SearchContext:
    settings: StudySettings
    backbone: Any                       # the frozen Backbone
    info: Any                           # DatasetInfo
    checkpoint: str | None              # the weights actually used
    checkpoint_source: str              # "checkpoint" (given), "cache" or "trained" (default)
    macs: Any                           # BackboneMacs
    records: Any                        # NetRecords of the backbone alone
    profile: Any
    runtime: Any
    features: Any                       # FeatureCache
    device: Any
    backbone_val_accuracy: float        # percent
    backbone_test_accuracy: float       # percent
    backbone_latency_ms: float
    _branch_cache: dict = field(default_factory=dict, repr=False)
    _cost_cache: dict = field(default_factory=dict, repr=False)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.info.channels, self.info.input_size, self.info.input_size)

    @property
    def num_attach_points(self) -> int:
        return len(self.macs.block_macs) - 1 - self.backbone.first_attach

    @property
    def backbone_macs(self) -> int:
        return int(self.macs.total_macs)

    @property
    def backbone_energy_mj(self) -> float:
        return energy_mj(self.backbone_latency_ms, self.runtime)

    def study_attrs(self) -> dict[str, Any]:
        """The context part of a study's user_attrs (see the storage schema)."""
        s = self.settings
        return {
            "backbone": s.backbone, "checkpoint": self.checkpoint,
            "checkpoint_source": self.checkpoint_source, "dataset": s.dataset,
            "input_size": self.info.input_size, "in_channels": self.info.channels,
            "num_classes": self.info.num_classes, "seed": s.seed, "profile": self.profile.name,
            "profile_path": self.profile.path, "runtime": self.runtime.name, "batch": s.batch,
            "objectives": list(s.objectives), "budget_ms": s.budget_ms, "max_drop": s.max_drop,
            "backbone_val_accuracy": self.backbone_val_accuracy,
            "backbone_test_accuracy": self.backbone_test_accuracy,
            "backbone_latency_ms": self.backbone_latency_ms, "backbone_macs": self.backbone_macs,
            "backbone_energy_mj": self.backbone_energy_mj,
            "block_macs": [int(m) for m in self.macs.block_macs],
        }

    def branch_cost(self, branch: str, params: tuple, block: int) -> tuple[tuple, int]:
        """(layer records, MACs) of one branch after ``block``, memoised."""
        key = (branch, params, block)
        if key not in self._branch_cache:
            shape = tuple(self.macs.block_out_shapes[block])
            module = build_branch(branch, shape, self.info.num_classes, **dict(params)).eval()
            records, _ = trace(module, torch.zeros(self.settings.batch, *shape),
                                 self.runtime.threads)
            self._branch_cache[key] = (tuple(records), branch_macs(module, shape))
        return self._branch_cache[key]

    def exit_costs(self, blocks: Sequence[int], branch: str, params: tuple) -> ExitCosts:
        """Per-exit cumulative MACs, latency (ms) and energy (mJ) of exits after ``blocks``."""
        key = (tuple(blocks), branch, params)
        if key not in self._cost_cache:
            pieces = [self.branch_cost(branch, params, b) for b in blocks]
            net = with_exits(self.records, blocks, [r for r, _ in pieces])
            latency = predict(net, self.profile, self.runtime).exit_ms
            macs = exit_cum_macs(self.macs.block_macs, self.macs.head_macs, blocks,
                                 [m for _, m in pieces])
            self._cost_cache[key] = ExitCosts(
                tuple(int(m) for m in macs), tuple(float(t) for t in latency),
                tuple(energy_mj(t, self.runtime) for t in latency))
        return self._cost_cache[key]


def build_context(settings: StudySettings, *, max_exits: int | None = None,
                  progress: bool | None = None, device: str = "auto", log: Log | None = _stderr,
                  cache_budget: int | None = None) -> SearchContext:
    """Load data and backbone (training and caching it when needed), count MACs, trace layer
    records, load the profile and build the feature cache of every attach point. A cache that
    cannot fit on the disk is refused first, from the dataset's metadata where they say its
    size (:func:`dse.train.cache_budget.check_request`).

    ``progress``: tqdm bars on stderr (None: only on a terminal). ``cache_budget`` (bytes):
    the feature cache's ``max_samples`` is the largest that fits (:func:`budget_samples`);
    the returned context's settings hold it, so the study records it.
    """
    s = settings
    if s.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {s.batch}")
    profile = load_profile(s.profile)
    runtime = profile.runtime(s.runtime)
    device = select_device(device)
    if cache_budget is None and s.feature_source == "cache":
        _check_request(s, device)
    splits = load_dataset(s.dataset, seed=s.seed, input_size=s.input_size)
    backbone, binfo = ensure_backbone(s.backbone, s.dataset, seed=s.seed, checkpoint=s.checkpoint,
                                      input_size=s.input_size, device=device,
                                      epochs=s.backbone_epochs, progress=progress, splits=splits,
                                      log=log)
    info = splits.info
    shape = (info.channels, info.input_size, info.input_size)
    macs = backbone_macs(backbone, shape)
    attach = len(macs.block_macs) - 1 - backbone.first_attach
    if max_exits is not None and max_exits > attach:
        raise ConfigError(f"the search space allows {max_exits} exits but backbone {s.backbone} "
                          f"has only {attach} attach points; lower exits.count")
    records = trace_multiexit(backbone, shape, batch=s.batch, threads=runtime.threads)
    backbone_ms = predict(records, profile, runtime).backbone_ms
    if cache_budget is not None:
        s = _apply_budget(s, backbone, splits, cache_budget, device, log)
    features = _features(s, backbone, splits, device, progress, log)
    return SearchContext(
        settings=s, backbone=backbone, info=info, checkpoint=binfo.path,
        checkpoint_source=binfo.source, macs=macs,
        records=records, profile=profile, runtime=runtime, features=features, device=device,
        backbone_val_accuracy=_accuracy(features, "val"),
        backbone_test_accuracy=_accuracy(features, "test"), backbone_latency_ms=backbone_ms)


def _check_request(s: StudySettings, device: Any) -> None:
    """Refuse a feature cache that cannot fit before the data are loaded (seconds, not the
    minutes of loading a large dataset and training or loading its backbone), when the
    dataset's metadata say its size (:func:`dse.data.meta.dataset_meta`)."""
    meta = dataset_meta(s.dataset, input_size=s.input_size)
    if meta is None:
        return
    arch = build_backbone(s.backbone, num_classes=meta.num_classes, in_channels=meta.channels)
    check_request(arch, meta, dtype=s.feature_dtype, max_samples=s.max_samples, device=device)


def _apply_budget(s: StudySettings, backbone: Any, splits: Any, budget: int, device: Any,
                  log: Log | None) -> StudySettings:
    """The settings with the feature source and ``max_samples`` a cache budget allows
    (:func:`dse.train.streamed.choose_source`), the choice logged."""
    choice = budget_samples(backbone, splits, budget, dtype=s.feature_dtype, device=device)
    source = choose_source(choice, [len(splits.split(n)) for n in SPLITS])
    if log is not None:
        log(describe_choice(choice, source))
    if source == "stream":
        return replace(s, max_samples=None, feature_source="stream")
    return replace(s, max_samples=choice.max_samples, feature_source="cache")


def _features(s: StudySettings, backbone: Any, splits: Any, device: Any,
              progress: bool | None, log: Log | None) -> Any:
    """The trials' feature source: the feature cache, or features streamed per batch."""
    if s.feature_source == "stream":
        features = StreamedFeatures(backbone, splits, device)
        if log is not None:
            log(features.describe())
        return features
    features = build_feature_cache(backbone, splits, dtype=s.feature_dtype,
                                   max_samples=s.max_samples, device=device, seed=s.seed,
                                   dataset_key=s.dataset, progress=progress, log=log)
    if device.type == "cuda":
        return features.to(device)
    # held in memory, a trial's minibatches are indexed there instead of read row by row from
    # the file (a twentieth of a digits search's time); .to copies in chunks of rows
    return features.to("cpu") if features.nbytes <= RESIDENT_BYTES else features


def _accuracy(features: Any, split: str) -> float:
    """The frozen backbone's accuracy (percent) on a split: its final exit."""
    logits, labels = features.final_logits(split), features.labels(split)
    return 100.0 * float((logits.argmax(1).cpu() == labels.cpu()).float().mean())
