"""``dse worker``: join a study from any machine that reaches its storage.

Everything (backbone, dataset, profile, space, objectives, constraints, sampler) is read from
the study's stored settings; a default backbone is found in this machine's cache or trained
deterministically, a given checkpoint must exist here under the same path.
"""
from __future__ import annotations

import click

from dse.cli import options
from dse.cli.output import echo_json
from dse.api import quiet_optuna
from dse.device import set_threads
from dse.search.context import build_context
from dse.search.objective import check_space
from dse.search.runner import TrialRunner
from dse.search.space import parse_space
from dse.search.storage import open_storage, process_index, redact
from dse.search.study import ENCODING, REFINE, attach_sampler, load_study, settings_from_attrs
from dse.search.worker import count_trials, run_worker


@click.command("worker")
@click.option("--study", "study_name", required=True, help="Name of the study to join.")
@click.option("--storage", required=True, help="Optuna storage URL of the study.")
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="COMPLETE trials to reach (default: the study's target).")
@click.option("--heartbeat", type=click.IntRange(min=1), default=5, show_default=True,
              help="Seconds between trial heartbeats.")
@click.option("--worker-index", type=click.IntRange(min=0), default=None,
              help="Distinguishes this worker's sampler seed (default: from the process id).")
@click.option("--quiet", is_flag=True, help="No per-trial lines.")
@options.device
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Torch CPU threads for this worker.")
@options.json_flag
def command(study_name, storage, trials, heartbeat, worker_index, quiet, device, threads, as_json):
    """Run trials of STUDY until it holds its target number of COMPLETE trials."""
    quiet_optuna()
    set_threads(threads)
    study = load_study(open_storage(storage, heartbeat_s=heartbeat), study_name)
    attrs = study.user_attrs
    settings = settings_from_attrs(attrs)
    space = parse_space(attrs["space"], attrs.get("space_file", "space"))
    check_space(space)
    target = trials or int(attrs.get("target_trials", 1))
    log = None if quiet else (lambda m: click.echo(m, err=True))
    ctx = build_context(settings, max_exits=space.max_exits, progress=False, device=device, log=log)
    attach_sampler(study, settings, worker_index if worker_index is not None else process_index())

    def on_trial(t) -> None:
        if quiet:
            return
        if t.state.name == "COMPLETE":
            click.echo(f"trial {t.number}: {t.values[0]:.2f}% @ {t.values[1]:.4g} ms", err=True)
        else:
            click.echo(f"trial {t.number} {t.state.name.lower()}: "
                       f"{t.user_attrs.get('fail_reason', '')}", err=True)

    try:
        runner = TrialRunner(ctx, space, study_name, target=target,
                             conditional=ENCODING[settings.sampler] == "conditional",
                             refine=REFINE[settings.sampler])
        ran = run_worker(study, runner, target, on_trial=on_trial)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    complete = count_trials(study).complete
    if as_json:
        echo_json({"study": study_name, "storage": redact(storage), "ran": ran,
                   "n_complete": complete, "target": target})
    elif not quiet:
        click.echo(f"worker done: ran {ran} trials; study {study_name} has {complete} of "
                   f"{target} complete")
