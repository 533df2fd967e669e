"""Running trials until a study holds N finished (COMPLETE) trials, from any number of processes.

``--trials N`` means "the study should reach N COMPLETE trials": failed trials (a diverging
loss, a dead worker) and pruned ones (an invalid combination, a surplus start) do not count, so
re-running the same command after a crash or Ctrl-C tops the study up to N. Each worker loops:

1. fail stale trials (dead workers' RUNNING trials past the heartbeat grace period; their
   parameters are re-enqueued, see :mod:`dse.search.storage`);
2. stop when COMPLETE >= N; wait while COMPLETE + RUNNING >= N (another worker's trial may
   still fail and need replacing);
3. otherwise run one trial (a re-enqueued WAITING trial first, then a new one).

Two workers may pass step 2 at the same moment. Trial numbers are assigned by the storage in
creation order, so a trial that starts while ``N`` trials are COMPLETE, or RUNNING/WAITING with
a lower number, is surplus and stops at once as PRUNED. A trial completes only if fewer than N
trials were ahead of it, hence the study never exceeds N COMPLETE trials.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dse.errors import ConfigError, TrialFailed
from dse.search.objective import InvalidCandidate, OutputsMemo, evaluate_candidate, run_config

#: consecutive failed or invalid trials after which a worker gives up
MAX_CONSECUTIVE_FAILURES = 25
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
SURPLUS_REASON = "surplus: the study already had enough trials finished or running when it started"


@dataclass(frozen=True)
class Counts:
    complete: int = 0
    running: int = 0
    waiting: int = 0
    failed: int = 0
    pruned: int = 0


def count_trials(study: Any) -> Counts:
    from optuna.trial import TrialState as S

    n = {s: 0 for s in S}
    for t in study.get_trials(deepcopy=False):
        n[t.state] += 1
    return Counts(n[S.COMPLETE], n[S.RUNNING], n[S.WAITING], n[S.FAIL], n[S.PRUNED])


def is_surplus(study: Any, number: int, target: int) -> bool:
    """True when ``target`` trials are COMPLETE, or RUNNING/WAITING with a lower number."""
    from optuna.trial import TrialState as S

    trials = study.get_trials(deepcopy=False, states=(S.COMPLETE, S.RUNNING, S.WAITING))
    ahead = sum(1 for t in trials if t.state == S.COMPLETE or t.number < number)
    return ahead >= target


class _Interrupt:
    """Ctrl-C (SIGINT) that never lands inside Optuna's own bookkeeping.

    During a trial's own code it raises KeyboardInterrupt at once (Optuna records the trial as
    FAIL, reason "interrupted"); anywhere else (asking the sampler, storing a result, waiting)
    it only sets a flag, and the worker loop stops before the next trial.
    """

    def __init__(self) -> None:
        self.requested = False
        self.in_trial = False

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self.in_trial:
            self.in_trial = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self.requested = self.in_trial = False
        previous = signal.signal(signal.SIGINT, self._handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


INTERRUPT = _Interrupt()


class TrialRunner:
    """The Optuna objective: one trial of a dse study (attrs, constraints, failure reasons)."""

    def __init__(self, ctx: Any, space: Any, study_name: str, target: int | None = None, *,
                 conditional: bool = False, refine: bool = True) -> None:
        self.ctx, self.space, self.study_name, self.target = ctx, space, study_name, target
        self.conditional, self.refine = conditional, refine
        self.memo = OutputsMemo()

    def __call__(self, trial: Any) -> list[float]:
        INTERRUPT.in_trial = True
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            INTERRUPT.in_trial = False
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            raise
        finally:
            INTERRUPT.in_trial = False

    def _run(self, trial: Any) -> list[float]:
        import optuna

        from dse.config import _plain

        if self.target is not None and is_surplus(trial.study, trial.number, self.target):
            trial.set_user_attr("fail_reason", SURPLUS_REASON)
            raise optuna.TrialPruned(SURPLUS_REASON)
        candidate = self.space.suggest(trial, conditional=self.conditional)
        try:
            outcome = evaluate_candidate(self.ctx, candidate, self.memo)
        except InvalidCandidate as exc:
            trial.set_user_attr("fail_reason", f"invalid: {exc}")
            raise optuna.TrialPruned(str(exc)) from None
        except TrialFailed as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise
        except Exception as exc:  # a bug: record it, keep the traceback
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}".splitlines()[0])
            raise
        attrs = outcome.attrs
        config = run_config(self.ctx, candidate, attrs["blocks"], attrs["thresholds"], {
            "study": self.study_name, "trial": trial.number, "profile": self.ctx.profile.name,
            "runtime": self.ctx.runtime.name, "val_accuracy": round(attrs["val_accuracy"], 4),
            "test_accuracy": round(attrs["test_accuracy"], 4),
            "expected_latency_ms": round(attrs["expected_latency_ms"], 6),
            # the seed the branches were trained with: `dse finetune` rebuilds the same model
            "proxy_seed": attrs["proxy_seed"]})
        trial.set_user_attr("config", _plain(config.to_dict()))
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("worker", WORKER_ID)
        if hasattr(trial, "set_constraint"):
            for key, value in outcome.constraints.items():
                trial.set_constraint(key, value)
        if self.refine and self.target is not None:
            self._refine(trial, outcome)
        return outcome.values

    def _refine(self, trial: Any, outcome: Any) -> None:
        from dse.search.refine import candidate_values, enqueue_variants, threshold_param

        found = threshold_param(self.space, trial.params)
        if found is None or outcome.variants is None:
            return
        thresholds = candidate_values(found[1], outcome.refine_grid())
        values, feasible = outcome.variants(thresholds)
        enqueue_variants(trial.study, self.space, dict(trial.params), outcome.values, thresholds,
                         values, feasible, self.target, source=trial.number)


def fail_stale(study: Any) -> None:
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)


def run_worker(study: Any, runner: TrialRunner, target: int, *, poll_s: float = 1.0,
               on_trial: Callable[[Any], None] | None = None,
               on_idle: Callable[[], None] | None = None) -> int:
    """Run trials until the study holds ``target`` COMPLETE trials; returns how many ran here."""
    with INTERRUPT.installed():
        return _loop(study, runner, target, poll_s, on_trial, on_idle)


def _loop(study: Any, runner: Any, target: int, poll_s: float, on_trial: Any, on_idle: Any) -> int:
    ran, streak, last_reason = 0, 0, ""
    done: list[Any] = []
    while True:
        INTERRUPT.check()
        fail_stale(study)
        c = count_trials(study)
        if c.complete >= target:
            return ran
        if c.complete + c.running >= target:
            if on_idle is not None:
                on_idle()
            time.sleep(poll_s)
            continue
        INTERRUPT.check()
        if streak >= MAX_CONSECUTIVE_FAILURES:
            raise ConfigError(f"stopping: {streak} trials in a row failed or were invalid (last: "
                              f"{last_reason}); check the search space")
        done.clear()
        study.optimize(runner, n_trials=1, catch=(TrialFailed,), gc_after_trial=False,
                       callbacks=[lambda s, t: done.append(t)])
        ran += 1
        INTERRUPT.check()
        trial = done[0]
        reason = trial.user_attrs.get("fail_reason", "")
        if trial.state.name == "COMPLETE" or reason == SURPLUS_REASON:
            streak = 0
        else:
            streak, last_reason = streak + 1, reason
        if on_trial is not None:
            on_trial(trial)


def spawn_workers(n: int, study_name: str, storage_url: str, target: int, *, heartbeat_s: int,
                  log_dir: Path, first_index: int = 1) -> list[subprocess.Popen]:
    """Start ``n`` ``dse worker`` processes on this machine (one torch thread each)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for k in range(first_index, first_index + n):
        cmd = [sys.executable, "-c", "from dse.cli import main; main()", "worker",
               "--study", study_name, "--storage", storage_url, "--trials", str(target),
               "--heartbeat", str(heartbeat_s), "--threads", "1", "--worker-index", str(k),
               "--quiet"]
        log = open(log_dir / f"worker-{k}.log", "w")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        log.close()
    return procs


def sampler_seed(seed: int, n_existing: int, worker_index: int) -> int:
    """A sampler seed per (study seed, trials already in the study, worker): a fresh run is
    reproducible, a resumed run or a second worker does not replay the same suggestions."""
    from dse.cache import digest

    if n_existing == 0 and worker_index == 0:
        return seed
    return int(digest(seed, n_existing, worker_index), 16) % (2 ** 31)
