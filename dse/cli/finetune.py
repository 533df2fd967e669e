"""``dse finetune``: which exits to re-train when the deployment data drifts (selective fine-tuning)."""
from __future__ import annotations

import sys

import click

from dse.api import finetune
from dse.cli import options
from dse.cli.output import echo_json, table
from dse.finetune.selective import SCORE_SPLITS, SELECTIONS
from dse.finetune.shifts import SHIFTS


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@click.command("finetune")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="A run configuration (reports/<study>/configs/<trial>.yaml or hand-written).")
@click.option("--shift", required=True, type=options.ChoiceOrCode(SHIFTS.names()),
              help="Deployment shift applied to the training data (fine-tuning) and test data (a name, or module:fn for your own).")
@click.option("--steps", "probe_steps", type=click.IntRange(min=1), default=None,
              help="Probe steps s per exit before the subset is chosen [default: at least 30, "
                   "25% of the schedule].")
@click.option("--full-steps", type=click.IntRange(min=1), default=None,
              help="Whole fine-tuning schedule S [default: the configuration's training steps].")
@click.option("--lr", type=options.FloatRange(min=0, min_open=True), default=None,
              help="Fine-tuning learning rate [default: the configuration's].")
@click.option("--selection", type=click.Choice(SELECTIONS), default=SELECTIONS[0],
              show_default=True,
              help="Subset rule: 'budget' finishes the best-probed subset whose training step "
                   "costs at most 0.8 of every exit's; 'one-se' the cheapest within one paired "
                   "standard error of the best probed score; 'best' the highest score (the "
                   "paper's rule). Every rule falls back to re-training every exit, with a "
                   "warning, when the probe cannot separate the subsets.")
@click.option("--score-on", type=click.Choice(list(SCORE_SPLITS)), default="train+val",
              show_default=True, help="Shifted splits the probed subsets are scored on.")
@options.allow_code
@options.device
@options.threads
@options.json_flag
def command(config_path, shift, probe_steps, full_steps, lr, selection, score_on, allow_code,
            device, threads, as_json):
    """Choose which exits to re-train when the data drifts, and compare with re-training all.

    Selective fine-tuning of the exits' classifier ensemble (Hirose et al., IEEE Access 2020):
    last-exit ensemble accuracy on the shifted and on the original test split, and training
    operations.
    """
    result = finetune(config_path, shift=shift, steps=probe_steps, full_steps=full_steps, lr=lr,
                      selection=selection, score_on=score_on, allow_code=allow_code,
                      device=device, threads=threads, log=_log)
    if as_json:
        echo_json(result.to_dict())
        return
    r = result
    click.echo(f"shift {r.shift}: {r.num_exits} exits, probe {r.probe_steps} steps, "
               f"schedule {r.steps} steps of {r.batch_size}; subset rule {r.selection} on "
               f"{r.score_on} ({r.score_samples} images)")
    rows = [["no fine-tuning", "B" * r.num_exits, f"{r.baseline_accuracy:.2f}", "0"],
            ["entire", "F" * r.num_exits, f"{r.entire_accuracy:.2f}", "1.000"],
            ["selective", r.subset, f"{r.accuracy:.2f}", f"{r.ops_ratio:.3f}"],
            ["reference (all tried)", r.best_subset, f"{r.best_subset_accuracy:.2f}", ""]]
    if r.original_accuracy is not None:
        for row, acc in zip(rows, (r.original_baseline_accuracy, r.original_entire_accuracy,
                                   r.original_accuracy, None)):
            row.insert(3, "" if acc is None else f"{acc:.2f}")
        head = ["fine-tuning", "subset", f"{r.shift} test acc %", "original test acc %",
                "train ops / entire"]
    else:
        head = ["fine-tuning", "subset", "ensemble acc %", "train ops / entire"]
    click.echo(table(head, rows))
    click.echo(f"training MACs: selective {r.selective_ops:.3e}, entire {r.entire_ops:.3e} "
               f"(classifiers only; with a frozen-backbone forward every step the ratio is "
               f"{r.ops_ratio_with_backbone:.3f})")
    click.echo(f"probe evidence ({r.score_samples} shifted {r.score_on} images): subset "
               f"{r.rule_subset} "
               f"estimated {r.estimated_gap:+.2f} ± {r.estimated_gap_se:.2f} points from "
               f"re-training every exit; every exit gained {r.probe_gain:+.2f} ± "
               f"{r.probe_gain_se:.2f} points in the probe")
    if r.warning:
        click.echo(f"warning: {r.warning}", err=True)
