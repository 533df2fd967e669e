"""``dse train``: train a configuration exported by ``dse search`` and save the model.

Writes into ``--out`` (default: ``reports/<study>/train/<trial>/`` for a config in
``reports/<study>/configs/<trial>.yaml``, else ``<config folder>/<config name>-train/``):
``model.pt`` (open with ``dse evaluate`` or ``torch.load(..., weights_only=True)``),
``metrics.json``, ``config.yaml`` and ``last.pt`` (for ``--resume``).
"""
from __future__ import annotations

import click

from dse.api import train
from dse.cli import options
from dse.cli.output import echo_json, table
from dse.data import parse_normalize
from dse.train.engine import log_stderr


@click.command("train")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Run configuration YAML (reports/<study>/configs/<trial>.yaml).")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--dataset", default=None, help="Override the config's dataset (NAME or NAME:PATH).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Backbone weights (default: the config's, else the cached trained backbone).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: reports/<study>/train/<trial>/ for a config in "
                   "reports/<study>/configs/, else <config name>-train/ beside it).")
@click.option("--mode", type=click.Choice(["frozen", "joint"]), default="frozen", show_default=True,
              help="frozen: train the exits on the fixed backbone; joint: train everything.")
@click.option("--recipe", type=click.Choice(["plain", "imta"]), default="plain", show_default=True,
              help="imta: IMTA's two phases (Li et al. 2019): joint with GE and CE for --epochs "
                   "at --lr, then the classifiers (exits and head) on the frozen backbone with "
                   "ISC and one-for-all KD from phase 1's head for --phase2-epochs at "
                   "--phase2-lr; into --out/phase1 and --out/phase2.")
@click.option("--phase2-epochs", type=click.IntRange(min=1), default=None,
              help="--recipe imta: phase-2 epochs (default: --epochs).")
@click.option("--phase2-lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="--recipe imta: phase-2 peak learning rate (default: the joint default).")
@click.option("--phase2-isc", type=click.Choice(["learned", "add"]), default="learned",
              show_default=True, help="--recipe imta: phase 2's ISC (IMTA's learned transform, "
                                      "or dse's parameter-free sum).")
@click.option("--isc-transform", type=click.Choice(["add", "learned"]), default="add",
              show_default=True,
              help="ISC of a config trained with it: add = z_i + stopgrad(z_{i-1}); learned = "
                   "IMTA's Linear-BN-ReLU transform of the previous classifier's logits.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out from its last epoch.")
@click.option("--lr", type=options.FloatRange(min=0, min_open=True), default=None,
              help="Peak learning rate (default: 0.05 joint with sgd, else the config's).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Batch size (default: the config's).")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default=None,
              help="Default: sgd (momentum) for joint, the config's for frozen.")
@click.option("--momentum", type=options.FloatRange(0, 1, max_open=True), default=0.9, show_default=True)
@click.option("--weight-decay", type=options.FloatRange(min=0), default=None,
              help="Default: 5e-4 joint, 0 frozen.")
@click.option("--schedule", type=click.Choice(["cosine", "step", "constant"]), default="cosine",
              show_default=True, help="cosine to 0, or /10 at 50% and 75% of the steps.")
@click.option("--ge/--no-ge", default=None,
              help="Gradient equilibrium (Li et al. 2019); default on for joint.")
@click.option("--hdkd", is_flag=True,
              help="Learn the CE / distillation loss weights on val (harmonized dense KD).")
@click.option("--hdkd-lr", type=options.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="Step size of HDKD's loss-weight update.")
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Random shifts (and flips for natural images).")
@click.option("--from-scratch", is_flag=True, help="Joint mode: start from random backbone weights.")
@click.option("--init", "init", type=click.Choice(["pretrained", "proxy"]), default="pretrained",
              show_default=True,
              help="proxy: start the exits from the ones the search proxy-trained (rebuilt "
                   "exactly from the config's proxy seed) instead of fresh ones.")
@click.option("--keep", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="Save the weights of the epoch with the best val mean anytime accuracy, or "
                   "of the last epoch.")
@click.option("--keep-thresholds", is_flag=True,
              help="Keep the config's thresholds (default: re-tune them on val after training, "
                   "for the highest accuracy within the latency the search predicted; see dse "
                   "thresholds).")
@click.option("--seed", type=int, default=None, help="Random seed (default: the config's).")
@options.allow_code
@click.option("--max-samples", type=click.IntRange(min=1), default=None,
              help="Keep a seeded random subset of at most N rows of each split (frozen "
                   "--no-augment: default the study's).")
@options.normalize
@click.option("--feature-cache/--no-feature-cache", default=True, show_default=True,
              help="Frozen --no-augment: train the exits on the study's feature cache (built "
                   "once when missing) instead of running the backbone every step.")
@options.device
@options.threads
@options.json_flag
def command(config_path, epochs, dataset, checkpoint, out_dir, mode, recipe, phase2_epochs,
            phase2_lr, phase2_isc, isc_transform, resume, lr, batch_size, optimizer, momentum,
            weight_decay, schedule, ge, hdkd, hdkd_lr, augment, from_scratch, init, keep,
            keep_thresholds, seed,
            allow_code, max_samples, normalize, mean, std, feature_cache, device, threads,
            as_json):
    """Train the configuration in --config (exits only, or jointly with the backbone).

    Writes model.pt (for dse evaluate), metrics.json, config.yaml and last.pt (for --resume).
    """
    result = train(config_path, epochs=epochs, dataset=dataset, checkpoint=checkpoint,
                   out=out_dir, mode=mode, resume=resume, lr=lr, batch_size=batch_size,
                   optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                   schedule=schedule, ge=ge, hdkd=hdkd, hdkd_lr=hdkd_lr, augment=augment,
                   from_scratch=from_scratch, init=init, seed=seed, allow_code=allow_code,
                   device=device,
                   threads=threads, recipe=recipe, phase2_epochs=phase2_epochs,
                   phase2_lr=phase2_lr, phase2_isc=phase2_isc, isc_transform=isc_transform,
                   max_samples=max_samples, normalize=parse_normalize(normalize, mean, std),
                   feature_cache=feature_cache, keep=keep, retune=not keep_thresholds,
                   log=log_stderr, progress=None)
    m = result.metrics
    if as_json:
        echo_json({"out": str(result.out_dir), "model": str(result.model_path),
                   "metrics": str(result.out_dir / "metrics.json"), "options": m["options"],
                   "val": m["val"], "test": m["test"], "epochs_run": m["epochs_run"],
                   "train_seconds": m["train_seconds"], "recipe": m.get("recipe"),
                   "kept_epoch": m.get("kept_epoch"), "thresholds": m.get("thresholds"),
                   "epochs_csv": str(result.out_dir / "epochs.csv")})
        return
    t = m["test"]
    rows = [[n + 1, f"{macs / 1e6:.3f}", f"{acc:.2f}", f"{100 * frac:.1f}"]
            for n, (macs, acc, frac) in enumerate(zip(m["exit_macs"], t["per_exit_accuracy"],
                                                       t["exit_fractions"]))]
    o = m["options"]
    click.echo(f"trained {o['mode']} for {o['epochs']} epochs ({m['train_seconds']:.1f} s): "
               f"loss {m['config']['training']['loss']['name']}, ge {o['ge']}, hdkd {o['hdkd']}")
    click.echo(table(["exit", "M MACs", "test acc %", "exits here %"], rows))
    click.echo(f"early-exit test accuracy {t['accuracy']:.2f}% at "
               f"{t['expected_macs'] / 1e6:.3f} M MACs on average "
               f"(mean anytime accuracy {t['mean_anytime_accuracy']:.2f}%)")
    th = m.get("thresholds")
    if th and th["retuned"]:
        b, a = th["before"], th["after"]
        click.echo(f"thresholds re-tuned on val ({th['rule']}): test accuracy "
                   f"{b['test']['accuracy']:.2f}% -> {a['test']['accuracy']:.2f}%")
    elif th:
        click.echo(f"thresholds kept as configured ({th['note']})")
    click.echo(f"saved {result.model_path} (epoch {m.get('kept_epoch')} of {m['epochs_run']})")
