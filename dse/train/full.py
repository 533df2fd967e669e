"""Full training of a configuration chosen from the Pareto front (``dse train``).

The run configuration (``reports/<study>/configs/<trial>.yaml``) fixes the structure, the loss
(ce / eenet / kd / dense_kd, with or without ISC) and the label source; the recipe
(:mod:`dse.train.options`) fixes mode, epochs, optimizer and schedule, gradient equilibrium
and HDKD (:mod:`dse.train.techniques`). The optimizer, schedule, data order, progress bar and
the per-epoch log line come from :mod:`dse.train.engine`.

- ``frozen``: the backbone stays in eval mode with no gradient; only the exits train (post-trained
  early exits). With ``labels: pseudo`` the targets are the backbone's own predictions on the
  training images, so the training split's labels are never read.
- ``joint``: backbone and exits train together (pseudo labels then come from the backbone the
  run starts from).

An output folder holds ``last.pt`` (model, optimizer, scheduler, epoch, RNG states: written
atomically after every epoch, read by ``resume``), ``model.pt`` (the trained multi-exit model,
see :mod:`dse.train.model_file`), ``metrics.json`` and ``config.yaml`` (the configuration as
trained).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dse.cache import atomic_torch_save
from dse.design import RunConfig, save_config
from dse.data import load_dataset, split_tensors
from dse.errors import CheckpointError, ConfigError
from dse.evaluation import evaluate
from dse.cost.assemble import Assembled, InputSpec
from dse.models.backbones import build_backbone
from dse.models.checkpoint import read_checkpoint
from dse.train.backbone import ensure_backbone, random_shift, shift_augment
from dse.train.losses import apply_loss
from dse.train.engine import (EpochLog, Log, batch_to, current_lr, epoch_batches, log_stderr,
                              make_optimizer, make_schedule, optimizer_step, progress_bar,
                              resolve_device)
from dse.train.model_file import (EVAL_BATCH, assemble_config, collect_outputs, exit_costs, plain,
                                  save_model)
from dse.train.options import TrainOptions, resolve
from dse.train.techniques import HdkdTraining, gradient_equilibrium

LAST, MODEL, METRICS, CONFIG = "last.pt", "model.pt", "metrics.json", "config.yaml"


@dataclass
class TrainResult:
    out_dir: Path
    model_path: Path
    metrics: dict[str, Any]
    model: nn.Module


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(plain(obj), indent=2) + "\n")
    os.replace(tmp, path)


# -------------------------------------------------------------------------------- training


def _backbone(config: RunConfig, dataset: str, checkpoint: str | None, splits, o: TrainOptions,
              resume: bool, device, progress, log: Log | None):
    """(backbone, where its weights came from). On resume the weights come from last.pt."""
    info = splits.info
    if resume or o.init == "scratch":
        torch.manual_seed(o.seed)
        bb = build_backbone(config.backbone, num_classes=info.num_classes, in_channels=info.channels)
        return bb, {"source": "resume" if resume else "scratch", "path": None}
    bb, binfo = ensure_backbone(config.backbone, dataset, seed=config.seed, checkpoint=checkpoint,
                                input_size=config.input_size, device=device, splits=splits,
                                progress=progress, log=log)
    return bb, {"source": binfo.source, "path": binfo.path, "metrics": binfo.metrics}


def _early_exit_summary(outputs, config: RunConfig, exit_macs: list[int]) -> dict[str, Any]:
    t = config.policy.per_exit(outputs.num_exits - 1)
    r = evaluate(outputs, config.policy.criterion, t, exit_macs=exit_macs)
    return r.section()


def _check_same(saved: dict, now: dict, what: str, path: Path) -> None:
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key):
            raise ConfigError(f"--resume: {path} was written with {what} {key}={saved.get(key)!r}, "
                              f"this run has {now.get(key)!r}; use the same settings or a new --out")


def _check_request(config: RunConfig, o: TrainOptions, out: Path, resume: bool) -> None:
    """Refuse a --resume with nothing to resume, a run over a finished one, impossible labels."""
    last = out / LAST
    if resume and not last.is_file():
        raise ConfigError(f"--resume: {last} does not exist (no interrupted run there); "
                          "run without --resume to start one")
    if not resume and last.is_file():
        raise ConfigError(f"{out} already holds a run ({LAST}); pass --resume to continue it "
                          "or choose another --out")
    if config.training.labels == "pseudo" and o.init == "scratch":
        raise ConfigError("labels: pseudo takes the backbone's own predictions: not with --from-scratch")


@dataclass
class _Job:
    """A prepared training run: the model on its device, its data, optimizer state and HDKD."""

    config: RunConfig                   # exit blocks resolved
    o: TrainOptions
    a: Assembled
    model: nn.Module
    costs: list[float]                  # normalised cumulative MACs per exit (eenet's c_n)
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    steps_per_epoch: int
    run: "_Run"
    hdkd: HdkdTraining | None
    device: torch.device
    settings: dict[str, Any]            # what a resume must match

    @property
    def frozen(self) -> bool:
        return self.o.mode == "frozen"


def _prepare(config: RunConfig, o: TrainOptions, backbone: nn.Module, splits, dataset: str,
             device: torch.device) -> _Job:
    """Build the multi-exit model (seeded), freeze what frozen mode keeps, and its optimizer,
    schedule and data generator; HDKD's state when asked for."""
    info = splits.info
    torch.manual_seed(o.seed)
    a = assemble_config(config, backbone, InputSpec(info.channels, info.input_size, info.num_classes))
    config = config.with_blocks(a.placement.blocks)
    model, costs = a.model.to(device), exit_costs(a)
    for p in model.backbone.parameters() if o.mode == "frozen" else ():
        p.requires_grad_(False)
    x_train, y_train = split_tensors(splits.train)
    x_val, y_val = split_tensors(splits.val)
    steps_per_epoch = math.ceil(int(y_train.shape[0]) / o.batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: the configuration has no trainable parameters "
                          "(frozen mode with no early exit?)")
    opt = make_optimizer(o.optimizer, params, lr=o.lr, weight_decay=o.weight_decay,
                         momentum=o.momentum)
    run = _Run(model, opt, o, torch.Generator().manual_seed(o.seed))
    run.sched = make_schedule(run.opt, o.schedule, o.epochs * steps_per_epoch)
    loss_spec = config.training.loss
    hdkd = HdkdTraining(loss_spec, model.num_exits, x_val, y_val, eps=o.hdkd_lr,
                        alpha=o.hdkd_alpha, momentum=o.hdkd_momentum, batch_size=o.batch_size,
                        seed=o.seed + 1, device=device) if o.hdkd else None
    settings = {"options": o.to_dict(), "dataset": dataset, "config": plain(config.to_dict())}
    return _Job(config, o, a, model, costs, (x_train, y_train), (x_val, y_val), steps_per_epoch,
                run, hdkd, device, settings)


def _restore(job: _Job, last: Path, bsource: dict, log: Log | None) -> dict:
    """Continue from ``last`` (settings must match); the backbone source it recorded."""
    state = read_checkpoint(str(last))
    try:  # a foreign or damaged last.pt is a user error, not a crash
        saved, now = state["settings"], job.settings
        _check_same(saved["options"], now["options"], "option", last)
        _check_same({"dataset": saved["dataset"], **saved["config"]},
                    {"dataset": now["dataset"], **now["config"]}, "config", last)
        job.run.load_state_dict(state, job.hdkd)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        raise CheckpointError(f"--resume: {last} is not a dse train checkpoint of this run "
                              f"({type(exc).__name__}); delete it or use a new --out") from exc
    if log:
        log(f"resuming {last.parent} after epoch {job.run.epoch} of {job.o.epochs}")
    return state.get("backbone_source", bsource)


def _train_epoch(job: _Job, epoch: int, targets: torch.Tensor, augment: tuple[int, bool],
                 bar) -> float:
    """One pass over the training split; the mean training loss."""
    model, run, o, loss_spec = job.model, job.run, job.o, job.config.training.loss
    x_train = job.train[0]
    pad, flip = augment
    model.train()
    if job.frozen:
        model.backbone.eval()
    loss_sum, steps = 0.0, 0
    for idx in epoch_batches(int(x_train.shape[0]), o.batch_size, run.gen):
        x, y = batch_to(job.device, random_shift(x_train[idx], pad, run.gen, flip), targets[idx])
        step = epoch * job.steps_per_epoch + steps
        with gradient_equilibrium(model) if o.ge else contextlib.nullcontext():
            if job.hdkd is None:
                loss = apply_loss(loss_spec, model(x), y, exit_costs=job.costs, step=step)
            else:
                loss = job.hdkd.loss(model, x, y, lr=current_lr(run.opt), step=step)
            optimizer_step(run.opt, loss, run.sched)
        loss_sum, steps = loss_sum + float(loss.detach()), steps + 1
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / steps:.3f}", refresh=False)
    return loss_sum / max(steps, 1)


def _train_epochs(job: _Job, out: Path, targets: torch.Tensor, augment: tuple[int, bool],
                  bsource: dict, progress: bool | None, log: Log | None,
                  on_epoch_end: Callable[[int, dict], None] | None) -> None:
    """Epochs from where ``job.run`` stands to the last; checkpoint and log after each."""
    run, o = job.run, job.o
    done = run.history[-1]["seconds"] if run.history else 0.0
    t0 = time.perf_counter() - done
    epoch_log = EpochLog(log, o.epochs, start_seconds=done) if log else None
    with progress_bar(o.epochs * job.steps_per_epoch, "dse train", enabled=progress, leave=True,
                      initial=run.epoch * job.steps_per_epoch) as bar:
        for epoch in range(run.epoch, o.epochs):
            loss = _train_epoch(job, epoch, targets, augment, bar)
            val = collect_outputs(job.model, *job.val, isc=job.config.training.loss.isc,
                                  device=job.device)
            record = {"epoch": epoch + 1, "train_loss": loss, "lr": current_lr(run.opt),
                      "val": _early_exit_summary(val, job.config, job.a.exit_macs),
                      "seconds": round(time.perf_counter() - t0, 3)}
            if job.hdkd is not None:
                record["gamma"] = job.hdkd.named_gamma()
            run.history.append(record)
            run.epoch = epoch + 1
            atomic_torch_save({"settings": job.settings, "backbone_source": plain(bsource),
                               **run.state_dict(job.hdkd)}, out / LAST)
            if epoch_log is not None:
                epoch_log(record)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, record)


def _finish(job: _Job, out: Path, splits, dataset: str, bsource: dict) -> TrainResult:
    """Measure val and test, write config.yaml, model.pt and metrics.json."""
    config, run, o, isc = job.config, job.run, job.o, job.config.training.loss.isc
    x_test, y_test = split_tensors(splits.test)
    val = collect_outputs(job.model, *job.val, isc=isc, device=job.device)
    test = collect_outputs(job.model, x_test, y_test, isc=isc, device=job.device)
    metrics = {
        "config": plain(config.to_dict()), "options": o.to_dict(), "dataset": dataset,
        "backbone": bsource, "exit_blocks": list(job.a.placement.blocks),
        "exit_macs": job.a.exit_macs, "exit_costs": job.costs, "epochs_run": len(run.history),
        "train_seconds": run.history[-1]["seconds"] if run.history else 0.0,
        "val": _early_exit_summary(val, config, job.a.exit_macs),
        "test": _early_exit_summary(test, config, job.a.exit_macs), "history": run.history,
    }
    if run.pseudo is not None:
        metrics["pseudo_label_agreement"] = float((run.pseudo == job.train[1]).float().mean())
    if job.hdkd is not None:
        metrics["hdkd_gamma"] = job.hdkd.named_gamma()
    model = job.model.cpu().eval()
    info = splits.info
    inputs = {"dataset": dataset, "dataset_name": info.name, "num_classes": info.num_classes,
              "in_channels": info.channels, "input_size": info.input_size,
              "class_names": list(info.class_names), "mean": list(info.mean), "std": list(info.std)}
    save_config(config, str(out / CONFIG), header="the configuration as trained by dse train")
    path = save_model(out / MODEL, model, config, inputs, metrics, o.to_dict(), job.a.exit_macs)
    _write_json(out / METRICS, metrics)
    return TrainResult(out, path, metrics, model)


def train_config(config: RunConfig, out_dir: str | Path, options: TrainOptions = TrainOptions(), *,
                 dataset: str | None = None, checkpoint: str | None = None, resume: bool = False,
                 device: torch.device | str = "cpu", progress: bool | None = None, splits=None,
                 log: Log | None = log_stderr,
                 on_epoch_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train ``config`` into ``out_dir``; see the module docstring for what is written.

    ``splits`` (loaded :class:`~dse.data.DataSplits`) saves reloading the dataset. ``log``
    receives notes and one line per epoch (:func:`dse.train.engine.epoch_line`); ``progress``
    a step bar on stderr that stays when done (``None``: only on a terminal).
    ``on_epoch_end(epoch, record)`` runs after each epoch's checkpoint (tests interrupt there).
    """
    out, o = Path(out_dir), resolve(options, config)
    _check_request(config, o, out, resume)
    dataset, device = dataset or config.dataset, resolve_device(device)
    if splits is None:
        splits = load_dataset(dataset, seed=config.seed, input_size=config.input_size)
    backbone, bsource = _backbone(config, dataset, checkpoint or config.checkpoint, splits, o,
                                  resume, device, progress, log)
    job = _prepare(config, o, backbone, splits, dataset, device)
    if resume:
        bsource = _restore(job, out / LAST, bsource, log)
    elif config.training.labels == "pseudo":
        job.run.pseudo = _pseudo_labels(job.model.backbone, job.train[0], device)
    targets = job.run.pseudo if job.run.pseudo is not None else job.train[1]
    out.mkdir(parents=True, exist_ok=True)
    _train_epochs(job, out, targets, shift_augment(splits.info, o.augment), bsource, progress,
                  log, on_epoch_end)
    return _finish(job, out, splits, dataset, bsource)


class _Run:
    """What an epoch checkpoint restores: weights, optimizer, schedule, RNGs, history."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, o: TrainOptions,
                 gen: torch.Generator) -> None:
        self.model, self.opt, self.o, self.gen = model, opt, o, gen
        self.sched: Any = None
        self.epoch, self.history, self.pseudo = 0, [], None

    def state_dict(self, hdkd: HdkdTraining | None) -> dict[str, Any]:
        return {"epoch": self.epoch, "history": plain(self.history),
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                "pseudo": self.pseudo, "hdkd": hdkd.state_dict() if hdkd is not None else None}

    def load_state_dict(self, state: dict[str, Any], hdkd: HdkdTraining | None) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.history, self.pseudo = state["epoch"], list(state["history"]), state["pseudo"]
        if hdkd is not None:
            hdkd.load_state_dict(state["hdkd"])


@torch.no_grad()
def _pseudo_labels(backbone: nn.Module, x: torch.Tensor, device) -> torch.Tensor:
    was = backbone.training
    backbone.eval()
    labels = torch.cat([backbone(x[i:i + EVAL_BATCH].to(device)).argmax(1).cpu()
                        for i in range(0, x.shape[0], EVAL_BATCH)])
    backbone.train(was)
    return labels
