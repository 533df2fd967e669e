"""``dse run``: an exported bundle, early exit on ONNX Runtime at batch 1, on a dataset split."""
from __future__ import annotations

import click

from dse.cli import options
from dse.cli.output import echo_json, table
from dse.api import run


@click.command("run")
@click.option("--bundle", "bundle_dir", required=True, type=click.Path(),
              help="A bundle folder written by dse export.")
@click.option("--dataset", default=None,
              help="NAME or NAME:PATH (default: the dataset the model was trained on).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test",
              show_default=True)
@click.option("--provider", default="CPUExecutionProvider", show_default=True,
              help="ONNX Runtime execution provider (CUDAExecutionProvider, "
                   "TensorrtExecutionProvider where installed).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Run only the first N images of the split.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Untimed inputs run first.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="ONNX Runtime intra-op threads (default: ONNX Runtime's choice).")
@options.json_flag
def command(bundle_dir, dataset, split, provider, limit, warmup, threads, as_json):
    """Accuracy, exit mix, expected MACs, and latency measured here per exit and per input."""
    r = run(bundle_dir, dataset=dataset, split=split, provider=provider, threads=threads,
            warmup=warmup, limit=limit)
    if as_json:
        echo_json(r)
        return
    m, p = r["measured_here"], r["predicted_on_profile"]
    rows = [[k + 1, f"{macs / 1e6:.3f}", f"{100 * frac:.1f}", _ms(t), _ms(pt)]
            for k, (macs, frac, t, pt) in enumerate(zip(r["exit_macs"], r["exit_fractions"],
                                                        m["per_exit_median_ms"], p["per_exit_ms"]))]
    click.echo(f"{r['bundle']} on {r['dataset']} ({r['split']}, {r['images']} images): "
               f"criterion {r['criterion']}, thresholds "
               + (", ".join(f"{t:g}" for t in r["thresholds"]) or "none"))
    click.echo(table(["exit", "M MACs", "exits here %", "measured here ms",
                      "predicted on profile ms"], rows))
    click.echo(f"early-exit accuracy {r['accuracy']:.2f}%, {r['expected_macs'] / 1e6:.3f} M MACs "
               f"on average")
    click.echo(f"measured here: {m['per_input_median_ms']:.3f} ms median per input at batch 1 "
               f"({m['provider']})")
    if p["profile"]:
        click.echo(f"predicted on profile {p['profile']} ({p['runtime']}): "
                   f"{p['expected_ms']:.3f} ms on average (a model of that device, not this one)")


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"
