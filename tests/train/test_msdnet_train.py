"""MSDNet's classifiers as exits through ``dse train``: joint with GE, ISC, HDKD's dense KD and
its learned loss weights, and frozen with KD on the feature cache (the coarsest scales)."""
from __future__ import annotations

import math

import pytest
import torch

from dse.data import load_dataset
from dse.design import ExitDesign, ExitPolicy, RunConfig, TrainingSpec
from dse.models.backbones import build_backbone
from dse.train.backbone import save_backbone
from dse.train.full import train_config
from dse.train.losses import LossSpec
from dse.train.options import TrainOptions


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    splits = load_dataset("digits", seed=0)
    path = tmp_path_factory.mktemp("msd") / "msdnet.pt"
    model = build_backbone("msdnet-cifar", num_classes=10, in_channels=1)
    save_backbone(path, model, "msdnet-cifar", "digits", splits.info, {})
    return splits, str(path)


def config(loss: str, isc: bool, **params) -> RunConfig:
    # keep classifiers 1, 3 and 5 of the six early ones, the paper's branch (narrowed)
    return RunConfig(
        backbone="msdnet-cifar", dataset="digits",
        exits=ExitDesign(3, "explicit", None, (0, 2, 4), "msdnet", (("width", 16),)),
        training=TrainingSpec(loss=LossSpec(loss, params, isc), lr=0.03, batch_size=64),
        policy=ExitPolicy("maxprob", (0.9, 0.9, 0.9)))


@pytest.mark.slow  # MSDNet's ~500 small ops per step: minutes on a loaded 2-core machine
@pytest.mark.parametrize("loss, isc, params, options", [
    ("dense_kd", True, {"lam": 0.5, "temperature": 3.0},
     {"mode": "joint", "ge": True, "hdkd": True}),
    ("kd", False, {"alpha": 0.5, "temperature": 3.0}, {"mode": "frozen", "augment": False}),
], ids=["joint-ge-isc-hdkd", "frozen-kd-cache"])
def test_msdnet_classifiers_train_as_exits(tmp_path, setup, loss, isc, params, options):
    splits, ckpt = setup
    r = train_config(config(loss, isc, **params), tmp_path / "out",
                     TrainOptions(epochs=1, max_samples=64, **options), checkpoint=ckpt,
                     splits=splits, log=None, progress=False)
    assert math.isfinite(r.metrics["history"][0]["train_loss"])
    assert r.metrics["exit_blocks"] == [0, 2, 4]
    assert len(r.metrics["test"]["per_exit_accuracy"]) == 4 == len(r.metrics["exit_macs"])
    assert r.metrics["exit_macs"] == sorted(r.metrics["exit_macs"])
