"""``dse search``: explore early-exit designs on a hardware profile; resumable, multi-process.

With no options it runs the embedded default (digits, ``digits-resnet``, trained and cached on
the first run) on the given profile, into ``reports/<study>/`` with an SQLite ``study.db``.
Re-running the same command tops the study up to ``--trials`` COMPLETE trials.
"""
from __future__ import annotations

import importlib.util
import signal
import subprocess
import warnings
from pathlib import Path

import click
import optuna

from dse.cli import options, study_report
from dse.cli.output import echo_json
from dse.cli.progress import Progress, front_table
from dse.device import set_threads
from dse.finetune.shifts import SHIFTS
from dse.paths import check_study_name, check_writable_dir
from dse.search.context import StudySettings, build_context
from dse.search.export import write_outputs
from dse.search.objective import check_space
from dse.search.runner import TrialRunner
from dse.search.space import load_space
from dse.search.space import unlabeled as pseudo_labelled
from dse.search.storage import open_storage, process_index, redact, sqlite_url
from dse.search.study import (ENCODING, REFINE, attach_sampler, create_or_resume,
                              default_study_name, parse_objectives, study_attrs)
from dse.search.worker import count_trials, run_worker, spawn_workers

DEFAULT_TRIALS = 100


@click.command("search")
@options.backbone
@options.checkpoint
@options.dataset
@options.input_size
@options.profile
@options.runtime
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
@click.option("--shift", type=click.Choice(SHIFTS.names()), default=None,
              help="Deployment shift: the report picks the fine-tuning subset of every front configuration.")
@click.option("--no-report", is_flag=True, help="Write CSVs and configs only (no PDF).")
@click.option("--unlabeled", is_flag=True,
              help="Use the backbone's predictions as labels for training, validation and "
                   "threshold tuning in every trial (labels: pseudo); test labels, when present, "
                   "are only reported.")
@click.option("--heartbeat", type=click.IntRange(min=1), default=5, show_default=True,
              help="Seconds between trial heartbeats (a dead worker's trial is retried after 3).")
@click.option("--max-samples", type=click.IntRange(min=1), default=None,
              help="Cache at most this many samples per split (large datasets).")
@click.option("--backbone-epochs", type=click.IntRange(min=1), default=None, hidden=True,
              help="Epochs when the backbone is trained on the fly (tests).")
@options.seed
@options.device
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Torch CPU threads per worker process (tiny exit branches train fastest, and "
                   "reproducibly, on one).")
@options.json_flag
def command(backbone, checkpoint, dataset, input_size, profile, runtime, space, trials, jobs,
            sampler, objectives, budget_ms, max_drop, study_name, out, storage, batch, shift,
            no_report, unlabeled, heartbeat, max_samples, backbone_epochs, seed, device, threads,
            as_json):
    """Search early-exit designs: maximise val accuracy, minimise expected latency on PROFILE."""
    _quiet_optuna()
    if study_name is not None:
        check_study_name(study_name)
    if out is not None:
        check_writable_dir(out, "--out")
    set_threads(threads or 1)
    spec = load_space(space)
    if unlabeled:
        spec = pseudo_labelled(spec)
    check_space(spec)
    settings = StudySettings(
        backbone=backbone, checkpoint=checkpoint, dataset=dataset, input_size=input_size,
        seed=seed, profile=profile, runtime=runtime, batch=batch, space_file=spec.file,
        objectives=parse_objectives(objectives), budget_ms=budget_ms, max_drop=max_drop,
        sampler=sampler, backbone_epochs=backbone_epochs, max_samples=max_samples)
    ctx = build_context(settings, max_exits=spec.max_exits, device=device, progress=None)
    name = study_name or default_study_name(dataset, backbone, ctx.profile.name)
    out_dir = check_writable_dir(Path(out or Path("reports") / name), "--out")
    url = storage or sqlite_url(out_dir / "study.db")
    study, resumed = create_or_resume(open_storage(url, heartbeat_s=heartbeat), name,
                                      study_attrs(ctx, spec, trials), None)
    # Seed ``--seed`` itself only in the process that created the study (a fresh run is
    # reproducible); any process that joins an existing study, such as a second ``dse search``
    # started beside this one, gets its own seed, so the two never suggest the same trials.
    attach_sampler(study, settings, process_index() if resumed else 0)
    complete = _run(study, ctx, spec, trials, jobs, url, heartbeat, out_dir, as_json, resumed)
    _finish(study, out_dir, url, complete, shift, no_report, as_json)


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


def _run(study, ctx, spec, trials, jobs, url, heartbeat, out_dir, as_json, resumed) -> int:
    before = count_trials(study)
    if resumed and not as_json:
        click.echo(f"resuming study {study.study_name}: {before.complete} of {trials} trials "
                    "complete", err=True)
    progress = Progress(study, trials, before.complete)
    procs = spawn_workers(jobs - 1, study.study_name, url, trials, heartbeat_s=heartbeat,
                          log_dir=out_dir / "logs") if jobs > 1 and before.complete < trials else []

    sampler = ctx.settings.sampler
    runner = TrialRunner(ctx, spec, study.study_name, target=trials,
                         conditional=ENCODING[sampler] == "conditional", refine=REFINE[sampler])
    try:
        run_worker(study, runner, trials, on_trial=progress.on_trial, on_idle=progress.refresh)
        for p in procs:
            p.wait()
        progress.refresh()
    except KeyboardInterrupt:
        _stop(procs)
        progress.close()
        n = count_trials(study).complete
        click.echo(f"interrupted: {n} of {trials} trials complete; run the same command again "
                    "to continue", err=True)

        write_outputs(study, out_dir)
        raise SystemExit(130)
    finally:
        progress.close()
    failed = [p.args for p in procs if p.returncode not in (0, None)]
    if failed:
        click.echo(f"warning: {len(failed)} worker process(es) failed; see {out_dir / 'logs'}",
                    err=True)
    return count_trials(study).complete


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def _finish(study, out_dir, url, complete, shift, no_report, as_json) -> None:
    written = write_outputs(study, out_dir)
    front = written["front"]
    report = None
    if not no_report and importlib.util.find_spec("dse.report") is not None:
        report = study_report.render_study_report(study, out_dir, shift).path
    if as_json:
        echo_json({
            "study": study.study_name, "storage": redact(url), "n_complete": complete,
            "pareto": [{"trial": t.number, "accuracy": t.values[0], "latency_ms": t.values[1],
                        "test_accuracy": t.user_attrs.get("test_accuracy"),
                        "test_latency_ms": t.user_attrs.get("test_expected_latency_ms")}
                       for t in front],
            "out": str(out_dir), "trials_csv": written["trials_csv"],
            "pareto_csv": written["pareto_csv"], "configs": written["configs"],
            "report": str(report) if report else None,
        })
        return
    click.echo(f"study {study.study_name}: {complete} trials complete, {len(front)} on the "
               f"Pareto front (storage {redact(url)})")
    if front:
        click.echo(front_table(study, written["pareto"]))
    else:
        click.echo("no trial satisfies the constraints; loosen --budget-ms / --max-drop")
    click.echo(f"wrote {written['trials_csv']}, {written['pareto_csv']} and "
               f"{len(written['configs'])} configs in {out_dir / 'configs'}"
               + (f"; report {report}" if report else ""))


def _quiet_optuna() -> None:
    """Optuna logs every trial (and a traceback per failed one); dse prints its own lines."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
