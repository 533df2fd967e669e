"""``dse.api.search``: explore early-exit designs on a hardware profile (``dse search``).

The search runs in this process (plus ``jobs - 1`` worker processes) and returns a
:class:`SearchResult`; it prints nothing unless given a ``log`` callback or ``progress=True``.
"""
from __future__ import annotations

import importlib.util
import signal
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import optuna

from dse.api._checks import at_least, one_of, positive
from dse.api._report import DEFAULT_SHIFT, render_study_report, resolve_shift
from dse.cost.profiles import load_profile
from dse.design import RunConfig, config_from_section
from dse.device import select_device, set_threads
from dse.errors import ConfigError
from dse.paths import check_study_name, check_writable_dir
from dse.search.context import StudySettings, build_context
from dse.search.export import pareto_frame, write_outputs
from dse.search.objective import check_space
from dse.search.progress import Progress
from dse.search.runner import TrialRunner
from dse.search.schema import TRIAL, trial_attrs
from dse.search.space import load_space
from dse.search.space import unlabeled as pseudo_labelled
from dse.search.storage import open_storage, process_index, redact, sqlite_url
from dse.search.study import (ENCODING, REFINE, attach_sampler, check_resumable,
                              create_or_resume, default_study_name, parse_objectives, study_attrs)
from dse.search.worker import count_trials, run_worker, spawn_workers
from dse.train.cache_files import parse_size
from dse.yamlio import Section

if TYPE_CHECKING:  # heavy: loaded where used (dse search refuses first)
    import pandas as pd

Log = Callable[[str], None]
SAMPLERS = ("tpe", "nsga2", "random")


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the search; trials.csv, pareto.csv and the configs were written first.

    ``complete`` and ``target`` say how far it got; the same call again continues the study.
    """

    def __init__(self, study: optuna.Study, complete: int, target: int) -> None:
        super().__init__(f"interrupted: {complete} of {target} trials complete")
        self.study, self.complete, self.target = study, complete, target


@dataclass
class SearchResult:
    """What :func:`search` found and wrote.

    ``study`` is the Optuna study (open it in optuna-dashboard with ``storage``);
    ``front_trials`` the Pareto-front trials, cheapest first; ``config_files`` one
    ``configs/trial_N.yaml`` per front trial.
    """

    study: optuna.Study
    storage: str                      # the storage URL, password redacted
    out_dir: Path
    n_complete: int
    front_trials: list[Any]
    trials_csv: Path
    pareto_csv: Path
    config_files: list[Path]
    report_path: Path | None = None   # report.pdf when the search drew one
    warnings: list[str] = field(default_factory=list)

    @property
    def front(self) -> pd.DataFrame:
        """The Pareto front as written to ``pareto.csv``: one row per trial, val and test
        accuracy (%) and expected latency (ms), MACs, the design columns."""
        return pareto_frame(self.study)

    @property
    def configs(self) -> dict[int, RunConfig]:
        """Trial number -> the typed run configuration of every front trial (what
        ``configs/trial_N.yaml`` holds; pass one to :func:`dse.api.train`)."""
        return {t.number: config_from_section(Section(trial_attrs(t)["config"], f"trial {t.number}"))
                for t in self.front_trials}

    def report(self, path: str | Path | None = None, *, shift: str | None = DEFAULT_SHIFT,
               device: str = "cpu", log: Log | None = None) -> Path:
        """Draw the study's report into folder ``path`` (default: ``out_dir``) as
        ``report.pdf`` and return its path; with ``shift`` (default ``random``; None or
        ``"none"``: no subsets), first choose each front configuration's fine-tuning subset
        under that deployment shift."""
        out = check_writable_dir(Path(path) if path is not None else self.out_dir, "path")
        return Path(render_study_report(self.study, out, shift, device=select_device(device),
                                        log=log).path)


def quiet_optuna() -> None:
    """Optuna logs every trial (and a traceback per failed one); dse says what it found itself."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def search(*, backbone: str = "digits-resnet", checkpoint: str | None = None,
           dataset: str = "digits", input_size: int | None = None, profile: str = "jetson",
           runtime: str | None = None, space: str = "default", trials: int = 100, jobs: int = 1,
           sampler: str = "tpe", objectives: str | Sequence[str] = "accuracy,latency",
           budget_ms: float | None = None, max_drop: float | None = 5.0,
           study: str | None = None, out: str | Path | None = None, storage: str | None = None,
           batch: int = 1, shift: str | None = DEFAULT_SHIFT, report: bool = True, heartbeat: int = 5,
           max_samples: int | None = None, cache_budget: int | str | None = None,
           backbone_epochs: int | None = None, seed: int = 0,
           device: str = "auto", threads: int | None = 1, unlabeled: bool = False,
           log: Log | None = None, progress: bool | None = False) -> SearchResult:
    """Search early-exit designs: maximise val accuracy, minimise expected latency on a hardware
    profile (``dse search``). Resumable: the same call again tops the study up to ``trials``.

    Args:
        backbone: built-in backbone name or ``package.module:factory`` for your own.
        checkpoint: backbone weights (a state_dict or a checkpoint holding one); None: the
            cached trained backbone (trained on the first run).
        dataset: ``NAME`` or ``NAME:PATH`` (digits, digits-hard, cifar10, cifar100, mnist,
            fashion-mnist, svhn, imagefolder).
        input_size: input height/width in pixels (None: the dataset's, or the backbone's usual).
        profile: hardware profile name, alias, or path to a profile YAML.
        runtime: runtime within the profile (None: the profile's own).
        space: search space: a name in ``search_spaces/`` (default, eenet, ptee) or a YAML path.
        trials: COMPLETE trials the study should reach.
        jobs: worker processes on this machine (this one included).
        sampler: Optuna sampler: ``tpe``, ``nsga2`` or ``random``.
        objectives: accuracy and latency always; may add macs, energy (a comma-separated string
            or a sequence of names).
        budget_ms: constraint: expected latency (ms) on the profile at most this (None: none).
        max_drop: constraint: val accuracy at most this many points (percent) below the backbone
            alone (None: no such constraint).
        study: study name (None: ``<dataset>-<backbone>-<profile>``).
        out: output folder (None: ``reports/<study>/``).
        storage: Optuna storage URL (None: ``sqlite:///<out>/study.db``).
        batch: inference batch size the latency model assumes.
        shift: deployment shift: the report picks the fine-tuning subset of every front
            configuration (default ``random``; None or ``"none"``: no fine-tuning).
        report: draw ``report.pdf`` (False: CSVs and configs only).
        heartbeat: seconds between trial heartbeats (a dead worker's trial is retried after 3).
        max_samples: cache at most this many samples per split (large datasets).
        cache_budget: bytes, or a size such as ``"8G"``: cache as many samples per split as
            fit (every one when they all do, else a seeded subset; logged); not with
            ``max_samples``.
        backbone_epochs: epochs when the backbone is trained on the fly (tests, demos).
        seed: random seed.
        device: where torch runs: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        threads: torch CPU threads per worker process (tiny exit branches train fastest, and
            reproducibly, on one; None: the CPUs this process may use).
        unlabeled: use the backbone's predictions as labels for training, validation and
            threshold tuning in every trial (labels: pseudo); test labels, when present, are
            only reported.
        log: receives one line per event (resumed study, failed trial, worker trouble,
            backbone training); None: quiet.
        progress: a tqdm bar on stderr (None: only on a terminal).

    Returns:
        :class:`SearchResult` (``.study``, ``.front``, ``.configs``, ``.report(path)``).

    Raises:
        dse.errors.DseError: a bad option, file or name, before any long work where it can be
            known then (never SystemExit).
        SearchInterrupted: Ctrl-C; the outputs were written first.
    """
    quiet_optuna()
    at_least("trials", trials, 1)
    at_least("jobs", jobs, 1)
    at_least("batch", batch, 1)
    at_least("heartbeat", heartbeat, 1)
    at_least("max_samples", max_samples, 1)
    budget = None if cache_budget is None else parse_size(cache_budget)
    if budget is not None and max_samples is not None:
        raise ConfigError("give --max-samples or --cache-budget, not both")
    at_least("backbone_epochs", backbone_epochs, 1)
    at_least("input_size", input_size, 1)
    at_least("threads", threads, 1)
    one_of("sampler", sampler, SAMPLERS)
    positive("budget_ms", budget_ms)
    positive("max_drop", max_drop, allow_zero=True)
    shift = resolve_shift(shift)
    if study is not None:
        check_study_name(study)
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
    name = study or default_study_name(dataset, backbone, load_profile(profile).name)
    out_dir = Path(out or Path("reports") / name)
    url = storage or sqlite_url(out_dir / "study.db")
    opened = None
    if storage is not None or (out_dir / "study.db").is_file():  # no new file before the checks
        opened = open_storage(url, heartbeat_s=heartbeat)
        check_resumable(opened, name, settings, spec)
    ctx = build_context(settings, max_exits=spec.max_exits, device=device, progress=progress,
                        log=log, cache_budget=budget)
    check_writable_dir(out_dir, "--out")
    st, resumed = create_or_resume(opened or open_storage(url, heartbeat_s=heartbeat), name,
                                   study_attrs(ctx, spec, trials), None)
    # Seed ``seed`` itself only in the process that created the study (a fresh run is
    # reproducible); any process that joins an existing study, such as a second search started
    # beside this one, gets its own seed, so the two never suggest the same trials.
    attach_sampler(st, settings, process_index() if resumed else 0)
    notes: list[str] = []
    complete = _run(st, ctx, spec, trials, jobs, url, heartbeat, out_dir, resumed, log, progress,
                    notes)
    written = write_outputs(st, out_dir)
    report_path = None
    if report and importlib.util.find_spec("dse.report") is not None:
        report_path = Path(render_study_report(st, out_dir, shift, log=log).path)
    return SearchResult(study=st, storage=redact(url), out_dir=out_dir, n_complete=complete,
                        front_trials=list(written["front"]),
                        trials_csv=Path(written["trials_csv"]),
                        pareto_csv=Path(written["pareto_csv"]),
                        config_files=[Path(p) for p in written["configs"]],
                        report_path=report_path, warnings=notes)


def _run(study, ctx, spec, trials, jobs, url, heartbeat, out_dir, resumed, log, progress,
         notes) -> int:
    before = count_trials(study)
    if resumed and log is not None:
        log(f"resuming study {study.study_name}: {before.complete} of {trials} trials complete")
    bar = Progress(study, trials, before.complete, enabled=progress)
    say = bar.write if (log is not None and not bar.bar.disable) else log

    def on_trial(trial: Any) -> None:
        if trial.state.name == "FAIL" and say is not None:
            reason = TRIAL["fail_reason"].get(trial) or "unknown reason"
            say(f"trial {trial.number} failed: {reason}")
        bar.refresh()

    procs = spawn_workers(jobs - 1, study.study_name, url, trials, heartbeat_s=heartbeat,
                          log_dir=out_dir / "logs") if jobs > 1 and before.complete < trials else []
    sampler = ctx.settings.sampler
    runner = TrialRunner(ctx, spec, study.study_name, target=trials,
                         conditional=ENCODING[sampler] == "conditional", refine=REFINE[sampler])
    try:
        run_worker(study, runner, trials, on_trial=on_trial, on_idle=bar.refresh)
        for p in procs:
            p.wait()
        bar.refresh()
    except KeyboardInterrupt:
        _stop(procs)
        bar.close()
        write_outputs(study, out_dir)
        raise SearchInterrupted(study, count_trials(study).complete, trials) from None
    finally:
        bar.close()
    failed = [p.args for p in procs if p.returncode not in (0, None)]
    if failed:
        notes.append(f"{len(failed)} worker process(es) failed; see {out_dir / 'logs'}")
        if log is not None:
            log(f"warning: {notes[-1]}")
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


__all__ = ["SearchInterrupted", "SearchResult", "quiet_optuna", "search"]
