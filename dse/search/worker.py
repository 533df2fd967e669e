"""Running trials until a study holds N finished (COMPLETE) trials, from any number of processes.

The trial itself (the Optuna objective) is :class:`dse.search.runner.TrialRunner`.

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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import TrialState as S

from dse.errors import ConfigError, TrialFailed

#: consecutive failed or invalid trials after which a worker gives up
MAX_CONSECUTIVE_FAILURES = 25
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
SURPLUS_REASON = "surplus: the study already had enough trials finished or running when it started"
DUPLICATE_REASON = "duplicate: another worker had enqueued the same configuration first"


@dataclass(frozen=True)
class Counts:
    complete: int = 0
    running: int = 0
    waiting: int = 0
    failed: int = 0
    pruned: int = 0


def count_trials(study: Any) -> Counts:
    n = {s: 0 for s in S}
    for t in study.get_trials(deepcopy=False):
        n[t.state] += 1
    return Counts(n[S.COMPLETE], n[S.RUNNING], n[S.WAITING], n[S.FAIL], n[S.PRUNED])


def is_surplus(trials: Sequence[Any], number: int, target: int) -> bool:
    """True when ``target`` of the study's ``trials`` are COMPLETE, or RUNNING/WAITING with a
    lower number than trial ``number``."""
    ahead = sum(1 for t in trials if t.state == S.COMPLETE
                or (t.state in (S.RUNNING, S.WAITING) and t.number < number))
    return ahead >= target


def is_enqueued_duplicate(trials: Sequence[Any], number: int) -> bool:
    """True when trial ``number`` came from the queue (fixed parameters) and a trial with a lower
    number, COMPLETE, RUNNING or WAITING, has the same parameters (``trials``: the study's).

    Threshold refinement (:mod:`dse.search.refine`) enqueues variants after checking the study
    for them, but the check and the insert are two steps: two workers that finish trials of one
    structure together can enqueue the same variant twice (seen in a CI run: two pairs of
    identical COMPLETE trials from three searches started together). The later copy stops at
    once, like a surplus trial; a copy of a FAILed trial (a dead worker's, re-enqueued) is not a
    duplicate.
    """
    me = next((t for t in trials if t.number == number), None)
    fixed = me.system_attrs.get("fixed_params") if me is not None else None
    if not fixed:
        return False
    return any(t.number < number and t.state in (S.COMPLETE, S.RUNNING, S.WAITING)
               and (t.system_attrs.get("fixed_params") or t.params) == fixed for t in trials)


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


def fail_stale(study: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)


def run_worker(study: Any, runner: Callable[[Any], list[float]], target: int, *, poll_s: float = 1.0,
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
        if trial.state.name == "COMPLETE" or reason in (SURPLUS_REASON, DUPLICATE_REASON):
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
