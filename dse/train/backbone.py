"""Backbone training, and cached checkpoints for built-in backbones trained on the fly.

The search freezes the backbone (post-trained early exits), so it needs trained weights. With a
``--checkpoint`` those are loaded; otherwise a built-in backbone is trained here once and cached
under :func:`dse.cache.cache_dir` ``/backbones``, keyed by (backbone, dataset, seed, input size,
epochs). The embedded default (digits-resnet on digits) trains in seconds; any other dataset is
trained too, with a notice of the cost.

Recipe (He et al. 2016 for CIFAR ResNets, shortened): SGD with Nesterov momentum 0.9, weight
decay 5e-4, a cosine learning-rate decay to 0 over all steps (Loshchilov & Hutter 2017), random
shifts of up to ``input_size / 8`` pixels (4 on 32x32) and horizontal flips for natural images.
The optimizer, schedule, data order and progress bar come from :mod:`dse.train.engine`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dse.cache import atomic_torch_save, cache_dir, digest, file_lock, slug
from dse.data import load_dataset, split_batches, split_tensors
from dse.errors import CheckpointError, ConfigError
from dse.evaluation.metrics import percent
from dse.models.backbones import Backbone, build_backbone, is_user_backbone
from dse.models.checkpoint import load_state_dict, read_checkpoint
from dse.train.engine import (NETWORK_ADAM_LR, NETWORK_SGD_LR, NETWORK_WEIGHT_DECAY, Log,
                              batch_to, check_optimizer, epoch_batches, log_stderr, make_optimizer,
                              make_schedule, optimizer_step, progress_bar, resolve_device)

#: epochs when none are given: enough for ~99% test accuracy on digits in seconds; digits-hard
#: (12,000 16x16 training images, 8x the pixels) gets few, to stay within minutes on a CPU
DEFAULT_EPOCHS = {"digits": 30, "digits-hard": 6}
FALLBACK_EPOCHS = 30
#: datasets whose images may be mirrored left-right without changing the class
FLIP_DATASETS = frozenset({"cifar10", "cifar100", "imagefolder"})
#: bump when the training recipe changes, so stale cached checkpoints are not reused
RECIPE_VERSION = 1


@dataclass(frozen=True)
class TrainRecipe:
    epochs: int = FALLBACK_EPOCHS
    lr: float = NETWORK_SGD_LR  # peak learning rate, cosine-decayed to 0
    batch_size: int = 64
    optimizer: str = "sgd"      # "sgd" (Nesterov momentum 0.9) or "adam"
    weight_decay: float = NETWORK_WEIGHT_DECAY
    augment: bool = True        # random shifts (and flips for natural images)


@dataclass(frozen=True)
class BackboneInfo:
    """Where a backbone's weights came from and how well it does."""

    name: str
    dataset: str
    source: str                 # "checkpoint", "cache" or "trained"
    path: str | None            # the checkpoint file read or written
    num_classes: int
    in_channels: int
    input_size: int
    metrics: dict[str, Any] = field(default_factory=dict)


def default_epochs(dataset_name: str) -> int:
    return DEFAULT_EPOCHS.get(dataset_name, FALLBACK_EPOCHS)


def random_shift(x: torch.Tensor, pad: int, gen: torch.Generator,
                 flip: bool = False) -> torch.Tensor:
    """Shift every image by its own (dy, dx) in [-pad, pad] with zero fill; optionally mirror."""
    if pad <= 0 and not flip:
        return x
    b, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad)) if pad > 0 else x
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    rows = (torch.arange(h)[None, :] + dy[:, None]).to(x.device)
    cols = (torch.arange(w)[None, :] + dx[:, None])
    if flip:
        mirror = torch.rand(b, generator=gen) < 0.5
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    cols = cols.to(x.device)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


@torch.inference_mode()
def accuracy(model: torch.nn.Module, ds, device: torch.device | str = "cpu",
             batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on a split (eval mode)."""
    was = model.training
    model.eval()
    right = total = 0
    for x, y in split_batches(ds, batch_size, device):
        right += int((model(x).argmax(1) == y).sum())
        total += int(y.numel())
    model.train(was)
    return right / max(total, 1)


def shift_augment(info, augment: bool) -> tuple[int, bool]:
    """(pad, flip) of the random-shift augmentation for a dataset (``info``: its DatasetInfo):
    shifts of up to ``input_size / 8`` pixels, mirrors for natural images; (0, False) without."""
    pad = max(1, info.input_size // 8) if augment else 0
    return pad, augment and info.name in FLIP_DATASETS


def train_backbone(name: str, splits, *, epochs: int | None = None, seed: int = 0,
                   device: torch.device | str = "cpu", lr: float | None = None,
                   batch_size: int | None = None, optimizer: str = "sgd",
                   progress: bool | None = None) -> tuple[Backbone, dict[str, Any]]:
    """Train backbone ``name`` on ``splits.train``; metrics hold its val and test accuracy.

    ``progress``: a tqdm bar on stderr (``None``: only on a terminal; ``False``: never).
    """
    info = splits.info
    recipe = TrainRecipe(epochs=epochs if epochs is not None else default_epochs(info.name),
                         lr=lr if lr is not None else (NETWORK_SGD_LR if optimizer == "sgd"
                                                       else NETWORK_ADAM_LR),
                         batch_size=batch_size or 64, optimizer=optimizer)
    if recipe.epochs < 1 or recipe.batch_size < 1 or not recipe.lr > 0:
        raise ConfigError(f"backbone training needs epochs >= 1, batch size >= 1 and lr > 0, got "
                          f"epochs={recipe.epochs}, batch_size={recipe.batch_size}, lr={recipe.lr}")
    check_optimizer(optimizer, "backbone optimizer")
    device = resolve_device(device)
    torch.manual_seed(seed)
    model = build_backbone(name, num_classes=info.num_classes, in_channels=info.channels).to(device)
    x_train, y_train = split_tensors(splits.train)
    n = int(y_train.shape[0])
    total = recipe.epochs * math.ceil(n / recipe.batch_size)
    opt = make_optimizer(optimizer, (p for p in model.parameters() if p.requires_grad),
                         lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = make_schedule(opt, "cosine", total)
    gen = torch.Generator().manual_seed(seed)
    pad, flip = shift_augment(info, recipe.augment)
    start = time.perf_counter()
    loss_value = float("nan")
    model.train()
    with progress_bar(total, f"train {name}", enabled=progress, leave=False) as bar:
        for _ in range(recipe.epochs):
            for idx in epoch_batches(n, recipe.batch_size, gen):
                x, y = batch_to(device, random_shift(x_train[idx], pad, gen, flip), y_train[idx])
                loss = F.cross_entropy(model(x), y)
                if not torch.isfinite(loss):
                    raise ConfigError(f"backbone {name} training diverged (loss "
                                      f"{float(loss.detach())}); try a lower --lr than {recipe.lr}")
                optimizer_step(opt, loss, sched)
                loss_value = float(loss.detach())
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
    model.eval()
    metrics = {
        "val_accuracy": accuracy(model, splits.val, device),
        "test_accuracy": accuracy(model, splits.test, device),
        "train_loss": loss_value, "epochs": recipe.epochs, "steps": total, "lr": recipe.lr,
        "batch_size": recipe.batch_size, "optimizer": optimizer, "seed": seed,
        "train_seconds": round(time.perf_counter() - start, 3),
    }
    return model.cpu(), metrics


def checkpoint_payload(model: Backbone, name: str, dataset: str, info, metrics: dict) -> dict:
    """What a saved backbone holds; ``state_dict`` is found by plain ``torch.load`` and by
    :func:`dse.models.checkpoint.load_state_dict`."""
    return {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "backbone": name, "dataset": dataset, "num_classes": info.num_classes,
            "in_channels": info.channels, "input_size": info.input_size,
            "mean": list(info.mean), "std": list(info.std),  # the input normalisation used
            "metrics": dict(metrics)}


def save_backbone(path: str | Path, model: Backbone, name: str, dataset: str, info,
                  metrics: dict) -> Path:
    """Write a checkpoint atomically (temporary file, then rename)."""
    try:
        return atomic_torch_save(checkpoint_payload(model, name, dataset, info, metrics), path)
    except OSError as exc:
        raise ConfigError(f"cannot write checkpoint {path} ({exc.strerror or exc})") from exc


def cached_backbone_path(name: str, dataset: str, *, seed: int, input_size: int,
                         epochs: int) -> Path:
    """The cache file for a built-in backbone trained on ``dataset`` (keyed by all inputs)."""
    key = digest(name, dataset, seed, input_size, epochs, RECIPE_VERSION)
    stem = f"{slug(name)}_{slug(dataset)}_s{seed}_{input_size}px_e{epochs}_{key[:10]}.pt"
    return cache_dir("backbones") / stem


def _load(name: str, path: str, info) -> tuple[Backbone, dict]:
    raw = read_checkpoint(path)
    metrics = raw.get("metrics", {}) if isinstance(raw, dict) else {}
    model = build_backbone(name, num_classes=info.num_classes, in_channels=info.channels)
    load_state_dict(model, path)
    model.eval()
    return model, dict(metrics) if isinstance(metrics, dict) else {}


def ensure_backbone(name: str, dataset: str, *, seed: int = 0, checkpoint: str | None = None,
                    input_size: int | None = None, device: torch.device | str = "cpu",
                    epochs: int | None = None, progress: bool | None = None, splits=None,
                    log: Log | None = log_stderr) -> tuple[Backbone, BackboneInfo]:
    """A trained backbone for ``dataset``: from ``checkpoint``, from the cache, or trained now.

    ``splits`` (a loaded :class:`~dse.data.DataSplits`) saves reloading the dataset. Two
    processes that miss the cache together train once (file lock) and never read a partial file.
    """
    splits = splits if splits is not None else load_dataset(dataset, seed=seed, input_size=input_size)
    info = splits.info
    shape = dict(num_classes=info.num_classes, in_channels=info.channels, input_size=info.input_size)
    if checkpoint is not None:
        model, metrics = _load(name, checkpoint, info)
        return model, BackboneInfo(name, dataset, "checkpoint", str(checkpoint), metrics=metrics, **shape)
    if is_user_backbone(name):
        raise ConfigError(f"--backbone {name}: a user backbone needs --checkpoint (train one with "
                          f"'dse backbone train --backbone {name} --dataset {dataset} --out FILE')")
    epochs = epochs if epochs is not None else default_epochs(info.name)
    path = cached_backbone_path(name, dataset, seed=seed, input_size=info.input_size, epochs=epochs)
    with file_lock(path):
        if path.is_file():
            try:
                model, metrics = _load(name, str(path), info)
                return model, BackboneInfo(name, dataset, "cache", str(path), metrics=metrics, **shape)
            except CheckpointError as exc:  # a foreign or damaged file: retrain over it
                if log:
                    log(f"note: ignoring unusable cached backbone ({exc})")
        if log and info.name != "digits":
            log(f"note: no --checkpoint for {name} on {dataset}: training it now for {epochs} "
                f"epochs on {sum(splits.sizes().values())} images, which can take long on a CPU; "
                f"pass --checkpoint to reuse weights (cached at {path})")
        model, metrics = train_backbone(name, splits, epochs=epochs, seed=seed, device=device,
                                        progress=progress)
        save_backbone(path, model, name, dataset, info, metrics)
    if log:
        log(f"trained {name} on {dataset}: val accuracy {percent(metrics['val_accuracy']):.2f}%, "
            f"test accuracy {percent(metrics['test_accuracy']):.2f}% (cached at {path})")
    return model, BackboneInfo(name, dataset, "trained", str(path), metrics=metrics, **shape)

