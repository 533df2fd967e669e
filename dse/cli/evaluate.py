"""``dse evaluate``: measure a model trained by ``dse train`` on test data and on this machine."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dse.cli import options
from dse.cli.output import echo_json, table
from dse.data import load_dataset, split_tensors
from dse.device import select_device, set_threads
from dse.evaluation.model import (DEFAULT_BUDGETS, check_dataset_fits, evaluate_trained,
                                  predicted_latency)
from dse.models.backbones import code_from_files
from dse.paths import check_writable_dir
from dse.train.model_file import collect_outputs, load_model


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
    check_writable_dir(out_dir if out_dir is not None
                       else Path(checkpoint).resolve().parent / "evaluation", "--out")
    set_threads(threads)
    with code_from_files(checkpoint, allow_code):
        r = evaluate_model(checkpoint, dataset=dataset, profile=profile, runtime=runtime,
                           device=select_device(device), latency_samples=latency_samples,
                           warmup=warmup, n_budgets=budgets, out_dir=out_dir)
    if as_json:
        echo_json(r)
        return
    pred = r.get("exit_latency_ms") or [None] * len(r["exit_macs"])
    meas = r["measured"]["per_exit_median_ms"]
    rows = [[n + 1, "final" if n == len(r["exit_blocks"]) else r["exit_blocks"][n],
             f"{macs / 1e6:.3f}", f"{100 * acc:.2f}", f"{100 * frac:.1f}", _ms(p), _ms(m)]
            for n, (macs, acc, frac, p, m) in enumerate(zip(
                r["exit_macs"], r["per_exit_accuracy"], r["exit_fractions"], pred, meas))]
    click.echo(f"{r['backbone']} on {r['dataset']}: "
               + (f"{r['criterion']} thresholds " + ", ".join(f"{t:g}" for t in r["thresholds"])
                  if r["thresholds"] else "no early exit"))
    click.echo(table(["exit", "block", "M MACs", "anytime acc %", "exits here %",
                      "predicted ms", "measured ms"], rows))
    click.echo(f"early-exit test accuracy {100 * r['test_accuracy']:.2f}%, "
               f"{r['expected_macs'] / 1e6:.3f} M MACs on average")
    if r["predicted_latency_ms"] is not None:
        click.echo(f"predicted latency {r['predicted_latency_ms']:.3f} ms on average "
                   f"({r['profile']}, {r['runtime']})")
    else:
        click.echo(f"predicted latency: not computed ({r['predicted_latency_note']})")
    click.echo(f"measured latency {r['measured_latency_ms']:.3f} ms median at batch 1 on "
               f"{r['measured']['device']} ({r['measured']['samples']} images)")
    if r["measured_exit_agreement"] < 1.0:
        click.echo(f"note: the timed early-exit path took the evaluated exit for only "
                   f"{100 * r['measured_exit_agreement']:.1f}% of images (numerical ties)")
    click.echo(f"budget curve: {r['budget_curve']['csv']}, {r['budget_curve']['png']}")


def evaluate_model(checkpoint: str, *, dataset: str | None = None, profile: str | None = None,
                   runtime: str | None = None, device=None, latency_samples: int = 200,
                   warmup: int = 20, n_budgets: int = DEFAULT_BUDGETS,
                   out_dir: str | Path | None = None) -> dict[str, Any]:
    """Load a model file and its dataset, collect per-exit outputs, and evaluate them
    (:func:`dse.evaluation.model.evaluate_trained`); the budget curve goes to ``out_dir``
    (default: ``evaluation/`` next to the checkpoint)."""
    loaded = load_model(checkpoint)
    model, config, inp = loaded.model, loaded.config, loaded.inputs
    spec = dataset or inp.get("dataset") or config.dataset
    splits = load_dataset(spec, seed=config.seed, input_size=inp["input_size"])
    check_dataset_fits(splits.info, inp, spec, checkpoint)
    exit_ms, predicted = predicted_latency(model, config, inp, profile, runtime)  # on the CPU
    device = device or select_device("cpu")
    model = model.to(device)
    isc = dict(isc=config.training.loss.isc, isc_final=model.isc_final)
    x_val, y_val = split_tensors(splits.val)
    x_test, y_test = split_tensors(splits.test)
    val = collect_outputs(model, x_val, y_val, device=device, **isc)
    test = collect_outputs(model, x_test, y_test, device=device, **isc)
    out = Path(out_dir) if out_dir is not None else Path(checkpoint).resolve().parent / "evaluation"
    title = f"{config.backbone} on {splits.info.name}: {model.num_exits - 1} early exits"
    result = evaluate_trained(model, config, loaded.exit_macs, val, test, x_test, exit_ms=exit_ms,
                              predicted=predicted, device=device, latency_samples=latency_samples,
                              warmup=warmup, n_budgets=n_budgets, out=out, title=title)
    return {"checkpoint": str(checkpoint), "dataset": spec, **result}


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"
