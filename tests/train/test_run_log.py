"""``dse train``'s per-epoch records (epochs.csv, TensorBoard when installed), the best-on-val
epoch it keeps, and the re-tuned thresholds in its metrics."""
from __future__ import annotations

import csv
import importlib.util
import sys
import types

import pytest
import torch

from dse.data import load_dataset
from dse.design import ExitDesign, ExitPolicy, RunConfig, TrainingSpec
from dse.errors import ConfigError
from dse.train.full import train_config
from dse.train.losses import LossSpec
from dse.train.options import TrainOptions
from dse.train.retune import Objective, make_objective
from dse.train.run_log import epoch_row, write_epochs_csv

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def splits():
    return load_dataset("digits", seed=0)


def config(searched_ms: float | None = None) -> RunConfig:
    prov = (("profile", "jetson-nano"), ("expected_latency_ms", searched_ms)) if searched_ms else ()
    return RunConfig(backbone="digits-resnet", dataset="digits",
                     exits=ExitDesign(2, "pareto", None, (2, 4), "pool", ()),
                     training=TrainingSpec(loss=LossSpec("ce", {}), lr=0.05, batch_size=256),
                     policy=ExitPolicy("maxprob", (0.9,)), provenance=prov)


def record(epoch: int, anytime: float) -> dict:
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "lr": 0.1, "seconds": 2.0 * epoch,
            "val": {"accuracy": 90.0, "mean_anytime_accuracy": anytime, "expected_macs": 5.0,
                    "per_exit_accuracy": [80.0, 95.0], "exit_fractions": [0.25, 0.75]}}


def test_epochs_csv_has_one_row_per_record(tmp_path):
    path = write_epochs_csv(tmp_path / "epochs.csv", [record(1, 70.0), record(2, 75.0)])
    rows = list(csv.DictReader(path.open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[1]["val_mean_anytime_accuracy"] == "75.0"
    assert rows[0]["val_exit1_accuracy"] == "80.0" and rows[0]["val_exit2_fraction"] == "0.75"
    assert set(epoch_row(record(1, 1.0))) == set(rows[0])


@pytest.mark.parametrize("kw, message", [
    ({"budget_ms": 1.0, "max_drop": 1.0}, "give one of --objective, --budget-ms and --max-drop"),
    ({"objective": "fastest"}, "--objective must be 'search'"),
    ({"budget_ms": 0.0}, "--budget-ms must be a finite number > 0"),
    ({"budget_ms": float("inf")}, "--budget-ms must be a finite number > 0"),
    ({"max_drop": -0.1}, "--max-drop must be a finite number >= 0"),
])
def test_objective_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        make_objective(**kw)


def test_objectives():
    assert make_objective() == Objective("search")
    assert make_objective(budget_ms=2) == Objective("budget", budget_ms=2.0)
    assert make_objective(max_drop=0) == Objective("max_drop", max_drop=0.0)


@pytest.mark.parametrize("keep", ["best", "last"])
def test_train_keeps_the_chosen_epoch_logs_every_epoch_and_retunes(tmp_path, splits,
                                                                   digits_checkpoint, keep,
                                                                   monkeypatch):
    scalars = []

    class Writer:  # stands in for torch.utils.tensorboard.SummaryWriter
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            scalars.append("closed")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard",
                        types.SimpleNamespace(SummaryWriter=Writer))
    r = train_config(config(searched_ms=0.75), tmp_path / "run",
                     TrainOptions(epochs=3, keep=keep, lr=0.2), checkpoint=digits_checkpoint,
                     splits=splits, log=None, progress=False)
    m, history = r.metrics, r.metrics["history"]
    anytime = [h["val"]["mean_anytime_accuracy"] for h in history]
    best = max(range(3), key=lambda i: (anytime[i], i)) + 1  # ties: the later epoch
    assert m["kept_epoch"] == (best if keep == "best" else 3)
    # per-exit accuracy does not depend on thresholds: the saved weights are that epoch's
    assert m["val"]["mean_anytime_accuracy"] == pytest.approx(anytime[m["kept_epoch"] - 1])
    rows = list(csv.DictReader((tmp_path / "run" / "epochs.csv").open()))
    assert [float(r["val_mean_anytime_accuracy"]) for r in rows] == pytest.approx(anytime)
    assert ("val_accuracy", history[2]["val"]["accuracy"], 3) in scalars and scalars[-1] == "closed"
    th = m["thresholds"]
    assert th["retuned"] is True and th["before"]["thresholds"] == [0.9]
    assert th["after"]["val"]["expected_latency_ms"] <= 0.75
    assert m["config"]["exit_policy"]["thresholds"] == th["after"]["thresholds"]
    assert m["val"]["accuracy"] == pytest.approx(th["after"]["val"]["accuracy"])


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None,
                    reason="TensorBoard is installed here")
def test_no_tensorboard_no_folder_and_no_error(tmp_path, splits, digits_checkpoint):
    r = train_config(config(), tmp_path / "run", TrainOptions(epochs=1), retune=None,
                     checkpoint=digits_checkpoint, splits=splits, log=None, progress=False)
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert (tmp_path / "run" / "epochs.csv").is_file() and r.metrics["thresholds"] is None
