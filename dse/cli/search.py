"""``dse search``: explore early-exit designs on a hardware profile; resumable, multi-process.

With no options it runs the embedded default (digits, ``digits-resnet``, trained and cached on
the first run) on the given profile, into ``reports/<study>/`` with an SQLite ``study.db``.
Re-running the same command tops the study up to ``--trials`` COMPLETE trials.
"""
from __future__ import annotations

import click

from dse.api import DEFAULT_SHIFT, SearchInterrupted, SearchResult, search
from dse.cli import options
from dse.cli.output import echo_json
from dse.cli.progress import front_table
from dse.finetune.shifts import SHIFTS
from dse.search.schema import trial_sections

DEFAULT_TRIALS = 100


@click.command("search")
@options.backbone
@options.checkpoint
@options.dataset
@options.input_size
@options.profile
@options.runtime
@options.power_mode
@click.option("--space", default="default", show_default=True,
              help="Search space: a name in search_spaces/ (default, eenet, ptee) or a YAML path.")
@click.option("--trials", type=click.IntRange(min=1), default=DEFAULT_TRIALS, show_default=True,
              help="COMPLETE trials the study should reach (re-running tops it up).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes on this machine.")
@click.option("--sampler", type=click.Choice(["tpe", "nsga2", "random"]), default="tpe",
              show_default=True, help="Optuna sampler.")
@click.option("--objectives", default="accuracy,latency", show_default=True,
              help="Objectives: accuracy and latency always; may add macs, energy.")
@click.option("--budget-ms", type=options.FloatRange(min=0, min_open=True), default=None,
              help="Constraint: expected latency (ms) on the profile at most this.")
@click.option("--max-drop", default="5", show_default=True, callback=lambda c, p, v: _max_drop(v),
              help="Constraint: val accuracy at most this many points below the backbone alone "
                   "('none' to search without it).")
@click.option("--study", "study_name", default=None,
              help="Study name (default: <dataset>-<backbone>-<profile>).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: reports/<study>/).")
@click.option("--storage", default=None,
              help="Optuna storage URL (default: sqlite:///<out>/study.db; PostgreSQL for many machines).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Inference batch size the latency model assumes.")
@click.option("--shift", type=options.ChoiceOrCode([*SHIFTS.names(), "none"]),
              default=DEFAULT_SHIFT, show_default=True,
              help="Deployment shift (a name, or module:fn) the report picks the fine-tuning "
                   "subset of every front configuration under; 'none': no subsets.")
@click.option("--no-report", is_flag=True, help="Write CSVs and configs only (no PDF).")
@click.option("--unlabeled", is_flag=True,
              help="Use the backbone's predictions as labels for training, validation and "
                   "threshold tuning in every trial (labels: pseudo); test labels, when present, "
                   "are only reported.")
@click.option("--heartbeat", type=click.IntRange(min=1), default=5, show_default=True,
              help="Seconds between trial heartbeats (a dead worker's trial is retried after 3).")
@click.option("--max-samples", type=click.IntRange(min=1), default=None,
              help="Cache at most this many samples per split (large datasets).")
@click.option("--cache-budget", default=None, metavar="SIZE",
              help="Cache as many samples per split as fit in SIZE (e.g. 8G): a seeded subset "
                   "when every sample would not fit; the choice is printed.")
@click.option("--backbone-epochs", type=click.IntRange(min=1), default=None, hidden=True,
              help="Epochs when the backbone is trained on the fly (tests).")
@options.seed
@options.device
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Torch CPU threads per worker process (tiny exit branches train fastest, and "
                   "reproducibly, on one).")
@options.json_flag
def command(backbone, checkpoint, dataset, input_size, profile, runtime, power_mode, space, trials, jobs,
            sampler, objectives, budget_ms, max_drop, study_name, out, storage, batch, shift,
            no_report, unlabeled, heartbeat, max_samples, cache_budget, backbone_epochs, seed, device,
            threads, as_json):
    """Search early-exit designs: maximise val accuracy, minimise expected latency on PROFILE."""
    runtime = options.with_power_mode(runtime, power_mode)
    try:
        result = search(backbone=backbone, checkpoint=checkpoint, dataset=dataset,
                        input_size=input_size, profile=profile, runtime=runtime, space=space,
                        trials=trials, jobs=jobs, sampler=sampler, objectives=objectives,
                        budget_ms=budget_ms, max_drop=max_drop, study=study_name, out=out,
                        storage=storage, batch=batch, shift=shift, report=not no_report,
                        heartbeat=heartbeat, max_samples=max_samples,
                        cache_budget=cache_budget, backbone_epochs=backbone_epochs, seed=seed, device=device,
                        threads=threads, unlabeled=unlabeled, log=_stderr, progress=None)
    except SearchInterrupted as stop:
        click.echo(f"interrupted: {stop.complete} of {stop.target} trials complete; run the same "
                   "command again to continue", err=True)
        raise SystemExit(130) from None
    _print(result, as_json)


def _stderr(msg: str) -> None:
    click.echo(msg, err=True)


def _max_drop(value: str) -> float | None:
    if value.strip().lower() in ("none", "off"):
        return None
    try:
        drop = float(value)
    except ValueError:
        drop = -1.0
    if not 0 <= drop < float("inf"):
        raise click.BadParameter(f"must be a number of accuracy points >= 0 or 'none', got {value!r}")
    return drop


def _print(r: SearchResult, as_json: bool) -> None:
    front, study = r.front_trials, r.study
    if as_json:
        echo_json({
            "study": study.study_name, "storage": r.storage, "n_complete": r.n_complete,
            "pareto": [{"trial": t.number, "accuracy": t.values[0], "latency_ms": t.values[1],
                        "test_accuracy": t.user_attrs.get("test_accuracy"),
                        "test_latency_ms": t.user_attrs.get("test_expected_latency_ms"),
                        **trial_sections(t)}
                       for t in front],
            "out": str(r.out_dir), "trials_csv": str(r.trials_csv),
            "pareto_csv": str(r.pareto_csv), "configs": [str(c) for c in r.config_files],
            "report": str(r.report_path) if r.report_path else None,
        })
        return
    click.echo(f"study {study.study_name}: {r.n_complete} trials complete, {len(front)} on the "
               f"Pareto front (storage {r.storage})")
    if front:
        click.echo(front_table(study, r.front))
    else:
        click.echo("no trial satisfies the constraints; loosen --budget-ms / --max-drop")
    click.echo(f"wrote {r.trials_csv}, {r.pareto_csv} and "
               f"{len(r.config_files)} configs in {r.out_dir / 'configs'}"
               + (f"; report {r.report_path}" if r.report_path else ""))
