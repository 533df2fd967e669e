"""The worker loop: N COMPLETE trials exactly, failures not counted, surplus starts, stale trials."""
from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from dse.errors import ConfigError, TrialFailed
from dse.search import worker as worker_mod
from dse.search.storage import open_storage, redact, sqlite_url
from dse.search.study import sampler_seed
from dse.search.runner import TrialRunner
from dse.search.worker import count_trials, is_surplus, run_worker


pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def make_study(tmp_path, heartbeat_s=1, grace_s=None):
    storage = open_storage(sqlite_url(tmp_path / "s.db"), heartbeat_s=heartbeat_s, grace_s=grace_s)
    return optuna.create_study(study_name="t", storage=storage, directions=["maximize", "minimize"],
                               sampler=optuna.samplers.RandomSampler(seed=0))


def objective(fail_numbers=()):
    def run(trial):
        x = trial.suggest_float("x", 0, 1)
        if trial.number in fail_numbers:
            trial.set_user_attr("fail_reason", "loss became nan at step 3")
            raise TrialFailed("loss became nan at step 3")
        return [x, 1 - x]
    return run


def test_reaches_exactly_n_complete_and_failures_do_not_count(tmp_path):
    study = make_study(tmp_path)
    seen = []
    ran = run_worker(study, objective(fail_numbers={1, 4}), 5, on_trial=seen.append)
    c = count_trials(study)
    assert (c.complete, c.failed, c.running, c.waiting) == (5, 2, 0, 0)
    assert ran == 7 and [t.number for t in seen] == list(range(7))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert {t.user_attrs["fail_reason"] for t in failed} == {"loss became nan at step 3"}
    # topping up: a second call with a larger target runs only the missing trials
    assert run_worker(study, objective(), 7) == 2 and count_trials(study).complete == 7
    assert run_worker(study, objective(), 7) == 0


def test_gives_up_after_many_failures_in_a_row(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_mod, "MAX_CONSECUTIVE_FAILURES", 3)
    study = make_study(tmp_path)
    with pytest.raises(ConfigError, match="3 trials in a row failed.*loss became nan"):
        run_worker(study, objective(fail_numbers=set(range(100))), 5)
    assert count_trials(study).failed == 3


def test_surplus_rule_counts_complete_and_earlier_running_or_waiting(tmp_path):
    study = make_study(tmp_path)
    run_worker(study, objective(), 2)            # trials 0, 1 complete
    assert study.ask().number == 2                # trial 2 running
    study.enqueue_trial({"x": 0.5})               # trial 3 waiting
    # a trial numbered 4 has 2 complete + running 2 + waiting 3 ahead of it
    trials = study.get_trials(deepcopy=False)
    assert is_surplus(trials, 4, 4) and not is_surplus(trials, 4, 5)
    # trial 3 has only 2 complete + running 2 ahead
    assert is_surplus(trials, 3, 3) and not is_surplus(trials, 3, 4)
    # a surplus start is pruned by the runner, with its reason
    runner = TrialRunner.__new__(TrialRunner)
    runner.target = 3
    trial = study.ask()                           # pops the waiting trial 3
    with pytest.raises(optuna.TrialPruned):
        runner(trial)
    assert study.trials[3].user_attrs["fail_reason"] == worker_mod.SURPLUS_REASON


def test_stale_trial_of_a_dead_worker_is_failed_and_retried(tmp_path):
    study = make_study(tmp_path, heartbeat_s=1, grace_s=1)
    run_worker(study, objective(), 2)
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study._storage.record_heartbeat(dead._trial_id)   # then the worker dies
    time.sleep(1.5)
    run_worker(study, objective(), 4)
    trials = study.get_trials()
    assert trials[dead.number].state == TrialState.FAIL
    retries = [t for t in trials if t.user_attrs.get("retry_of") == dead.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[dead.number].params
    assert retries[0].system_attrs["failed_trial"] == dead.number
    c = count_trials(study)
    assert (c.complete, c.running, c.waiting) == (4, 0, 0)


def test_waits_while_running_trials_could_still_reach_the_target(tmp_path):
    study = make_study(tmp_path, heartbeat_s=1, grace_s=1)
    run_worker(study, objective(), 1)
    other = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # another worker's
    study._storage.record_heartbeat(other._trial_id)
    idle = []

    def finish_other():
        idle.append(1)
        if len(idle) == 2:
            study.tell(other, [0.5, 0.5])

    assert run_worker(study, objective(), 2, poll_s=0.01, on_idle=finish_other) == 0
    assert count_trials(study).complete == 2 and len(idle) == 2


def test_sampler_seed_and_storage_helpers():
    assert sampler_seed(7, 0, 0) == 7
    assert len({sampler_seed(7, 0, 1), sampler_seed(7, 5, 0), sampler_seed(7, 5, 1)}) == 3
    assert redact("postgresql://dse:secret@db:5432/x") == "postgresql://dse:***@db:5432/x"
    with pytest.raises(ConfigError, match="not a storage URL"):
        open_storage("study.db")
    with pytest.raises(ConfigError, match="cannot open the storage"):
        open_storage("postgresql://nobody@127.0.0.1:1/none")


def test_a_configuration_enqueued_twice_runs_once():
    """Two workers can enqueue the same threshold variant together (a check, then an insert):
    the later copy is a duplicate while the earlier is waiting, running or complete, and not
    once the earlier failed (a dead worker's trial, re-enqueued)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    params = {"x": 0.25}
    study.enqueue_trial(params)
    study.enqueue_trial(params)  # the race's second insert
    study.enqueue_trial({"x": 0.5})
    first, second, other = (study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
                            for _ in range(3))
    assert not worker_mod.is_enqueued_duplicate(study.get_trials(), first.number)
    assert worker_mod.is_enqueued_duplicate(study.get_trials(), second.number)   # first is RUNNING
    assert not worker_mod.is_enqueued_duplicate(study.get_trials(), other.number)
    study.tell(first, 1.0)
    assert worker_mod.is_enqueued_duplicate(study.get_trials(), second.number)   # first is COMPLETE
    fresh = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    assert not worker_mod.is_enqueued_duplicate(study.get_trials(), fresh.number)  # sampled, not enqueued
    failed = optuna.create_study()
    failed.enqueue_trial(params)
    failed.enqueue_trial(params)
    a = failed.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    failed.tell(a, state=TrialState.FAIL)
    b = failed.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    assert not worker_mod.is_enqueued_duplicate(failed.get_trials(), b.number)
