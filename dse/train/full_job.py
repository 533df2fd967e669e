"""The training job of ``dse train`` and its epoch loop: what trains, and how.

:func:`prepare` builds a :class:`Job` from a configuration: the multi-exit model on its device
(with what its mode freezes frozen), its data (images, or the feature cache), optimizer,
schedule, run state and HDKD. :func:`train_epochs` runs the job's epochs; after each one it
writes the epoch checkpoint (:data:`LAST`), ``epochs.csv`` and the log line.

:mod:`dse.train.full` drives it (request checks, backbone, resume, the trained model's files):
this module trains a prepared job, that one manages the run and its output folder.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from dse.cache import atomic_torch_save
from dse.cost.assemble import Assembled, InputSpec
from dse.data import split_labels, split_tensors
from dse.design import RunConfig
from dse.errors import ConfigError
from dse.evaluation import evaluate
from dse.train.backbone import random_shift
from dse.train.engine import (EpochLog, Log, batch_to, current_lr, epoch_batches, make_optimizer,
                              make_schedule, optimizer_step, progress_bar)
from dse.train.features import FeatureCache
from dse.train.frozen_features import branch_outputs, cached_outputs, gather
from dse.train.losses import apply_loss
from dse.train.init_weights import load_exits, load_initial
from dse.train.model_file import assemble_config, collect_outputs, exit_costs
from dse.train.options import TrainOptions
from dse.train.run_log import EPOCHS_CSV, TENSORBOARD_DIR, TensorBoardLog, write_epochs_csv
from dse.train.run_state import RunState
from dse.train.techniques import HdkdTraining, gradient_equilibrium
from dse.yamlio import to_plain

#: The epoch checkpoint of an output folder, written after every epoch (read by ``resume``).
LAST = "last.pt"


def early_exit_summary(outputs, config: RunConfig, exit_macs: list[int]) -> dict[str, Any]:
    t = config.policy.per_exit(outputs.num_exits - 1)
    r = evaluate(outputs, config.policy.criterion, t, exit_macs=exit_macs)
    return r.section()


@dataclass
class Job:
    """A prepared training run: the model on its device, its data, optimizer state and HDKD."""

    config: RunConfig                   # exit blocks resolved
    o: TrainOptions
    a: Assembled
    model: nn.Module
    costs: list[float]                  # normalised cumulative MACs per exit (eenet's c_n)
    train: tuple[Any, torch.Tensor]     # (the train split, read per batch; its labels)
    val: tuple[torch.Tensor | None, torch.Tensor]  # (images, or None on the cache; labels)
    steps_per_epoch: int
    run: RunState
    hdkd: HdkdTraining | None
    device: torch.device
    settings: dict[str, Any]            # what a resume must match
    cache: FeatureCache | None = None   # frozen on the feature cache (no backbone per step)
    teacher: nn.Module | None = None    # classifiers mode: the frozen initial model

    @property
    def frozen(self) -> bool:
        return self.o.mode == "frozen"


def prepare(config: RunConfig, o: TrainOptions, backbone: nn.Module, splits, dataset: str,
            device: torch.device, cache: FeatureCache | None = None,
            init_exits: Sequence[nn.Module] | None = None) -> Job:
    """Build the multi-exit model (seeded), freeze what frozen mode keeps, and its optimizer,
    schedule and data generator; HDKD's state when asked for. With ``cache`` the data are the
    cached features (frozen mode, see :mod:`dse.train.frozen_features`)."""
    info = splits.info
    torch.manual_seed(o.seed)
    a = assemble_config(config, backbone, InputSpec(info.channels, info.input_size, info.num_classes))
    config = config.with_blocks(a.placement.blocks)
    model, costs = a.model, exit_costs(a)
    if o.isc_transform == "learned":  # IMTA's transform: parameters of the model, trained
        model.isc_final = o.mode != "frozen"
        model.add_isc_transforms(info.num_classes)
    if init_exits is not None:
        load_exits(model, init_exits)
    model = model.to(device)
    teacher = None
    if o.init_model:
        load_initial(model, o.init_model)
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
    frozen = {"frozen": model.backbone.parameters(),
              "classifiers": model.backbone.blocks.parameters()}
    for p in frozen.get(o.mode, ()):
        p.requires_grad_(False)
    if cache is not None:
        cache.check_blocks(a.placement.blocks)
        x_train, y_train = None, cache.split("train").labels
        x_val, y_val = None, cache.split("val").labels
    else:
        x_train, y_train = splits.train, split_labels(splits.train)
        x_val, y_val = split_tensors(splits.val)
    steps_per_epoch = math.ceil(int(y_train.shape[0]) / o.batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: the configuration has no trainable parameters "
                          "(frozen mode with no early exit?)")
    opt = make_optimizer(o.optimizer, params, lr=o.lr, weight_decay=o.weight_decay,
                         momentum=o.momentum)
    run = RunState(model, opt, o, torch.Generator().manual_seed(o.seed))
    run.sched = make_schedule(run.opt, o.schedule, o.epochs * steps_per_epoch)
    loss_spec = config.training.loss
    hdkd = HdkdTraining(loss_spec, model.num_exits, x_val, y_val, eps=o.hdkd_lr,
                        alpha=o.hdkd_alpha, momentum=o.hdkd_momentum, batch_size=o.batch_size,
                        seed=o.seed + 1, device=device,
                        isc_final=o.mode != "frozen") if o.hdkd else None
    settings = {"options": o.to_dict(), "dataset": dataset, "config": to_plain(config.to_dict())}
    return Job(config, o, a, model, costs, (x_train, y_train), (x_val, y_val), steps_per_epoch,
               run, hdkd, device, settings, cache=cache, teacher=teacher)


def _train_epoch(job: Job, epoch: int, targets: torch.Tensor, augment: tuple[int, bool],
                 bar) -> float:
    """One pass over the training split; the mean training loss."""
    model, run, o = job.model, job.run, job.o
    train_ds, n = job.train[0], int(job.train[1].shape[0])
    pad, flip = augment
    model.train()
    if job.frozen:
        model.backbone.eval()
    elif o.mode == "classifiers":
        model.backbone.blocks.eval()  # frozen blocks keep their batch-norm statistics
    loss_sum, steps = 0.0, 0
    for idx in epoch_batches(n, o.batch_size, run.gen):
        step = epoch * job.steps_per_epoch + steps
        if job.cache is not None:  # the backbone's part comes from the cache
            feats, final, _ = job.cache.batch("train", idx, model.exit_blocks, job.device)
            loss = apply_loss(job.config.training.loss, branch_outputs(model, feats, final),
                              targets[idx].to(job.device), exit_costs=job.costs, step=step)
            optimizer_step(run.opt, loss, run.sched)
        else:
            x, y = batch_to(job.device, random_shift(gather(train_ds, idx), pad, run.gen, flip),
                            targets[idx])
            with gradient_equilibrium(model) if o.ge else contextlib.nullcontext():
                loss = _batch_loss(job, x, y, step)
                optimizer_step(run.opt, loss, run.sched)
        loss_sum, steps = loss_sum + float(loss.detach()), steps + 1
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / steps:.3f}", refresh=False)
    return loss_sum / max(steps, 1)


def _batch_loss(job: Job, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
    """The loss of one batch of images: HDKD's, or the config's loss (with the learned ISC
    transform applied by the model, and KD from the initial model in classifiers mode)."""
    model, loss_spec = job.model, job.config.training.loss
    if job.hdkd is not None:
        return job.hdkd.loss(model, x, y, lr=current_lr(job.run.opt), step=step)
    teacher = None
    if job.teacher is not None:
        with torch.no_grad():
            teacher = job.teacher(x)[-1][0]
    outs, spec = model(x), loss_spec
    if model.isc_transforms is not None:  # the model applies its learned ISC
        zs = model.collaborate([z for z, _ in outs])
        outs = [(z, h) for z, (_, h) in zip(zs, outs)]
        spec = replace(loss_spec, isc=False)
    return apply_loss(spec, outs, y, exit_costs=job.costs, step=step,
                      isc_final=not job.frozen, teacher_logits=teacher)


def split_outputs(job: Job, split: str, data: tuple | None):
    """Exit outputs of a split: from the cache, or the model on ``data`` (images, labels)."""
    isc = job.config.training.loss.isc
    if job.cache is not None:  # frozen mode only: ISC never reaches the backbone's head
        return cached_outputs(job.model, job.cache, split, isc=isc, device=job.device)
    return collect_outputs(job.model, *data, isc=isc, isc_final=not job.frozen, device=job.device)


def train_epochs(job: Job, out: Path, targets: torch.Tensor, augment: tuple[int, bool],
                 bsource: dict, progress: bool | None, log: Log | None,
                 on_epoch_end: Callable[[int, dict], None] | None) -> None:
    """Epochs from where ``job.run`` stands to the last; after each: the best-on-val weights
    noted, checkpoint, ``epochs.csv`` (and TensorBoard when installed), the log line."""
    run, o = job.run, job.o
    done = run.history[-1]["seconds"] if run.history else 0.0
    t0 = time.perf_counter() - done
    epoch_log = EpochLog(log, o.epochs, start_seconds=done) if log else None
    board = TensorBoardLog(out / TENSORBOARD_DIR) if run.epoch < o.epochs else None
    try:
        with progress_bar(o.epochs * job.steps_per_epoch, "dse train", enabled=progress,
                          leave=True, initial=run.epoch * job.steps_per_epoch) as bar:
            for epoch in range(run.epoch, o.epochs):
                loss = _train_epoch(job, epoch, targets, augment, bar)
                val = split_outputs(job, "val", job.val)
                record = {"epoch": epoch + 1, "train_loss": loss, "lr": current_lr(run.opt),
                          "val": early_exit_summary(val, job.config, job.a.exit_macs),
                          "seconds": round(time.perf_counter() - t0, 3)}
                if job.hdkd is not None:
                    record["gamma"] = job.hdkd.named_gamma()
                run.history.append(record)
                run.epoch = epoch + 1
                if o.keep == "best":
                    run.consider(epoch + 1, record["val"]["mean_anytime_accuracy"])
                atomic_torch_save({"settings": job.settings, "backbone_source": to_plain(bsource),
                                   **run.state_dict(job.hdkd)}, out / LAST)
                write_epochs_csv(out / EPOCHS_CSV, run.history)
                board(record)
                if epoch_log is not None:
                    epoch_log(record)
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, record)
    finally:
        if board is not None:
            board.close()
