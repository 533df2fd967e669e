"""Fine-tuning the exit classifiers of a multi-exit model on frozen-backbone features.

The training half of selective fine-tuning (:mod:`dse.finetune.selective` chooses which exits
to re-train and reports the result): a :class:`Schedule`, :func:`finetune` (per-exit
cross-entropy on copies of the classifiers, with snapshots after given step counts) and
:func:`classifier_logits` (every classifier's logits on its own inputs). Kept apart so the
procedure reads as probe, select, finish, while how one classifier trains lives here.

Each classifier is trained with its own cross-entropy on its own parameters (the backbone is
frozen), so the exits train independently: same seeded minibatches, same schedule, the same
parameters whichever other exits train (``tests/finetune`` checks this).
The optimizer, schedule and minibatch order come from :mod:`dse.train.engine`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dse.errors import ConfigError, TrialFailed
from dse.train.engine import (Log, check_optimizer, make_optimizer, make_schedule, minibatches,
                              optimizer_step)
from dse.train.ticker import LineTicker


@dataclass(frozen=True)
class Schedule:
    """How the classifiers are fine-tuned."""

    probe_steps: int     #: s: steps every exit is fine-tuned before the subset is chosen
    steps: int           #: S: the whole schedule (entire fine-tuning length)
    lr: float            #: peak learning rate, cosine-decayed to 0 over S steps
    optimizer: str = "adam"
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.probe_steps < 1 or self.steps < 1:
            raise ConfigError(f"fine-tuning steps must be >= 1, got --steps {self.probe_steps} "
                              f"and a schedule of {self.steps}")
        if self.probe_steps > self.steps:
            raise ConfigError(f"--steps {self.probe_steps} (probe) exceeds the fine-tuning "
                              f"schedule of {self.steps} steps; give --full-steps >= "
                              f"{self.probe_steps} or fewer probe steps")
        check_optimizer(self.optimizer, "fine-tuning optimizer")
        if not self.lr > 0 or self.batch_size < 1:
            raise ConfigError(f"fine-tuning needs lr > 0 and batch size >= 1, got lr={self.lr}, "
                              f"batch_size={self.batch_size}")


def _logits_of(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = module(x)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def classifier_logits(classifiers: Sequence[nn.Module], inputs: Sequence[torch.Tensor],
                      batch_size: int = 1024) -> np.ndarray:
    """float32 [B, N, K]: every classifier on its own input features (eval mode)."""
    out = []
    for module, x in zip(classifiers, inputs):
        was = module.training
        module.eval()
        parts = [_logits_of(module, x[i:i + batch_size].float()).float()
                 for i in range(0, x.shape[0], batch_size)]
        module.train(was)
        out.append(torch.cat(parts).numpy())
    return np.stack(out)


def finetune(classifiers: Sequence[nn.Module], inputs: Sequence[torch.Tensor],
             labels: torch.Tensor, schedule: Schedule, *, trained: Sequence[bool] | None = None,
             snapshots: Sequence[int] = (), log: Log | None = None) -> dict[int, nn.ModuleList]:
    """Fine-tune copies of ``classifiers`` with per-exit cross-entropy; return snapshots by step.

    ``trained`` marks the exits that learn (default: all). The result always holds the final
    state under ``schedule.steps``; ``snapshots`` adds the states after those step counts.
    ``log``: plain progress lines (:class:`dse.train.ticker.LineTicker`).
    """
    models = nn.ModuleList(copy.deepcopy(list(classifiers)))
    trained = [True] * len(models) if trained is None else list(trained)
    params = [p for m, t in zip(models, trained) if t for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    keep = {int(s) for s in snapshots if 0 <= s < schedule.steps}
    out: dict[int, nn.ModuleList] = {0: copy.deepcopy(models)} if 0 in keep else {}
    if not params:
        out[schedule.steps] = models.eval()
        return out
    opt = make_optimizer(schedule.optimizer, params, lr=schedule.lr)
    sched = make_schedule(opt, "cosine", schedule.steps)
    batches = minibatches(int(labels.shape[0]), schedule.batch_size,
                          torch.Generator().manual_seed(schedule.seed))
    for m, t in zip(models, trained):
        m.train(t)
    ticker = (LineTicker(schedule.steps, f"fine-tuning {sum(trained)} exits", unit="steps",
                         every_percent=25, quiet_s=2.0, log=log) if log is not None else None)
    for step in range(1, schedule.steps + 1):
        idx = next(batches)
        y = labels[idx]
        loss = sum(F.cross_entropy(_logits_of(m, x[idx].float()), y)
                   for m, x, t in zip(models, inputs, trained) if t)
        if not bool(torch.isfinite(loss)):
            raise TrialFailed(f"fine-tuning loss became {float(loss)} at step {step}; "
                              "try a lower learning rate")
        optimizer_step(opt, loss, sched)
        if step in keep:
            out[step] = copy.deepcopy(models).eval()
        if ticker is not None:
            ticker.update(1)
    if ticker is not None:
        ticker.close()
    out[schedule.steps] = models.eval()
    return out


def one_epoch(num_samples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_samples / batch_size))
