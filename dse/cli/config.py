"""``dse config``: write any trial's run configuration (front or not) for ``dse train``."""
from __future__ import annotations

import click

from dse.api import trial_config
from dse.cli import options
from dse.cli.output import echo_json


@click.command("config")
@click.option("--study", "study_name", required=True, help="Name of the study.")
@click.option("--trial", type=click.IntRange(min=0), required=True,
              help="Trial number (any trial that stored its configuration, on the front or not).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="File to write [default: reports/<study>/configs/trial_<n>.yaml, kept by "
                   "later dse report runs].")
@click.option("--storage", default=None,
              help="Optuna storage URL [default: sqlite:///reports/<study>/study.db].")
@click.option("--force", is_flag=True, help="Replace an existing file dse did not write.")
@options.json_flag
def command(study_name, trial, out, storage, force, as_json):
    """Write trial N's run configuration (dse train --config FILE trains it)."""
    r = trial_config(study_name, trial, out=out, storage=storage, force=force)
    if as_json:
        echo_json(r)
        return
    where = "on the Pareto front" if r["front"] else "not on the Pareto front"
    click.echo(f"trial {trial} of {study_name} ({r['state']}, {where}): wrote {r['config']}")
    click.echo(f"train it: dse train --config {r['config']}")
