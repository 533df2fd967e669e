"""Test-only hook for process tests: every worker process meets the others inside its first trial.

Imported before ``dse.cli`` in a child process whose environment sets ``DSE_TEST_MEET=DIR`` and
``DSE_TEST_MEET_COUNT=N``: the process's first trial, once its work is done, writes a file named
after the process into DIR and waits until DIR holds N such files, then finishes. So each of N
workers started together completes at least one trial, however fast the first one to start is
(without it, one worker can run every trial before the other has imported torch). The test
controls the state waited on; the deadline only turns a worker that never arrives into a clear
failure.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from dse.search import runner

_DIR = Path(os.environ["DSE_TEST_MEET"])
_COUNT = int(os.environ["DSE_TEST_MEET_COUNT"])
_DEADLINE_S = 300.0
_run = runner.TrialRunner._run
_met = False


def _run_then_meet(self, trial):  # noqa: ANN001, ANN202 - wraps TrialRunner._run
    global _met
    values = _run(self, trial)
    if not _met:
        _met = True
        _DIR.mkdir(parents=True, exist_ok=True)
        (_DIR / str(os.getpid())).write_text(str(trial.number))
        deadline = time.monotonic() + _DEADLINE_S
        while len(list(_DIR.iterdir())) < _COUNT:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(list(_DIR.iterdir()))} of {_COUNT} workers met")
            time.sleep(0.05)
    return values


runner.TrialRunner._run = _run_then_meet
