"""``dse report``: the PDF, CSVs and configs of a study, rebuilt from its storage alone."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from dse.cli import options
from dse.cli.output import echo_json
from dse.api import DEFAULT_SHIFT, render_study_report
from dse.api._check import CHECK_EPOCHS, front_check
from dse.api._trial_config import load_dse_study, study_storage
from dse.device import select_device, set_threads
from dse.finetune.shifts import SHIFTS
from dse.paths import check_study_name, check_writable_dir
from dse.search.export import write_outputs
from dse.search.storage import redact


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _seeds(ctx, param, value: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"expected distinct comma-separated integers, got {value!r}")
    return seeds


@click.command("report")
@click.option("--study", "study_name", required=True, help="Name of the study to report on.")
@click.option("--storage", default=None,
              help="Optuna storage URL [default: sqlite:///<out>/study.db, as dse search writes].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: reports/<study>/].")
@click.option("--shift", type=options.ChoiceOrCode([*SHIFTS.names(), "none"]),
              default=DEFAULT_SHIFT, show_default=True,
              help="Deployment shift (a name, or module:fn): choose the fine-tuning subset of "
                   "every front configuration under it; 'none': no subsets.")
@click.option("--steps", "probe_steps", type=click.IntRange(min=1), default=None,
              help="Probe steps per exit before a subset is chosen [default: at least 30 and "
                   "25% of the schedule].")
@click.option("--check", "check_k", type=click.IntRange(min=1), default=None,
              help="Fully train the K best front configurations and compare them with the "
                   "search's proxy numbers on a report page (check.csv, check.json).")
@click.option("--check-epochs", type=click.IntRange(min=1), default=CHECK_EPOCHS, show_default=True,
              help="With --check: full-training epochs (frozen backbone).")
@click.option("--check-seeds", default="0", show_default=True, callback=_seeds,
              help="With --check: comma-separated seeds; two or more measure seed noise.")
@options.device
@options.threads
@options.json_flag
def command(study_name, storage, out, shift, probe_steps, check_k, check_epochs, check_seeds,
            device, threads, as_json):
    """Write report.pdf, trials.csv, pareto.csv and configs/ for a study."""
    check_study_name(study_name)
    out_dir = Path(out) if out else Path("reports") / study_name
    storage = study_storage(study_name, storage, out_dir,
                            storage_hint=" (or --out FOLDER holding study.db)")
    check_writable_dir(out_dir, "--out")
    set_threads(threads)
    study = load_dse_study(study_name, storage)
    written = write_outputs(study, out_dir)
    check = None
    if check_k is not None:
        check = front_check(study, out_dir, check_k, epochs=check_epochs, seeds=check_seeds,
                            device=device, log=None if as_json else _log)
    result = render_study_report(study, out_dir, shift, device=select_device(device),
                                 probe_steps=probe_steps, log=None if as_json else _log,
                                 check=None if check is None else (check.rows, check.summary))
    if as_json:
        subsets = result.subsets.to_dict("records") if result.subsets is not None else None
        echo_json({"study": study_name, "storage": redact(storage), "report": str(result.path),
                   "pages": result.pages, "trials_csv": written["trials_csv"],
                   "pareto_csv": written["pareto_csv"], "configs": written["configs"],
                   "front": [int(n) for n in result.data.front.get("number", [])],
                   "shift": None if result.subsets is None else shift, "subsets": subsets,
                   "check": None if check is None else check.to_dict()})
        return
    click.echo(f"study {study_name}: {result.data.counts.get('complete', 0)} complete trials, "
               f"{len(result.data.front)} on the front")
    click.echo(f"wrote {result.path} ({result.pages} pages), {written['trials_csv']}, "
               f"{written['pareto_csv']} and {len(written['configs'])} configs")
    if check is not None:
        c = check.summary
        click.echo(f"check of {c['n_configs']} front configuration(s): spearman "
                   f"{c['spearman']}, kendall {c['kendall']}, front kept {c['front_kept']} "
                   f"(written to {out_dir / 'check.csv'})")
