"""Proxy training: a trial trains only its exit branches, for a fixed step budget, from cache.

The backbone is frozen (post-trained early exits), so every step reads a minibatch of cached
feature maps at the exits' blocks (:class:`~dse.train.features.FeatureCache`), runs the branches,
and builds the outputs ``[(logits, conf) per early exit] + [(final logits, ones)]`` that every
loss in :data:`dse.train.losses.LOSSES` takes. The final logits are the frozen backbone's
(teacher for distillation; ``labels="pseudo"`` uses their argmax as targets, so unlabeled data
works). Minibatches are drawn without replacement per pass over the split, from a generator
seeded with ``seed``, and branch initialisation is seeded too: the same seed gives the same
branches. A NaN or inf loss raises :class:`~dse.errors.TrialFailed` with the step and reason.
The optimizer, schedule and minibatch order come from :mod:`dse.train.engine`; the defaults of
:func:`train_branches` are those of a run configuration's training spec
(:class:`dse.design.TrainingSpec`).

:class:`OnlineFeatures` is the same source computed by a backbone forward pass every step (the
baseline of ``benchmarks/proxy_speed.py``). :func:`exit_outputs` then evaluates the trained
branches once per split into numpy :class:`~dse.evaluation.outputs.ExitOutputs`, on which every
threshold choice is evaluated without any further forward pass.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import torch
from torch import nn

from dse.design import LABEL_SOURCES, Design, TrainingSpec
from dse.data import split_tensors
from dse.errors import ConfigError, TrialFailed
from dse.evaluation.outputs import ExitOutputs
from dse.models.exits import ExitBranch, build_branch
from dse.train.engine import (EXIT_WEIGHT_DECAY, check_optimizer, make_optimizer, make_schedule,
                              minibatches, optimizer_step, resolve_device)
from dse.train.losses import LossSpec, apply_loss

#: (float32 features at each requested block, final backbone logits [B, K], labels [B])
Batch = tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]
#: the schedules a step budget this short uses (:func:`dse.train.engine.make_schedule`)
PROXY_SCHEDULES = ("cosine", "constant")
#: train_branches' defaults: a run configuration's (steps, lr, optimizer, batch size, labels)
_SPEC = TrainingSpec()


class FeatureSource(Protocol):
    """What proxy training reads: a FeatureCache, or OnlineFeatures (backbone every step)."""

    num_classes: int
    shapes: dict[int, tuple[int, int, int]]

    def num_samples(self, split: str) -> int: ...

    def check_blocks(self, blocks: Sequence[int]) -> None: ...

    def batch(self, split: str, idx: torch.Tensor, blocks: Sequence[int],
              device: torch.device | str = "cpu") -> Batch: ...


class OnlineFeatures:
    """Features computed by the frozen backbone on every call (no cache)."""

    def __init__(self, backbone: nn.Module, data, splits: Sequence[str] = ("train", "val"),
                 device: torch.device | str = "cpu") -> None:
        self.backbone = backbone.eval().to(device)
        self.device = torch.device(device)
        self.tensors = {s: split_tensors(data.split(s)) for s in splits}
        x = next(iter(self.tensors.values()))[0]
        with torch.no_grad():
            outs = self.backbone.features(x[:1].to(self.device))
        self.shapes = {b: tuple(o.shape[1:]) for b, o in enumerate(outs[:-1])}
        self.num_classes = int(data.info.num_classes)

    def num_samples(self, split: str) -> int:
        return int(self.tensors[split][1].shape[0])

    def check_blocks(self, blocks: Sequence[int]) -> None:
        missing = [b for b in blocks if b not in self.shapes]
        if missing:
            raise ConfigError(f"exit blocks {missing} are not attach points of the backbone")

    @torch.no_grad()
    def batch(self, split: str, idx: torch.Tensor, blocks: Sequence[int],
              device: torch.device | str = "cpu") -> Batch:
        x, y = self.tensors[split]
        outs = self.backbone.features(x[idx].to(self.device))
        logits = self.backbone.head(outs[-1]).float()
        return [outs[b].float().to(device) for b in blocks], logits.to(device), y[idx].to(device)


@dataclass
class ProxyResult:
    """Trained branches (eval mode, CPU) and how training went."""

    branches: nn.ModuleList
    exit_blocks: tuple[int, ...]
    losses: list[float]
    steps_done: int
    seconds: float
    isc: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


def _loss_spec(loss: Any, loss_params: Mapping[str, Any] | None, isc: bool) -> LossSpec:
    if isinstance(loss, LossSpec):
        if loss_params:
            raise ConfigError("give loss parameters inside the LossSpec, not as loss_params")
        return LossSpec(loss.name, loss.params, loss.isc or isc)
    if isinstance(loss, str):
        return LossSpec(loss, dict(loss_params or {}), isc)
    raise ConfigError(f"loss must be a loss name or a LossSpec, got {loss!r}")


def _check(name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(f"proxy training: {name} must be {expected}, got {value!r}")


def build_branches(source: FeatureSource, exit_blocks: Sequence[int], branch: str,
                   branch_params: Mapping[str, Any] | None, num_classes: int,
                   seed: int) -> nn.ModuleList:
    """One ``branch`` per exit block, initialised from ``seed`` (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.ModuleList(build_branch(branch, source.shapes[b], num_classes,
                                          **dict(branch_params or {})) for b in exit_blocks)


def _stateless(module: nn.Module) -> bool:
    return next(module.parameters(), None) is None and next(module.buffers(), None) is None


def _heads(branch: ExitBranch, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ExitBranch.forward after its ``features`` stage (tested equal to the full forward)."""
    return branch.classifier(z), torch.sigmoid(branch.confidence(z)).squeeze(1)


def precomputed_inputs(source: FeatureSource, branches: Sequence[nn.Module],
                       exit_blocks: Sequence[int], split: str,
                       key: Any) -> list[torch.Tensor] | None:
    """Branch inputs after a parameter-free ``features`` stage (``pool``: global average
    pooling), computed once per cached split; None when a branch has weights there (bnpool,
    convx) or the source is not a cache. Trials then train on [N, C] vectors."""
    derived = getattr(source, "derived", None)
    if derived is None or not all(isinstance(br, ExitBranch) and _stateless(br.features)
                                  for br in branches):
        return None
    return [derived(split, b, key, br.features) for b, br in zip(exit_blocks, branches)]


def train_branches(source: FeatureSource, exit_blocks: Sequence[int], branch: str = "pool",
                   branch_params: Mapping[str, Any] | None = None, num_classes: int | None = None,
                   *, loss: Any = "ce", loss_params: Mapping[str, Any] | None = None,
                   labels: str = _SPEC.labels, isc: bool = False, steps: int = _SPEC.steps,
                   lr: float = _SPEC.lr, optimizer: str = _SPEC.optimizer,
                   batch_size: int = _SPEC.batch_size, weight_decay: float = EXIT_WEIGHT_DECAY,
                   schedule: str = "cosine", seed: int = 0,
                   exit_costs: Sequence[float] | None = None, device: torch.device | str = "cpu",
                   split: str = "train") -> ProxyResult:
    """Train one branch per exit block for ``steps`` steps with the backbone frozen.

    ``exit_costs``: normalised cumulative MACs c_n per exit, the final one included (``eenet``).
    ``schedule``: ``cosine`` (decay to 0 over the budget) or ``constant`` learning rate.
    Raises :class:`TrialFailed` when the loss becomes NaN or inf.
    """
    exit_blocks = tuple(int(b) for b in exit_blocks)
    increasing = list(exit_blocks) == sorted(set(exit_blocks))
    _check("exit_blocks", list(exit_blocks), len(exit_blocks) >= 1 and increasing,
           "one or more increasing block indices")
    source.check_blocks(exit_blocks)
    _check("labels", labels, labels in LABEL_SOURCES, " or ".join(LABEL_SOURCES))
    check_optimizer(optimizer, "proxy training: optimizer")
    _check("schedule", schedule, schedule in PROXY_SCHEDULES, " or ".join(PROXY_SCHEDULES))
    _check("steps", steps, isinstance(steps, int) and steps >= 1, "an integer >= 1")
    _check("batch_size", batch_size, isinstance(batch_size, int) and batch_size >= 1,
           "an integer >= 1")
    _check("lr", lr, isinstance(lr, (int, float)) and lr > 0, "a number > 0")
    _check("split", split, split in ("train", "val"), "train or val (test is for final numbers)")
    spec = _loss_spec(loss, loss_params, isc)
    if exit_costs is not None and len(exit_costs) != len(exit_blocks) + 1:
        raise ConfigError(f"proxy training: exit_costs needs {len(exit_blocks) + 1} values (early "
                          f"exits and the final one), got {len(exit_costs)}")
    if spec.name == "eenet" and exit_costs is None:
        raise ConfigError("proxy training: loss 'eenet' needs exit_costs (normalised MACs per "
                          "exit)")
    num_classes = num_classes or source.num_classes
    device = resolve_device(device)
    branches = build_branches(source, exit_blocks, branch, branch_params, num_classes, seed)
    branches = branches.to(device)
    opt = make_optimizer(optimizer, (p for p in branches.parameters() if p.requires_grad),
                         lr=lr, weight_decay=weight_decay, fused=True)
    sched = make_schedule(opt, schedule, steps)
    gen = torch.Generator().manual_seed(seed)
    batches = minibatches(source.num_samples(split), batch_size, gen)
    losses: list[float] = []
    branches.train()
    start = time.perf_counter()
    key = (branch, tuple(sorted(dict(branch_params or {}).items())))
    pre = precomputed_inputs(source, branches, exit_blocks, split, key)
    pre = [p.to(device) for p in pre] if pre is not None else None
    for step in range(steps):
        idx = next(batches)
        if pre is None:
            feats, final, truth = source.batch(split, idx, exit_blocks, device)
            outputs = [br(f) for br, f in zip(branches, feats)]
        else:
            _, final, truth = source.batch(split, idx, (), device)
            idx = idx.to(device)
            outputs = [_heads(br, p.index_select(0, idx)) for br, p in zip(branches, pre)]
        targets = truth if labels == "ground_truth" else final.argmax(dim=1)
        outputs.append((final, torch.ones(final.shape[0], device=device)))
        value = apply_loss(spec, outputs, targets, teacher_logits=final, exit_costs=exit_costs,
                           step=step)
        optimizer_step(opt, value, sched)
        losses.append(float(value.detach()))
    seconds = time.perf_counter() - start
    branches.eval().cpu()
    settings = {"branch": branch, "branch_params": dict(branch_params or {}), "loss": spec.name,
                "loss_params": spec.kwargs, "labels": labels, "steps": steps, "lr": lr,
                "optimizer": optimizer, "batch_size": batch_size, "seed": seed, "split": split}
    return ProxyResult(branches, exit_blocks, losses, steps, seconds, spec.isc, settings)


def train_design(source: FeatureSource, design: Design, exit_blocks: Sequence[int],
                 num_classes: int | None, *, seed: int, exit_costs: Sequence[float] | None = None,
                 device: torch.device | str = "cpu") -> ProxyResult:
    """Proxy-train a design's branches on ``exit_blocks``: the one mapping from a
    :class:`~dse.design.Design` (or a RunConfig, which has the same ``exits`` and ``training``)
    to :func:`train_branches`, shared by the search and by everything that rebuilds the
    search's exits (fine-tuning, ``dse train --init proxy``)."""
    e, t = design.exits, design.training
    return train_branches(
        source, exit_blocks, e.branch, e.branch_kwargs, num_classes, loss=t.loss, labels=t.labels,
        steps=t.steps, lr=t.lr, optimizer=t.optimizer, batch_size=t.batch_size,
        weight_decay=t.weight_decay, seed=seed, exit_costs=exit_costs, device=device)


@torch.inference_mode()
def exit_outputs(source: FeatureSource, exit_blocks: Sequence[int], branches: Sequence[nn.Module],
                 split: str, *, isc: bool = False, batch_size: int = 1024,
                 device: torch.device | str = "cpu") -> ExitOutputs:
    """Every exit's outputs on a cached split as numpy ExitOutputs (E includes the final exit).

    Labels are the ground truth. With ``isc`` the early exits' logits are combined as in training
    (z'_i = z_i + z'_{i-1}). Raises TrialFailed when a branch produces NaN or inf.
    """
    exit_blocks = list(exit_blocks)
    source.check_blocks(exit_blocks)
    if len(branches) != len(exit_blocks):
        raise ConfigError(f"{len(exit_blocks)} exit blocks but {len(branches)} branches")
    was = [(br.training, next(br.parameters()).device) for br in branches]
    for br in branches:
        br.eval().to(device)
    n = source.num_samples(split)
    logits: list[list[torch.Tensor]] = [[] for _ in range(len(exit_blocks) + 1)]
    conf: list[list[torch.Tensor]] = [[] for _ in range(len(exit_blocks) + 1)]
    labels = []
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        feats, final, truth = source.batch(split, idx, exit_blocks, device)
        outs = [br(f) for br, f in zip(branches, feats)]
        zs = [z for z, _ in outs]
        if isc:
            for e in range(1, len(zs)):
                zs[e] = zs[e] + zs[e - 1]
        for e, (z, (_, h)) in enumerate(zip(zs, outs)):
            logits[e].append(z.float().cpu())
            conf[e].append(h.float().cpu())
        logits[-1].append(final.float().cpu())
        conf[-1].append(torch.ones(final.shape[0]))
        labels.append(truth.cpu())
    for br, (mode, where) in zip(branches, was):
        br.train(mode).to(where)
    z_all = torch.stack([torch.cat(z) for z in logits])
    h_all = torch.stack([torch.cat(h) for h in conf])
    if not (torch.isfinite(z_all).all() and torch.isfinite(h_all).all()):
        raise TrialFailed("exit outputs contain nan or inf after proxy training; the trial stops")
    return ExitOutputs(z_all.numpy(), h_all.numpy(), torch.cat(labels).numpy())


def result_outputs(source: FeatureSource, result: ProxyResult, split: str,
                   **kwargs: Any) -> ExitOutputs:
    """:func:`exit_outputs` for a :class:`ProxyResult` (its blocks, branches and ISC setting)."""
    return exit_outputs(source, result.exit_blocks, result.branches, split, isc=result.isc,
                        **kwargs)
