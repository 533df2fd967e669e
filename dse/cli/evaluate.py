"""``dse evaluate``: measure a model trained by ``dse train`` on test data and on this machine."""
from __future__ import annotations

import click

from dse.api import evaluate
from dse.cli import options
from dse.cli.output import echo_json, table


@click.command("evaluate")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="A model.pt written by dse train.")
@click.option("--profile", default=None,
              help="Hardware profile for predicted latency (default: the one the search used).")
@options.runtime
@click.option("--dataset", default=None, help="Override the dataset the model was trained on.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Where the budget curve CSV/PNG go (default: evaluation/ next to the checkpoint).")
@click.option("--latency-samples", type=click.IntRange(min=1), default=200, show_default=True,
              help="Test images timed one by one on the early-exit path.")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--budgets", type=click.IntRange(min=2), default=20, show_default=True,
              help="Points on the budgeted-batch curve.")
@options.allow_code
@options.device
@options.threads
@options.json_flag
def command(checkpoint, profile, runtime, dataset, out_dir, latency_samples, warmup, budgets,
            allow_code, device, threads, as_json):
    """Per-exit and early-exit test accuracy, exit mix, MACs, predicted and measured latency."""
    r = evaluate(checkpoint, profile=profile, runtime=runtime, dataset=dataset, out=out_dir,
                 latency_samples=latency_samples, warmup=warmup, budgets=budgets,
                 allow_code=allow_code, device=device, threads=threads)
    if as_json:
        echo_json(r)
        return
    pred = r.get("exit_latency_ms") or [None] * len(r["exit_macs"])
    meas = r["measured"]["per_exit_median_ms"]
    rows = [[n + 1, "final" if n == len(r["exit_blocks"]) else r["exit_blocks"][n],
             f"{macs / 1e6:.3f}", f"{acc:.2f}", f"{100 * frac:.1f}", _ms(p), _ms(m)]
            for n, (macs, acc, frac, p, m) in enumerate(zip(
                r["exit_macs"], r["per_exit_accuracy"], r["exit_fractions"], pred, meas))]
    click.echo(f"{r['backbone']} on {r['dataset']}: "
               + (f"{r['criterion']} thresholds " + ", ".join(f"{t:g}" for t in r["thresholds"])
                  if r["thresholds"] else "no early exit"))
    click.echo(table(["exit", "block", "M MACs", "anytime acc %", "exits here %",
                      "predicted on profile ms", "measured here ms"], rows))
    click.echo(f"early-exit test accuracy {r['test_accuracy']:.2f}%, "
               f"{r['expected_macs'] / 1e6:.3f} M MACs on average")
    if r["predicted_latency_ms"] is not None:
        click.echo(f"predicted on profile {r['profile']} ({r['runtime']}): "
                   f"{r['predicted_latency_ms']:.3f} ms on average (a model of that device, "
                   "not this machine)")
    else:
        click.echo(f"predicted latency: not computed ({r['predicted_latency_note']})")
    click.echo(f"measured here: {r['measured_latency_ms']:.3f} ms median at batch 1 on this "
               f"machine's {r['measured']['device']} ({r['measured']['samples']} images; not "
               "the profile's device)")
    if r["measured_exit_agreement"] < 1.0:
        click.echo(f"note: the timed early-exit path took the evaluated exit for only "
                   f"{100 * r['measured_exit_agreement']:.1f}% of images (numerical ties)")
    click.echo(f"budget curve: {r['budget_curve']['csv']}, {r['budget_curve']['png']}")


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"
