"""The progress bar's front (read without copying trials) is the study's front."""
from __future__ import annotations

import optuna

from dse.search.progress import Progress, cheap_front, summary
from dse.search.schema import front_trials


def test_cheap_front_equals_the_study_front():
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize"])
    points = [(90, 2.0), (95, 3.0), (95, 3.0), (80, 2.5), (99, 5.0), (99, 4.0), (70, 1.0)]
    for acc, ms in points:
        trial = study.ask()
        study.tell(trial, [acc, ms])
    trials = study.get_trials(deepcopy=False)
    cheap = cheap_front(trials, ["maximize", "minimize"])
    assert sorted(t.number for t in cheap) == sorted(t.number for t in front_trials(study))
    assert sorted(tuple(t.values) for t in cheap) == [(70, 1.0), (90, 2.0), (95, 3.0), (99, 4.0)]
    assert summary(cheap) == "front 4, best 99.00% @ 4 ms"


def test_a_disabled_bar_reads_no_trials():
    class NoReads:
        study_name = "s"

        def get_trials(self, **kwargs):
            raise AssertionError("a disabled bar must not read the study")

    Progress(NoReads(), 10, 0, enabled=False).refresh()
