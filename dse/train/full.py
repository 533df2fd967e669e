"""Full training of a configuration chosen from the Pareto front (``dse train``).

The run configuration (``reports/<study>/configs/<trial>.yaml``) fixes the structure, the loss
(ce / eenet / kd / dense_kd, with or without ISC) and the label source; the recipe
(:mod:`dse.train.options`) fixes mode, epochs, optimizer and schedule, gradient equilibrium
and HDKD (:mod:`dse.train.techniques`). The optimizer, schedule, data order, progress bar and
the per-epoch log line come from :mod:`dse.train.engine`. This module holds the run around the
training: the request checks, the backbone, resume and the trained model's files; the training
job itself (model, data, optimizer) and its epoch loop are :mod:`dse.train.full_job`'s.

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

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from dse.data import load_dataset, normalize_splits, split_tensors
from dse.design import RunConfig, save_config
from dse.errors import CheckpointError, ConfigError
from dse.models.backbones import build_backbone
from dse.models.checkpoint import read_checkpoint
from dse.train.backbone import ensure_backbone, shift_augment
from dse.train.engine import Log, log_stderr, resolve_device
from dse.train.features import cap_splits
from dse.train.frozen_features import study_cache
from dse.train.full_job import LAST, Job, early_exit_summary, prepare, split_outputs, train_epochs
from dse.train.init_weights import pseudo_labels
from dse.train.model_file import save_model
from dse.train.options import TrainOptions, resolve
from dse.train.retune import Objective, retune_or_keep
from dse.yamlio import to_plain

MODEL, METRICS, CONFIG = "model.pt", "metrics.json", "config.yaml"


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


#: Options added after runs began saving ``last.pt``, with what the runs saved before them did:
#: a checkpoint without the key was written by that behaviour (before ``--keep``, a run kept
#: its last epoch), so ``--resume --keep last`` continues it and the default names the clash.
LEGACY_OPTIONS = {"keep": "last"}


def _restore(job: Job, last: Path, bsource: dict, log: Log | None) -> dict:
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


def _finish(job: Job, out: Path, splits, dataset: str, bsource: dict,
            retune: Objective | None, log: Log | None) -> TrainResult:
    """Keep the best epoch's weights (``keep="best"``), measure val and test, re-tune the
    thresholds on val (unless ``retune`` is None), write config.yaml, model.pt, metrics.json."""
    run, o = job.run, job.o
    kept = run.restore_best() if o.keep == "best" else None
    if kept is not None and log and kept["epoch"] != run.epoch:
        log(f"keeping epoch {kept['epoch']} (best val mean anytime accuracy "
            f"{kept['val_mean_anytime_accuracy']:.2f}%)")
    val = split_outputs(job, "val", job.val)
    test = split_outputs(job, "test", None if job.cache is not None else split_tensors(splits.test))
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
        "val": early_exit_summary(val, config, job.a.exit_macs),
        "test": early_exit_summary(test, config, job.a.exit_macs),
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
    job = prepare(config, o, backbone, splits, dataset, device, cache, init_exits)
    if resume:
        bsource = _restore(job, out / LAST, bsource, log)
    elif config.training.labels == "pseudo":
        job.run.pseudo = (cache.split("train").logits.argmax(1) if cache is not None
                          else pseudo_labels(job.model.backbone, job.train[0], device))
    targets = job.run.pseudo if job.run.pseudo is not None else job.train[1]
    out.mkdir(parents=True, exist_ok=True)
    train_epochs(job, out, targets, shift_augment(splits.info, o.augment), bsource, progress,
                 log, on_epoch_end)
    return _finish(job, out, splits, dataset, bsource, retune, log)
