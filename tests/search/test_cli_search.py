"""`dse search` and `dse worker` end to end on tiny studies (in-process, seconds each)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from click.testing import CliRunner

from dse.cli import cli
from dse.design import load_config

DATA = Path(__file__).parent / "data"
STUDY = "digits-digits-resnet-jetson-nano"
STUDY_ATTRS = {"dse_version", "backbone", "checkpoint", "dataset", "input_size", "in_channels",
               "num_classes", "seed", "profile", "profile_path", "runtime", "batch", "space_file",
               "space", "objectives", "budget_ms", "max_drop", "backbone_val_accuracy",
               "backbone_test_accuracy", "backbone_latency_ms", "backbone_macs",
               "backbone_energy_mj", "block_macs", "created"}
TRIAL_ATTRS = {"config", "blocks", "val_accuracy", "test_accuracy", "exit_fractions",
               "test_exit_fractions", "per_exit_accuracy", "test_per_exit_accuracy",
               "expected_latency_ms", "test_expected_latency_ms", "expected_macs",
               "expected_energy_mj", "exit_latency_ms", "exit_macs", "exit_energy_mj", "sweep",
               "duration_s", "constraint"}


def run(*args):
    return CliRunner().invoke(cli, list(args))


def load(out: Path, name: str = STUDY):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, checkpoint):
    out = tmp_path_factory.mktemp("tiny") / "study"
    args = ["search", "--checkpoint", checkpoint, "--space", str(DATA / "tiny.yaml"),
            "--trials", "6", "--out", str(out), "--no-report", "--profile", "jetson", "--json",
            "--max-drop", "none"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    return out, args, json.loads(result.stdout)


def test_json_output_and_files(tiny_study):
    out, _, data = tiny_study
    assert {"study", "storage", "n_complete", "pareto"} <= set(data)
    assert data["study"] == STUDY and data["n_complete"] == 6
    assert data["storage"] == f"sqlite:///{(out / 'study.db').resolve()}"
    assert data["pareto"] and all(set(p) >= {"trial", "accuracy", "latency_ms"} for p in data["pareto"])
    for name in ("trials.csv", "pareto.csv", "study.db"):
        assert (out / name).is_file()
    configs = sorted((out / "configs").glob("trial_*.yaml"))
    assert [c.name for c in configs] == sorted(f"trial_{p['trial']}.yaml" for p in data["pareto"])


def test_front_is_non_dominated_and_csvs_agree(tiny_study):
    import pandas as pd

    out, _, data = tiny_study
    trials = pd.read_csv(out / "trials.csv")
    front = pd.read_csv(out / "pareto.csv")
    done = trials[trials.state == "COMPLETE"]
    assert len(done) == 6
    assert sorted(front.trial) == sorted(p["trial"] for p in data["pareto"])
    assert sorted(done[done.pareto].trial) == sorted(front.trial)
    for _, f in front.iterrows():
        better = done[(done.accuracy >= f.val_accuracy) & (done.latency_ms <= f.val_latency_ms)
                      & ((done.accuracy > f.val_accuracy) | (done.latency_ms < f.val_latency_ms))]
        assert better.empty
    assert {"test_accuracy", "test_latency_ms", "val_accuracy", "val_latency_ms"} <= set(front)


def test_study_and_trial_attrs_follow_the_schema(tiny_study, checkpoint):
    out, _, _ = tiny_study
    study = load(out)
    assert STUDY_ATTRS <= set(study.user_attrs)
    a = study.user_attrs
    assert (a["backbone"], a["dataset"], a["profile"], a["checkpoint"]) == (
        "digits-resnet", "digits", "jetson-nano", checkpoint)
    assert a["objectives"] == ["accuracy", "latency_ms"]
    assert a["budget_ms"] is None and a["max_drop"] is None
    assert 0 < a["backbone_val_accuracy"] <= 100 and a["backbone_macs"] > sum(a["block_macs"])
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        u = t.user_attrs
        assert TRIAL_ATTRS <= set(u)
        assert t.values == [pytest.approx(u["val_accuracy"]), pytest.approx(u["expected_latency_ms"])]
        n = len(u["blocks"]) + 1
        assert len(u["exit_fractions"]) == n and math.isclose(sum(u["exit_fractions"]), 1.0)
        assert len(u["exit_latency_ms"]) == n and u["exit_latency_ms"] == sorted(u["exit_latency_ms"])
        assert u["expected_latency_ms"] == pytest.approx(
            sum(p * l for p, l in zip(u["exit_fractions"], u["exit_latency_ms"])))
        assert u["expected_macs"] == pytest.approx(
            sum(p * m for p, m in zip(u["exit_fractions"], u["exit_macs"])))
        assert u["per_exit_accuracy"][-1] == pytest.approx(a["backbone_val_accuracy"], abs=1e-3)
        sweep = u["sweep"]
        assert len(sweep["thresholds"]) == len(sweep["accuracy"]) == len(sweep["latency_ms"]) <= 25
        assert u["config"]["exits"]["blocks"] == u["blocks"] and u["constraint"] == []


def test_pareto_configs_load_as_run_configs(tiny_study, checkpoint):
    out, _, data = tiny_study
    for p in data["pareto"]:
        cfg = load_config(str(out / "configs" / f"trial_{p['trial']}.yaml"))
        assert cfg.backbone == "digits-resnet" and cfg.checkpoint == checkpoint
        assert cfg.exits.blocks and cfg.training.steps == 20
        provenance = dict(cfg.provenance)
        assert provenance["trial"] == p["trial"]
        # the branches' seed, so `dse finetune` rebuilds the model the search evaluated
        assert isinstance(provenance["proxy_seed"], int)


def test_rerun_tops_up_to_the_new_target(tiny_study, tmp_path):
    import shutil

    out, args, _ = tiny_study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    more = [copy if a == str(out) else a for a in args]
    more[more.index("--trials") + 1] = "9"
    result = run(*map(str, more))
    assert result.exit_code == 0, result.output
    assert "resuming study" not in result.stdout and json.loads(result.stdout)["n_complete"] == 9
    again = run(*map(str, more))  # already there: nothing to do
    assert again.exit_code == 0 and json.loads(again.stdout)["n_complete"] == 9
    assert len(load(copy).get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 9


def test_resume_with_other_settings_is_refused(tiny_study):
    _, args, _ = tiny_study
    result = run(*args, "--seed", "3")
    assert result.exit_code == 2
    assert f"study '{STUDY}' exists with seed=0, but this run asks for seed=3" in result.output


@pytest.mark.slow
def test_same_seed_gives_the_same_trials(tmp_path, search_args):
    runs = []
    for name in ("a", "b"):
        result = run(*search_args(tmp_path / name, trials=5))
        assert result.exit_code == 0, result.output
        runs.append([(t.state.name, t.params, t.values) for t in load(tmp_path / name).trials])
    assert runs[0] == runs[1]


def test_diverging_trial_is_failed_with_its_reason_and_the_study_goes_on(tmp_path, search_args):
    out = tmp_path / "div"
    result = run(*search_args(out, "--sampler", "random", space="diverge.yaml", trials=4))
    assert result.exit_code == 0, result.output
    study = load(out)
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert failed and all(t.params["lr"] == 1e38 for t in failed)
    assert all("loss became" in t.user_attrs["fail_reason"] and "step" in t.user_attrs["fail_reason"]
               for t in failed)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 4
    assert "failed: loss became" in result.output  # one line per failed trial
    import pandas as pd

    rows = pd.read_csv(out / "trials.csv")
    assert rows[rows.state == "FAIL"].fail_reason.str.contains("loss became").all()


def test_constraints_reach_the_sampler_and_the_front(tmp_path, search_args):
    out = tmp_path / "budget"
    result = run(*search_args(out, "--budget-ms", "0.001", "--max-drop", "50", trials=3))
    assert result.exit_code == 0, result.output
    assert "no trial satisfies the constraints" in result.stdout
    study = load(out)
    assert study.user_attrs["budget_ms"] == 0.001 and study.user_attrs["max_drop"] == 50
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        budget, drop = t.user_attrs["constraint"]
        assert budget == pytest.approx(t.values[1] - 0.001)
        assert drop == pytest.approx(study.user_attrs["backbone_val_accuracy"] - t.values[0] - 50)
        if hasattr(t, "constraints"):
            assert t.constraints == {"budget_ms": pytest.approx(budget), "max_drop": pytest.approx(drop)}
    assert (out / "pareto.csv").read_text().strip() == ""


def test_default_accuracy_drop_constraint(tmp_path, checkpoint):
    out = tmp_path / "default"
    result = run("search", "--checkpoint", checkpoint, "--space", str(DATA / "tiny.yaml"),
                 "--trials", "2", "--out", str(out), "--no-report")
    assert result.exit_code == 0, result.output
    study = load(out)
    assert study.user_attrs["max_drop"] == 5.0 and study.user_attrs["budget_ms"] is None
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        (drop,) = t.user_attrs["constraint"]
        assert drop == pytest.approx(study.user_attrs["backbone_val_accuracy"] - t.values[0] - 5.0)


def test_more_objectives(tmp_path, search_args):
    out = tmp_path / "obj"
    result = run(*search_args(out, "--objectives", "macs,energy", "--sampler", "nsga2", trials=3))
    assert result.exit_code == 0, result.output
    study = load(out)
    assert study.user_attrs["objectives"] == ["accuracy", "latency_ms", "macs", "energy_mj"]
    t = study.best_trials[0]
    assert t.values[2:] == [pytest.approx(t.user_attrs["expected_macs"]),
                            pytest.approx(t.user_attrs["expected_energy_mj"])]


@pytest.mark.parametrize("extra, message", [
    (["--objectives", "speed"], "--objectives: unknown objective 'speed'"),
    (["--storage", "study.db"], "--storage 'study.db' is not a storage URL"),
    (["--space", "nonexistent"], "--space nonexistent: no such search space"),
    (["--profile", "toaster"], "unknown hardware profile 'toaster'"),
    (["--sampler", "grid"], "Invalid value for '--sampler'"),
    (["--budget-ms", "0"], "Invalid value for '--budget-ms'"),
    (["--trials", "0"], "Invalid value for '--trials'"),
    (["--max-drop", "-1"], "must be a number of accuracy points >= 0 or 'none', got '-1'"),
    (["--max-drop", "lots"], "must be a number of accuracy points >= 0 or 'none', got 'lots'"),
])
def test_bad_options_exit_2_with_one_clear_line(tmp_path, search_args, extra, message):
    result = run(*search_args(tmp_path / "bad"), *extra)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_bad_space_file_exits_2_naming_file_and_key(tmp_path, checkpoint):
    bad = tmp_path / "bad.yaml"
    bad.write_text("exits:\n  count: {low: 3, high: 1}\n")
    result = run("search", "--space", str(bad), "--checkpoint", checkpoint, "--out", str(tmp_path))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {bad}: exits.count needs low <= high, got low=3, high=1"
    learned = tmp_path / "learned.yaml"
    learned.write_text("exits: {count: 1}\nloss: {name: ce}\nexit_policy: {criterion: learned}\n")
    result = run("search", "--space", str(learned), "--checkpoint", checkpoint, "--out", str(tmp_path))
    assert result.exit_code == 2 and "only loss 'eenet' trains" in result.output
    many = tmp_path / "many.yaml"
    many.write_text("exits: {count: {low: 1, high: 9}}\n")
    result = run("search", "--space", str(many), "--checkpoint", checkpoint, "--out", str(tmp_path))
    assert result.exit_code == 2 and "has only 5 attach points" in result.output


def test_worker_joins_and_tops_up(tiny_study, tmp_path):
    import shutil

    out, _, _ = tiny_study
    shutil.copytree(out, tmp_path / "w")
    url = f"sqlite:///{tmp_path / 'w' / 'study.db'}"
    result = run("worker", "--study", STUDY, "--storage", url, "--trials", "8", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_complete"] == 8 and data["ran"] >= 2
    missing = run("worker", "--study", "nope", "--storage", url)
    assert missing.exit_code == 2
    assert f"--study nope: no such study in the storage (it holds: {STUDY})" in missing.output


def test_changed_settings_are_refused_before_the_context_is_built(tiny_study, monkeypatch):
    import dse.api._search

    def no_context(*args, **kwargs):
        raise AssertionError("the backbone and feature cache were built before the check")

    monkeypatch.setattr(dse.api._search, "build_context", no_context)
    _, args, _ = tiny_study
    result = run(*args, "--seed", "7")
    assert result.exit_code == 2, result.output
    assert f"study {STUDY!r} exists with seed=0, but this run asks for seed=7" in result.stderr


def test_report_is_written_when_available(tmp_path, search_args, monkeypatch):
    import dse.api._search

    calls = []
    monkeypatch.setattr(dse.api._search, "render_study_report",
                        lambda study, out, shift=None, **kw: calls.append(
                            (study.study_name, out, shift)) or SimpleNamespace(
                            path=Path(out) / "report.pdf"))
    args = [a for a in search_args(tmp_path / "r", trials=2) if a != "--no-report"]
    result = run(*args, "--shift", "jitter")
    assert result.exit_code == 0, result.output
    assert calls == [(STUDY, tmp_path / "r", "jitter")]
    assert "report " in result.stdout
    calls.clear()   # by default the report picks the subsets under shift 'random'; 'none': none
    assert run(*args).exit_code == 0 and calls == [(STUDY, tmp_path / "r", "random")]
    calls.clear()
    assert run(*args, "--shift", "none").exit_code == 0 and calls == [(STUDY, tmp_path / "r", None)]
