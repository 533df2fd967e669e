"""``dse thresholds`` end to end on digits (a model trained one frozen epoch): each objective,
the thresholds written into the model file, its config and a bundle, and the errors (exit 2)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from click.testing import CliRunner

from dse.cli import cli
from dse.design import ExitDesign, ExitPolicy, RunConfig, TrainingSpec, load_config, save_config
from dse.data import load_dataset
from dse.export import export_bundle
from dse.train.full import train_config
from dse.train.losses import LossSpec
from dse.train.model_file import load_model
from dse.train.options import TrainOptions

torch.set_num_threads(1)

#: what the search predicted for this config on jetson-nano (between exit 1's and the final's)
SEARCH_MS = 0.7


def make_config(provenance: bool = True) -> RunConfig:
    prov = (("study", "demo"), ("trial", 7), ("profile", "jetson-nano"),
            ("expected_latency_ms", SEARCH_MS)) if provenance else ()
    return RunConfig(backbone="digits-resnet", dataset="digits",
                     exits=ExitDesign(3, "pareto", None, (1, 3, 4), "pool", ()),
                     training=TrainingSpec(loss=LossSpec("ce", {}), lr=0.03, batch_size=256),
                     policy=ExitPolicy("maxprob", (0.8,)), provenance=prov)


@pytest.fixture(scope="module")
def trained(digits_checkpoint, tmp_path_factory):
    """One frozen epoch, thresholds kept as configured (re-tuning is what the tests do)."""
    root = tmp_path_factory.mktemp("thresholds")
    splits = load_dataset("digits", seed=0)
    r = train_config(make_config(), root / "run", TrainOptions(epochs=1),
                     checkpoint=digits_checkpoint, splits=splits, log=None, progress=False,
                     retune=None)
    export_bundle(r.model_path, root / "bundle")
    return root


@pytest.fixture
def run_dir(trained, tmp_path):
    """A private copy of the trained run and its bundle."""
    shutil.copytree(trained / "run", tmp_path / "run")
    shutil.copytree(trained / "bundle", tmp_path / "bundle")
    return tmp_path / "run"


def run(*args):
    return CliRunner().invoke(cli, ["thresholds", *[str(a) for a in args]])


def test_search_objective_keeps_the_searched_latency_and_writes_everywhere(run_dir):
    bundle = run_dir.parent / "bundle"
    r = run("--checkpoint", run_dir / "model.pt", "--bundle", bundle, "--threads", 1, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    after, before = out["after"], out["before"]
    assert out["objective"] == "search" and out["profile"] == "jetson-nano"
    assert out["max_latency_ms"] == SEARCH_MS
    assert after["val"]["expected_latency_ms"] <= SEARCH_MS
    if before["val"]["expected_latency_ms"] <= SEARCH_MS:  # the configured point is a candidate
        assert after["val"]["accuracy"] >= before["val"]["accuracy"]
    new = after["thresholds"]
    assert all(0 <= t <= 1 for t in new) and before["thresholds"] == [0.8]
    # the model file, the config beside it and the bundle's manifest now hold them
    assert list(load_model(run_dir / "model.pt").config.policy.thresholds) == new
    assert list(load_config(str(run_dir / "config.yaml")).policy.thresholds) == new
    manifest = json.loads((bundle / "manifest.json").read_text())
    per_exit = new * 3 if len(new) == 1 else new
    assert manifest["criterion"]["thresholds"] == per_exit
    assert manifest["source"]["config"]["exit_policy"]["thresholds"] == per_exit
    assert set(out["written"]) == {"model", "config", "bundle"} and all(out["written"].values())


def test_budget_and_max_drop_objectives(run_dir):
    r = run("--checkpoint", run_dir / "model.pt", "--dry-run", "--threads", 1, "--json")
    first = json.loads(r.stdout)
    budget = first["before"]["val"]["expected_latency_ms"]
    r = run("--checkpoint", run_dir / "model.pt", "--budget-ms", budget, "--dry-run",
            "--threads", 1, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["objective"] == "budget" and out["written"]["model"] is None
    assert out["after"]["val"]["expected_latency_ms"] <= budget * (1 + 1e-9)
    assert out["after"]["val"]["accuracy"] >= out["before"]["val"]["accuracy"]
    assert list(load_model(run_dir / "model.pt").config.policy.thresholds) == [0.8]  # dry run

    r = run("--checkpoint", run_dir / "model.pt", "--max-drop", 0.5, "--threads", 1)
    assert r.exit_code == 0, r.output
    assert "cheapest within 0.5 points of the final exit" in r.stdout and "wrote" in r.stdout
    m = json.loads(json.dumps(load_model(run_dir / "model.pt").payload["metrics"]["thresholds"]))
    final_val = m["after"]["val"]["per_exit_accuracy"][-1]
    assert m["after"]["val"]["accuracy"] >= final_val - 0.5 - 1e-9
    assert m["min_val_accuracy"] == pytest.approx(final_val - 0.5)


def test_errors_exit_2_and_write_nothing(run_dir, digits_checkpoint, tmp_path):
    model = run_dir / "model.pt"
    before = model.read_bytes()
    no_search = tmp_path / "hand.yaml"
    save_config(make_config(provenance=False), str(no_search))
    other = tmp_path / "other.yaml"
    save_config(RunConfig("digits-resnet", "digits", ExitDesign(1, blocks=(2,))), str(other))
    (tmp_path / "notabundle").mkdir()
    cases = [
        (["--budget-ms", 1, "--max-drop", 1], "give one of --objective, --budget-ms and --max-drop"),
        (["--max-drop", -1], "--max-drop"),
        (["--budget-ms", "nan"], "--budget-ms"),
        (["--budget-ms", 1e-6], "no thresholds meet 1e-06 latency_ms on val"),
        (["--profile", "desktop-cpu"], "--objective search keeps the latency the search predicted"),
        (["--budget-ms", 1, "--profile", "no-such-board"], "no-such-board"),
        (["--config", other], "are not the model's"),
        (["--config", tmp_path / "missing.yaml"], "no such file"),
        (["--bundle", tmp_path / "notabundle"], "not a bundle written by dse export"),
    ]
    for args, message in cases:
        r = run("--checkpoint", model, *args, "--threads", 1)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.stderr and "Traceback" not in r.output, (args, r.stderr)
    assert model.read_bytes() == before
    r = run("--checkpoint", digits_checkpoint)
    assert r.exit_code == 2 and "not a trained multi-exit model" in r.stderr


def test_search_objective_needs_a_searched_config(digits_checkpoint, tmp_path):
    splits = load_dataset("digits", seed=0)
    r = train_config(make_config(provenance=False), tmp_path / "hand", TrainOptions(epochs=1),
                     checkpoint=digits_checkpoint, splits=splits, log=None, progress=False)
    # dse train's own re-tune could not apply: thresholds kept, with the reason
    th = r.metrics["thresholds"]
    assert th["retuned"] is False and "written by dse search" in th["note"]
    assert th["before"]["thresholds"] == th["after"]["thresholds"] == [0.8]
    assert yaml.safe_load((tmp_path / "hand" / "config.yaml").read_text())[
        "exit_policy"]["thresholds"] == [0.8]
    res = run("--checkpoint", tmp_path / "hand" / "model.pt", "--threads", 1)
    assert res.exit_code == 2 and "needs a configuration written by dse search" in res.stderr
    res = run("--checkpoint", tmp_path / "hand" / "model.pt", "--max-drop", 1, "--threads", 1,
              "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # no profile known: the cheapest in MACs
    assert out["cost"] == "macs" and out["profile"] is None
