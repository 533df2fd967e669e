"""``dse backbone train``: train a backbone on a dataset and save a checkpoint.

Without ``--out`` the checkpoint goes to the cache, where ``dse search`` finds it when it needs
that backbone on that dataset with that seed and no ``--checkpoint`` is given.
"""
from __future__ import annotations

import click

from dse.cli import options
from dse.cli.output import echo_json
from dse.data import load_dataset, normalize_splits, parse_normalize
from dse.evaluation.metrics import percent
from dse.device import select_device, set_threads
from dse.errors import ConfigError
from dse.train.backbone import cached_backbone_path, save_backbone, train_backbone
from dse.train.features import cap_splits


@click.group("backbone")
def command() -> None:
    """Train backbones (the search freezes them and trains only the exits)."""


@command.command("train")
@options.backbone
@options.dataset
@options.input_size
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs (default: 30).")
@click.option("--lr", type=options.FloatRange(min=0, min_open=True), default=None,
              help="Peak learning rate, cosine-decayed (default: 0.05 for sgd, 0.001 for adam).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Where to save the checkpoint (default: the dse cache, used by dse search).")
@click.option("--max-samples", type=click.IntRange(min=1), default=None,
              help="Train on a seeded random subset of at most N rows of each split (needs "
                   "--out: a backbone trained on a subset is not the cached default).")
@options.normalize
@options.seed
@options.device
@options.threads
@options.json_flag
def train(backbone, dataset, input_size, epochs, lr, batch_size, optimizer, out, max_samples,
          normalize, mean, std, seed, device, threads, as_json):
    """Train a backbone on a dataset; print its val/test accuracy and where it was saved."""
    norm = parse_normalize(normalize, mean, std)
    if (max_samples is not None or norm != "dataset") and out is None:
        raise ConfigError("--max-samples, --normalize and --mean/--std need --out: such a "
                          "backbone must not replace the cached default that dse search uses")
    set_threads(threads)
    dev = select_device(device)
    splits = load_dataset(dataset, seed=seed, input_size=input_size)
    splits = cap_splits(normalize_splits(splits, norm), max_samples, seed)
    model, metrics = train_backbone(backbone, splits, epochs=epochs, seed=seed, device=dev, lr=lr,
                                    batch_size=batch_size, optimizer=optimizer, progress=None)
    if out is None:
        out = cached_backbone_path(backbone, dataset, seed=seed, input_size=splits.info.input_size,
                                   epochs=metrics["epochs"])
    path = save_backbone(out, model, backbone, dataset, splits.info, metrics)
    if as_json:
        echo_json({"backbone": backbone, "dataset": dataset, "checkpoint": str(path), **metrics,
                   "val_accuracy": percent(metrics["val_accuracy"]),
                   "test_accuracy": percent(metrics["test_accuracy"])})
        return
    click.echo(f"{backbone} on {dataset}: val accuracy {percent(metrics['val_accuracy']):.2f}%, "
               f"test accuracy {percent(metrics['test_accuracy']):.2f}% "
               f"({metrics['epochs']} epochs, {metrics['train_seconds']:.1f} s)")
    click.echo(f"saved {path}")
