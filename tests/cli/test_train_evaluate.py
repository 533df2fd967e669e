"""``dse train`` and ``dse evaluate`` end to end on digits (tiny epochs), and their errors."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from dse.cli import cli
from dse.cost.op_trace import OP_KINDS
from dse.design import ExitDesign, ExitPolicy, RunConfig, TrainingSpec, save_config
from dse.data import load_dataset
from dse.train.backbone import save_backbone, train_backbone
from dse.train.full import train_config
from dse.train.losses import LossSpec
from dse.train.options import TrainOptions

torch.set_num_threads(1)

OPS = {k: {"overhead_us": 5.0, "compute_eff": 0.5, "memory_eff": 0.5} for k in OP_KINDS}
PROFILE = {
    "name": "toy-cpu", "description": "a made-up CPU for tests",
    "device": {"kind": "cpu", "clock_mhz": 1000, "peak_gflops": {"fp32": 10.0},
               "memory_bandwidth_gbs": 5.0, "power_modes": {"max": {"budget_w": 5, "clock_mhz": 1000}},
               "default_power_mode": "max"},
    "runtimes": {"eager": {"dtype": "fp32", "ops": OPS, "decision_overhead_us": 20.0,
                           "power_w": 5.0}},
    "default_runtime": "eager",
}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A trained backbone, a run configuration as the search exports it, and a toy profile."""
    root = tmp_path_factory.mktemp("e2e")
    splits = load_dataset("digits", seed=0)
    model, metrics = train_backbone("digits-resnet", splits, epochs=3, seed=0, progress=False)
    ckpt = root / "bb.pt"
    save_backbone(ckpt, model, "digits-resnet", "digits", splits.info, metrics)
    config = RunConfig(
        backbone="digits-resnet", dataset="digits",
        exits=ExitDesign(3, "pareto", None, (1, 3, 4), "pool", ()),
        training=TrainingSpec(loss=LossSpec("kd", {"alpha": 0.5, "temperature": 3.0}), lr=0.03,
                              batch_size=256),
        policy=ExitPolicy("maxprob", (0.8,)),
        provenance=(("study", "demo"), ("trial", 7), ("profile", "no-such-profile")),
    )
    (root / "study" / "configs").mkdir(parents=True)
    save_config(config, str(root / "study" / "configs" / "trial-7.yaml"), header="exported by a test")
    (root / "toy-cpu.yaml").write_text(yaml.safe_dump(PROFILE))
    return {"root": root, "ckpt": str(ckpt), "config": str(root / "study" / "configs" / "trial-7.yaml"),
            "profile": str(root / "toy-cpu.yaml"), "splits": splits}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_train_then_evaluate_end_to_end(work):
    r = run("train", "--config", work["config"], "--epochs", 1, "--checkpoint", work["ckpt"],
            "--mode", "joint", "--threads", 1, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    run_dir = work["root"] / "study" / "train" / "trial-7"  # default --out for reports layout
    assert out["model"] == str(run_dir / "model.pt")
    assert out["options"]["mode"] == "joint" and out["options"]["ge"] is True
    assert torch.load(run_dir / "model.pt", weights_only=True)["format"] == "dse-multiexit"

    r = run("evaluate", "--checkpoint", run_dir / "model.pt", "--profile", work["profile"],
            "--latency-samples", 30, "--warmup", 2, "--budgets", 5, "--threads", 1, "--json")
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    for key in ("test_accuracy", "per_exit_accuracy", "exit_fractions", "expected_macs",
                "predicted_latency_ms", "measured_latency_ms", "budget_curve"):
        assert key in ev, key
    assert len(ev["per_exit_accuracy"]) == 4 and sum(ev["exit_fractions"]) == pytest.approx(1)
    assert ev["expected_macs"] == pytest.approx(np.dot(ev["exit_fractions"], ev["exit_macs"]))
    assert ev["predicted_latency_ms"] == pytest.approx(
        np.dot(ev["exit_fractions"], ev["exit_latency_ms"]))
    assert ev["profile"] == "toy-cpu" and ev["runtime"] == "eager"
    assert ev["measured_latency_ms"] > 0 and ev["measured"]["samples"] == 30
    assert ev["measured_exit_agreement"] == pytest.approx(1.0)  # real path == cached outputs
    with open(ev["budget_curve"]["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 and float(rows[-1]["budget_macs"]) == ev["exit_macs"][-1]
    assert (run_dir / "evaluation" / "budget_curve.png").stat().st_size > 1000
    # what dse train recorded is what dse evaluate measures on test (same model, same split)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == pytest.approx(ev["test_accuracy"])

    r = run("evaluate", "--checkpoint", run_dir / "model.pt", "--latency-samples", 5,
            "--warmup", 0, "--budgets", 3, "--threads", 1)
    assert r.exit_code == 0, r.output
    assert "anytime acc %" in r.output and "measured here:" in r.output
    assert "predicted on profile" in r.output
    assert "predicted latency: not computed (the search's profile 'no-such-profile'" in r.output


def test_train_table_output_and_resume_of_an_interrupted_run(work, tmp_path):
    from dse.design import load_config

    def interrupt(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_config(load_config(work["config"]), tmp_path / "run", TrainOptions(epochs=2),
                     checkpoint=work["ckpt"], splits=work["splits"], log=None, progress=False,
                     on_epoch_end=interrupt)
    r = run("train", "--config", work["config"], "--epochs", 2, "--checkpoint", work["ckpt"],
            "--out", tmp_path / "run", "--resume", "--threads", 1)
    assert r.exit_code == 0, r.output
    assert "resuming" in r.stderr and "after epoch 1 of 2" in r.stderr
    assert "trained frozen for 2 epochs" in r.stdout and "test acc %" in r.stdout
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    # the epoch log holds each epoch once, the interrupted run's included
    rows = list(csv.DictReader((tmp_path / "run" / "epochs.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]


@pytest.mark.parametrize("args, message", [
    (["--config", "missing.yaml"], "missing.yaml: no such file"),
    (["--mode", "frozen", "--ge"], "--ge needs --mode joint"),
    (["--resume"], "does not exist (no interrupted run there)"),
    (["--hdkd", "--mode", "joint", "--optimizer", "adam"], "--hdkd's virtual step is an SGD step"),
    (["--checkpoint", "nope.pt"], "checkpoint nope.pt: no such file"),
])
def test_train_errors_exit_2(work, tmp_path, args, message):
    base = ["train", "--config", work["config"], "--out", tmp_path / "o", "--epochs", 1]
    if "--config" in args:
        base = ["train", "--out", tmp_path / "o"]
    r = run(*base, *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "Traceback" not in r.output


def test_evaluate_errors_exit_2(work, tmp_path):
    r = run("evaluate", "--checkpoint", work["ckpt"])  # a backbone, not a trained model
    assert r.exit_code == 2 and "not a trained multi-exit model" in r.stderr
    r = run("evaluate", "--checkpoint", tmp_path / "none.pt")
    assert r.exit_code == 2 and "no such file" in r.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = run("evaluate", "--checkpoint", bad)
    assert r.exit_code == 2 and "not a readable torch checkpoint" in r.stderr

    run_dir = tmp_path / "run"
    train_config(RunConfig("digits-resnet", "digits", ExitDesign(1, blocks=(2,)),
                           TrainingSpec(lr=0.03, batch_size=512)),
                 run_dir, TrainOptions(epochs=1), checkpoint=work["ckpt"],
                 splits=work["splits"], log=None, progress=False)
    r = run("evaluate", "--checkpoint", run_dir / "model.pt", "--profile", "no-such-profile")
    assert r.exit_code == 2 and "no-such-profile" in r.stderr
    r = run("evaluate", "--checkpoint", run_dir / "model.pt", "--profile", work["profile"],
            "--runtime", "tensorrt")
    assert r.exit_code == 2 and "has no runtime 'tensorrt'" in r.stderr
    r = run("evaluate", "--checkpoint", run_dir / "model.pt", "--dataset", "nosuchdata")
    assert r.exit_code == 2 and "nosuchdata" in r.stderr


@pytest.mark.slow
def test_search_exported_config_trains_and_evaluates(tmp_path):
    """A configuration written by ``dse search`` itself goes through train and evaluate."""
    r = run("search", "--profile", "jetson-nano", "--trials", 2, "--backbone-epochs", 1,
            "--out", tmp_path / "study", "--no-report", "--threads", 1, "--json")
    assert r.exit_code == 0, r.output
    config = json.loads(r.stdout)["configs"][0]
    r = run("train", "--config", config, "--epochs", 1, "--threads", 1, "--json")
    assert r.exit_code == 0, r.output
    model = json.loads(r.stdout)["model"]
    assert model.startswith(str(tmp_path / "study" / "train"))
    r = run("evaluate", "--checkpoint", model, "--latency-samples", 10, "--warmup", 1,
            "--budgets", 3, "--threads", 1, "--json")
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert ev["profile"] == "jetson-nano"  # the search's profile and runtime by default
    assert ev["predicted_latency_ms"] > 0 and ev["measured_latency_ms"] > 0
    assert 0 <= ev["test_accuracy"] <= 100  # percent
