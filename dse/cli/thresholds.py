"""``dse thresholds``: re-tune a trained model's exit thresholds on val for an objective and
write them into its model file, its config and (with ``--bundle``) an exported bundle."""
from __future__ import annotations

import click

from dse.api import thresholds
from dse.cli import options
from dse.cli.output import echo_json, table


@click.command("thresholds")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="A model.pt written by dse train (rewritten with the new thresholds).")
@click.option("--objective", type=click.Choice(["search"]), default=None,
              help="search (the default): the highest val accuracy whose expected latency stays "
                   "within what the search predicted for this config, on its profile.")
@click.option("--budget-ms", type=options.FloatRange(min=0, min_open=True), default=None,
              help="Instead: the highest val accuracy within this expected latency (ms) on the "
                   "profile.")
@click.option("--max-drop", type=options.FloatRange(min=0), default=None,
              help="Instead: the cheapest point within this many accuracy points of the final "
                   "exit on val.")
@click.option("--profile", default=None,
              help="Hardware profile of the latency (default: the one the search used).")
@options.runtime
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Run configuration to update too (default: config.yaml beside the model "
                   "file, when there is one).")
@click.option("--bundle", type=click.Path(file_okay=False), default=None,
              help="A bundle exported from this model (dse export) whose manifest to update.")
@click.option("--dataset", default=None, help="Override the dataset the model was trained on.")
@click.option("--dry-run", is_flag=True, help="Report the re-tuned thresholds; write nothing.")
@options.allow_code
@options.device
@options.threads
@options.json_flag
def command(checkpoint, objective, budget_ms, max_drop, profile, runtime, config_path, bundle,
            dataset, dry_run, allow_code, device, threads, as_json):
    """Re-tune the exit thresholds of a trained model on val (after dse train)."""
    r = thresholds(checkpoint, objective=objective, budget_ms=budget_ms, max_drop=max_drop,
                   profile=profile, runtime=runtime, config=config_path, bundle=bundle,
                   dataset=dataset, dry_run=dry_run, allow_code=allow_code, device=device,
                   threads=threads)
    if as_json:
        echo_json(r)
        return
    before, after = r["before"], r["after"]
    click.echo(f"{r['criterion']} thresholds re-tuned on val: {r['rule']}"
               + (f" (profile {r['profile']}, {r['runtime']})" if r["profile"] else ""))
    rows = []
    for name, p in (("before", before), ("after", after)):
        for split in ("val", "test"):
            s = p[split]
            ms = s["expected_latency_ms"]
            rows.append([name, split, " ".join(f"{t:.4g}" for t in p["thresholds"]),
                         f"{s['accuracy']:.2f}", "-" if ms is None else f"{ms:.4f}",
                         f"{s['expected_macs'] / 1e6:.3f}"])
    click.echo(table(["point", "split", "thresholds", "accuracy %", "latency ms (predicted)",
                      "M MACs"], rows))
    written = [v for v in r["written"].values() if v]
    click.echo("dry run: nothing written" if r["dry_run"] else "wrote " + ", ".join(written))
