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
- ``classifiers``: IMTA's second phase (Li et al. 2019, ``main_IMTA.py``): the backbone's blocks
  are frozen, the early exits and the final head train, from the weights of ``init_model``; a
  frozen copy of that model gives the distillation teacher (its final logits) to a ``kd`` loss.
  :func:`dse.train.recipes.train_imta` chains the two phases.

An output folder holds ``last.pt`` (model, optimizer, scheduler, epoch, RNG states and the best
epoch's weights: written atomically after every epoch, read by ``resume``), ``epochs.csv`` (one
row per epoch, :mod:`dse.train.run_log`; ``tensorboard/`` too when TensorBoard is installed),
``model.pt`` (the trained multi-exit model, see :mod:`dse.train.model_file`: the best-on-val
epoch's weights by default, :mod:`dse.train.run_state`), ``metrics.json`` and ``config.yaml``
(the configuration as trained, with its thresholds re-tuned on val by default,
:mod:`dse.train.retune`; ``metrics.json`` holds the thresholds and val / test numbers before and
after).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from dse.cache import atomic_torch_save
from dse.cost.assemble import Assembled, InputSpec
from dse.data import load_dataset, normalize_splits, split_labels, split_tensors
from dse.design import RunConfig, save_config
from dse.errors import CheckpointError, ConfigError
from dse.evaluation import evaluate
from dse.models.backbones import build_backbone
from dse.models.checkpoint import read_checkpoint
from dse.train.backbone import ensure_backbone, random_shift, shift_augment
from dse.train.engine import (EpochLog, Log, batch_to, current_lr, epoch_batches, log_stderr,
                              make_optimizer, make_schedule, optimizer_step, progress_bar,
                              resolve_device)
from dse.train.features import FeatureCache, cap_splits
from dse.train.frozen_features import branch_outputs, cached_outputs, gather, study_cache
from dse.train.losses import apply_loss
from dse.train.init_weights import load_exits, load_initial, pseudo_labels
from dse.train.model_file import assemble_config, collect_outputs, exit_costs, save_model
from dse.train.options import TrainOptions, resolve
from dse.train.retune import Objective, retune_or_keep
from dse.train.run_log import EPOCHS_CSV, TENSORBOARD_DIR, TensorBoardLog, write_epochs_csv
from dse.train.run_state import RunState
from dse.train.techniques import HdkdTraining, gradient_equilibrium
from dse.yamlio import to_plain

LAST, MODEL, METRICS, CONFIG = "last.pt", "model.pt", "metrics.json", "config.yaml"


@dataclass
class TrainResult:
    out_dir: Path
    model_path: Path
    metrics: dict[str, Any]
    model: nn.Module


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(to_plain(obj), indent=2) + "\n")
    os.replace(tmp, path)


# -------------------------------------------------------------------------------- training


def _backbone(config: RunConfig, dataset: str, checkpoint: str | None, splits, o: TrainOptions,
              resume: bool, device, progress, log: Log | None):
    """(backbone, where its weights came from). On resume the weights come from last.pt."""
    info = splits.info
    if resume or o.init == "scratch" or o.init_model:
        torch.manual_seed(o.seed)
        bb = build_backbone(config.backbone, num_classes=info.num_classes, in_channels=info.channels)
        source = "resume" if resume else "init_model" if o.init_model else "scratch"
        return bb, {"source": source, "path": o.init_model if source == "init_model" else None}
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


def _prepare(config: RunConfig, o: TrainOptions, backbone: nn.Module, splits, dataset: str,
             device: torch.device, cache: FeatureCache | None = None,
             init_exits: Sequence[nn.Module] | None = None) -> _Job:
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
    return _Job(config, o, a, model, costs, (x_train, y_train), (x_val, y_val), steps_per_epoch,
                run, hdkd, device, settings, cache=cache, teacher=teacher)


#: Options added after runs began saving ``last.pt``, with what the runs saved before them did:
#: a checkpoint without the key was written by that behaviour (before ``--keep``, a run kept
#: its last epoch), so ``--resume --keep last`` continues it and the default names the clash.
LEGACY_OPTIONS = {"keep": "last"}


def _restore(job: _Job, last: Path, bsource: dict, log: Log | None) -> dict:
    """Continue from ``last`` (settings must match); the backbone source it recorded."""
    state = read_checkpoint(str(last))
    try:  # a foreign or damaged last.pt is a user error, not a crash
        saved, now = state["settings"], job.settings
        _check_same({**LEGACY_OPTIONS, **saved["options"]}, now["options"], "option", last)
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


def _batch_loss(job: _Job, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
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


def _outputs(job: _Job, split: str, data: tuple | None):
    """Exit outputs of a split: from the cache, or the model on ``data`` (images, labels)."""
    isc = job.config.training.loss.isc
    if job.cache is not None:  # frozen mode only: ISC never reaches the backbone's head
        return cached_outputs(job.model, job.cache, split, isc=isc, device=job.device)
    return collect_outputs(job.model, *data, isc=isc, isc_final=not job.frozen, device=job.device)


def _train_epochs(job: _Job, out: Path, targets: torch.Tensor, augment: tuple[int, bool],
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
                val = _outputs(job, "val", job.val)
                record = {"epoch": epoch + 1, "train_loss": loss, "lr": current_lr(run.opt),
                          "val": _early_exit_summary(val, job.config, job.a.exit_macs),
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


def _finish(job: _Job, out: Path, splits, dataset: str, bsource: dict,
            retune: Objective | None, log: Log | None) -> TrainResult:
    """Keep the best epoch's weights (``keep="best"``), measure val and test, re-tune the
    thresholds on val (unless ``retune`` is None), write config.yaml, model.pt, metrics.json."""
    run, o = job.run, job.o
    kept = run.restore_best() if o.keep == "best" else None
    if kept is not None and log and kept["epoch"] != run.epoch:
        log(f"keeping epoch {kept['epoch']} (best val mean anytime accuracy "
            f"{kept['val_mean_anytime_accuracy']:.2f}%)")
    val = _outputs(job, "val", job.val)
    test = _outputs(job, "test", None if job.cache is not None else split_tensors(splits.test))
    model = job.model.cpu().eval()
    info = splits.info
    inputs = {"dataset": dataset, "dataset_name": info.name, "num_classes": info.num_classes,
              "in_channels": info.channels, "input_size": info.input_size,
              "class_names": list(info.class_names), "mean": list(info.mean), "std": list(info.std)}
    config, thresholds = job.config, None
    if retune is not None:
        tuned = retune_or_keep(model, config, inputs, job.a.exit_macs, val, test, retune, log)
        config, thresholds = tuned.config, tuned.report
    metrics = {
        "config": to_plain(config.to_dict()), "options": o.to_dict(), "dataset": dataset,
        "backbone": bsource, "exit_blocks": list(job.a.placement.blocks),
        "exit_macs": job.a.exit_macs, "exit_costs": job.costs, "epochs_run": len(run.history),
        "train_seconds": run.history[-1]["seconds"] if run.history else 0.0,
        "kept_epoch": kept["epoch"] if kept is not None else len(run.history),
        "val": _early_exit_summary(val, config, job.a.exit_macs),
        "test": _early_exit_summary(test, config, job.a.exit_macs),
        "thresholds": thresholds, "history": run.history,
        "feature_cache": job.cache.describe() if job.cache is not None else None,
    }
    if run.pseudo is not None:
        metrics["pseudo_label_agreement"] = float((run.pseudo == job.train[1]).float().mean())
    if job.hdkd is not None:
        metrics["hdkd_gamma"] = job.hdkd.named_gamma()
    save_config(config, str(out / CONFIG), header="the configuration as trained by dse train"
                + (" (thresholds re-tuned on val)" if thresholds and thresholds["retuned"] else ""))
    path = save_model(out / MODEL, model, config, inputs, metrics, o.to_dict(), job.a.exit_macs)
    _write_json(out / METRICS, metrics)
    return TrainResult(out, path, metrics, model)


def train_config(config: RunConfig, out_dir: str | Path, options: TrainOptions = TrainOptions(), *,
                 dataset: str | None = None, checkpoint: str | None = None, resume: bool = False,
                 device: torch.device | str = "cpu", progress: bool | None = None, splits=None,
                 log: Log | None = log_stderr,
                 on_epoch_end: Callable[[int, dict], None] | None = None,
                 init_exits: Sequence[nn.Module] | None = None,
                 retune: Objective | None = Objective()) -> TrainResult:
    """Train ``config`` into ``out_dir``; see the module docstring for what is written.

    ``retune``: re-tune the thresholds on val after training for this objective
    (:mod:`dse.train.retune`; kept, with a note, when it cannot apply); None keeps the config's.

    ``init_exits``: one module per early exit whose weights start the exits (``init="proxy"``:
    the search's proxy-trained branches); None: freshly initialised exits.

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
    splits = normalize_splits(splits, o.normalize)
    on_cache = (o.mode == "frozen" and not o.augment and not o.hdkd and o.feature_cache
                and o.isc_transform != "learned" and not o.init_model)
    # frozen weights never change: a resumed frozen run on the cache starts from the same
    # backbone as the first (so the cache key matches); last.pt then restores them anyway
    backbone, bsource = _backbone(config, dataset, checkpoint or config.checkpoint, splits, o,
                                  resume and not on_cache, device, progress, log)
    cache = None
    if on_cache:
        cache = study_cache(config, backbone, splits, dataset, max_samples=o.max_samples,
                            device=device, progress=progress, log=log)
        if log:
            log("frozen training on the feature cache: the backbone does not run per step")
    else:
        splits = cap_splits(splits, o.max_samples, config.seed)  # the cache's rows
    job = _prepare(config, o, backbone, splits, dataset, device, cache, init_exits)
    if resume:
        bsource = _restore(job, out / LAST, bsource, log)
    elif config.training.labels == "pseudo":
        job.run.pseudo = (cache.split("train").logits.argmax(1) if cache is not None
                          else pseudo_labels(job.model.backbone, job.train[0], device))
    targets = job.run.pseudo if job.run.pseudo is not None else job.train[1]
    out.mkdir(parents=True, exist_ok=True)
    _train_epochs(job, out, targets, shift_augment(splits.info, o.augment), bsource, progress,
                  log, on_epoch_end)
    return _finish(job, out, splits, dataset, bsource, retune, log)
