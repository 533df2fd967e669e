"""Full training of a configuration chosen from the Pareto front (``dse train``).

The run configuration (``reports/<study>/configs/<trial>.yaml``) fixes the structure, the loss
(ce / eenet / kd / dense_kd, with or without ISC) and the label source; the recipe
(:mod:`dse.train.schedules`) fixes mode, epochs, optimizer and schedule, gradient equilibrium
and HDKD (:mod:`dse.train.techniques`).

- ``frozen``: the backbone stays in eval mode with no gradient; only the exits train (post-trained
  early exits). With ``labels: pseudo`` the targets are the backbone's own predictions on the
  training images, so the training split's labels are never read.
- ``joint``: backbone and exits train together (pseudo labels then come from the backbone the
  run starts from).

An output folder holds ``last.pt`` (model, optimizer, scheduler, epoch, RNG states: written
atomically after every epoch, read by ``resume``), ``model.pt`` (the trained multi-exit model,
see :mod:`dse.train.trained`), ``metrics.json`` and ``config.yaml`` (the configuration as trained).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dse.cache import atomic_torch_save
from dse.config import RunConfig, save_config, thresholds_for
from dse.errors import CheckpointError, ConfigError, TrialFailed
from dse.models.assemble import InputSpec
from dse.models.checkpoint import read_checkpoint
from dse.train.schedules import TrainOptions, make_optimizer, make_scheduler, resolve
from dse.train.techniques import (BalancedValLoss, HdkdTerms, gradient_equilibrium,
                                  hdkd_gamma_step, per_exit_ce)
from dse.train.trained import (EVAL_BATCH, plain, assemble_config, collect_outputs, exit_costs,
                               save_model)

LAST, MODEL, METRICS, CONFIG = "last.pt", "model.pt", "metrics.json", "config.yaml"
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
    from dse.models.backbones import build_backbone
    from dse.train.backbone import ensure_backbone

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
    from dse.evaluation import evaluate

    t = thresholds_for(config.policy, outputs.num_exits - 1)
    r = evaluate(outputs, config.policy.criterion, t, exit_macs=exit_macs)
    return {"accuracy": r.accuracy, "per_exit_accuracy": r.per_exit_accuracy.tolist(),
            "mean_anytime_accuracy": float(r.per_exit_accuracy.mean()),
            "exit_fractions": r.exit_fractions.tolist(), "expected_macs": r.expected_macs}


def _check_same(saved: dict, now: dict, what: str, path: Path) -> None:
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key):
            raise ConfigError(f"--resume: {path} was written with {what} {key}={saved.get(key)!r}, "
                              f"this run has {now.get(key)!r}; use the same settings or a new --out")


def train_config(config: RunConfig, out_dir: str | Path, options: TrainOptions = TrainOptions(), *,
                 dataset: str | None = None, checkpoint: str | None = None, resume: bool = False,
                 device: torch.device | str = "cpu", progress: bool | None = None, splits=None,
                 log: Log | None = _stderr,
                 on_epoch_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train ``config`` into ``out_dir``; see the module docstring for what is written.

    ``splits`` (loaded :class:`~dse.data.DataSplits`) saves reloading the dataset;
    ``on_epoch_end(epoch, record)`` runs after each epoch's checkpoint (tests interrupt there).
    """
    from tqdm.auto import tqdm

    from dse.data import load_dataset, split_tensors
    from dse.train.backbone import FLIP_DATASETS, random_shift

    out, o = Path(out_dir), resolve(options, config)
    last = out / LAST
    if resume and not last.is_file():
        raise ConfigError(f"--resume: {last} does not exist (no interrupted run there); "
                          "run without --resume to start one")
    if not resume and last.is_file():
        raise ConfigError(f"{out} already holds a run ({LAST}); pass --resume to continue it "
                          "or choose another --out")
    if config.training.labels == "pseudo" and o.init == "scratch":
        raise ConfigError("labels: pseudo takes the backbone's own predictions: not with --from-scratch")
    dataset, device = dataset or config.dataset, torch.device(device)
    if splits is None:
        splits = load_dataset(dataset, seed=config.seed, input_size=config.input_size)
    info = splits.info
    backbone, bsource = _backbone(config, dataset, checkpoint or config.checkpoint, splits, o,
                                  resume, device, progress, log)
    torch.manual_seed(o.seed)
    a = assemble_config(config, backbone, InputSpec(info.channels, info.input_size, info.num_classes))
    config = config.with_blocks(a.placement.blocks)
    model, costs, loss_spec = a.model.to(device), exit_costs(a), config.training.loss
    frozen = o.mode == "frozen"
    for p in model.backbone.parameters() if frozen else ():
        p.requires_grad_(False)
    x_train, y_train = split_tensors(splits.train)
    x_val, y_val = split_tensors(splits.val)
    n = int(y_train.shape[0])
    steps_per_epoch = math.ceil(n / o.batch_size)
    run = _Run(model, make_optimizer((p for p in model.parameters() if p.requires_grad), o), o,
               torch.Generator().manual_seed(o.seed))
    run.sched = make_scheduler(run.opt, o.schedule, o.epochs * steps_per_epoch)
    hdkd = _Hdkd(loss_spec, model.num_exits, o, x_val, y_val, device) if o.hdkd else None
    settings = {"options": o.to_dict(), "dataset": dataset, "config": plain(config.to_dict())}
    if resume:
        state = read_checkpoint(str(last))
        try:  # a foreign or damaged last.pt is a user error, not a crash
            _check_same(state["settings"]["options"], settings["options"], "option", last)
            _check_same({"dataset": state["settings"]["dataset"], **state["settings"]["config"]},
                        {"dataset": dataset, **settings["config"]}, "config", last)
            run.load_state_dict(state, hdkd)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            raise CheckpointError(f"--resume: {last} is not a dse train checkpoint of this run "
                                  f"({type(exc).__name__}); delete it or use a new --out") from exc
        bsource = state.get("backbone_source", bsource)
        if log:
            log(f"resuming {out} after epoch {run.epoch} of {o.epochs}")
    elif config.training.labels == "pseudo":
        run.pseudo = _pseudo_labels(model.backbone, x_train, device)

    targets = run.pseudo if run.pseudo is not None else y_train
    pad = max(1, info.input_size // 8) if o.augment else 0
    flip = o.augment and info.name in FLIP_DATASETS
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=o.epochs * steps_per_epoch, initial=run.epoch * steps_per_epoch,
               desc="dse train", unit="step", file=sys.stderr, leave=False,
               disable=None if progress is None else not progress)
    t0 = time.perf_counter() - (run.history[-1]["seconds"] if run.history else 0.0)
    try:
        for epoch in range(run.epoch, o.epochs):
            model.train()
            if frozen:
                model.backbone.eval()
            perm = torch.randperm(n, generator=run.gen)
            loss_sum, steps = 0.0, 0
            for i in range(0, n, o.batch_size):
                idx = perm[i:i + o.batch_size]
                x = random_shift(x_train[idx], pad, run.gen, flip).to(device)
                y = targets[idx].to(device)
                step = epoch * steps_per_epoch + steps
                with gradient_equilibrium(model) if o.ge else contextlib.nullcontext():
                    if hdkd is None:
                        loss = loss_spec(model(x), y, exit_costs=costs, step=step)
                    else:
                        loss = hdkd.loss(model, x, y, lr=run.opt.param_groups[0]["lr"], step=step)
                    run.opt.zero_grad(set_to_none=True)
                    loss.backward()
                run.opt.step()
                run.sched.step()
                loss_sum, steps = loss_sum + float(loss.detach()), steps + 1
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / steps:.3f}", refresh=False)
            val = collect_outputs(model, x_val, y_val, isc=loss_spec.isc, device=device)
            record = {"epoch": epoch + 1, "train_loss": loss_sum / max(steps, 1),
                      "lr": run.opt.param_groups[0]["lr"],
                      "val": _early_exit_summary(val, config, a.exit_macs),
                      "seconds": round(time.perf_counter() - t0, 3)}
            if hdkd is not None:
                record["gamma"] = hdkd.named_gamma()
            run.history.append(record)
            run.epoch = epoch + 1
            atomic_torch_save({"settings": settings, "backbone_source": plain(bsource),
                               **run.state_dict(hdkd)}, last)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, record)
    finally:
        bar.close()

    x_test, y_test = split_tensors(splits.test)
    val = collect_outputs(model, x_val, y_val, isc=loss_spec.isc, device=device)
    test = collect_outputs(model, x_test, y_test, isc=loss_spec.isc, device=device)
    metrics = {
        "config": plain(config.to_dict()), "options": o.to_dict(), "dataset": dataset,
        "backbone": bsource, "exit_blocks": list(a.placement.blocks), "exit_macs": a.exit_macs,
        "exit_costs": costs, "epochs_run": len(run.history),
        "train_seconds": run.history[-1]["seconds"] if run.history else 0.0,
        "val": _early_exit_summary(val, config, a.exit_macs),
        "test": _early_exit_summary(test, config, a.exit_macs), "history": run.history,
    }
    if run.pseudo is not None:
        metrics["pseudo_label_agreement"] = float((run.pseudo == y_train).float().mean())
    if hdkd is not None:
        metrics["hdkd_gamma"] = hdkd.named_gamma()
    model = model.cpu().eval()
    inputs = {"dataset": dataset, "dataset_name": info.name, "num_classes": info.num_classes,
              "in_channels": info.channels, "input_size": info.input_size,
              "class_names": list(info.class_names), "mean": list(info.mean), "std": list(info.std)}
    save_config(config, str(out / CONFIG), header="the configuration as trained by dse train")
    path = save_model(out / MODEL, model, config, inputs, metrics, o.to_dict(), a.exit_macs)
    _write_json(out / METRICS, metrics)
    return TrainResult(out, path, metrics, model)


class _Run:
    """What an epoch checkpoint restores: weights, optimizer, schedule, RNGs, history."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, o: TrainOptions,
                 gen: torch.Generator) -> None:
        self.model, self.opt, self.o, self.gen = model, opt, o, gen
        self.sched: Any = None
        self.epoch, self.history, self.pseudo = 0, [], None

    def state_dict(self, hdkd: "_Hdkd | None") -> dict[str, Any]:
        return {"epoch": self.epoch, "history": plain(self.history),
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                "pseudo": self.pseudo, "hdkd": hdkd.state_dict() if hdkd is not None else None}

    def load_state_dict(self, state: dict[str, Any], hdkd: "_Hdkd | None") -> None:
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


class _Hdkd:
    """HDKD during training: the loss weights gamma, the balanced validation loss, val batches."""

    def __init__(self, loss_spec, num_exits: int, o: TrainOptions, x_val: torch.Tensor,
                 y_val: torch.Tensor, device: torch.device) -> None:
        self.terms = HdkdTerms(loss_spec.name, num_exits, loss_spec.kwargs, loss_spec.isc)
        self.gamma = self.terms.initial.clone().to(device)
        self.total = float(self.gamma.sum())
        self.balanced = BalancedValLoss(o.hdkd_alpha, o.hdkd_momentum)
        self.eps, self.batch_size, self.device = o.hdkd_lr, o.batch_size, device
        self.x_val, self.y_val = x_val, y_val
        self.gen = torch.Generator().manual_seed(o.seed + 1)

    def named_gamma(self) -> dict[str, float]:
        return dict(zip(self.terms.names, self.gamma.tolist()))

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float,
             step: int) -> torch.Tensor:
        """Update gamma on a random val batch (virtual step size ``lr``); the weighted loss."""
        from torch.func import functional_call

        vidx = torch.randperm(int(self.y_val.shape[0]), generator=self.gen)[:self.batch_size]
        xv, yv = self.x_val[vidx].to(self.device), self.y_val[vidx].to(self.device)
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        buffers = {n: b.clone() for n, b in model.named_buffers()}  # virtual step leaves BN alone

        def train_terms(p):
            return self.terms([z for z, _ in functional_call(model, p, (x,))], y)

        def val_loss(p):
            outs = functional_call(model, {**p, **buffers}, (xv,))
            return self.balanced(per_exit_ce([z for z, _ in outs], yv, self.terms.isc))

        self.gamma, terms = hdkd_gamma_step(params, self.gamma, train_terms, val_loss, lr,
                                            self.eps, self.total)
        loss = (self.gamma * terms).sum()
        if not bool(torch.isfinite(loss)):
            raise TrialFailed(f"HDKD loss became {float(loss.detach())} at step {step}; a lower "
                              "--lr or --hdkd-lr may help")
        return loss

    def state_dict(self) -> dict[str, Any]:
        ema = self.balanced.ema
        return {"gamma": self.gamma.cpu(), "ema": ema.cpu() if ema is not None else None,
                "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gamma = state["gamma"].to(self.device)
        self.balanced.ema = state["ema"].to(self.device) if state["ema"] is not None else None
        self.gen.set_state(state["gen"])
