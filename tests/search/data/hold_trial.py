"""Test-only hook for process tests: hold a trial in place until the test kills the process.

Imported before ``dse.cli`` in a child process whose environment sets ``DSE_TEST_HOLD_AFTER=K``
and ``DSE_TEST_HELD=FILE``: the first trial that finishes its work once the study holds K
COMPLETE trials writes its number to FILE and then waits, RUNNING with every parameter recorded,
until a signal ends it (SIGINT lands inside the trial's own code; SIGKILL leaves it RUNNING).
The test waits for FILE, a state it controls, instead of racing the search with a poller.
"""
from __future__ import annotations

import os
import time

from dse.search import runner

_AFTER = int(os.environ["DSE_TEST_HOLD_AFTER"])
_HELD = os.environ["DSE_TEST_HELD"]
_run = runner.TrialRunner._run


def _run_then_hold(self, trial):  # noqa: ANN001, ANN202 - wraps TrialRunner._run
    values = _run(self, trial)
    trials = trial.study.get_trials(deepcopy=False)
    if sum(t.state.name == "COMPLETE" for t in trials) >= _AFTER:
        with open(_HELD + ".tmp", "w") as fh:
            fh.write(str(trial.number))
        os.replace(_HELD + ".tmp", _HELD)
        while True:
            time.sleep(0.05)
    return values


runner.TrialRunner._run = _run_then_hold
