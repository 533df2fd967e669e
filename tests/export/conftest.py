"""Tiny trained digits models (frozen exits, ten short epochs on a two-epoch backbone) and their
bundles, shared by the export tests (the cases: tests/export/cases.py)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dse.cost.assemble import InputSpec
from dse.data import load_dataset, split_tensors
from dse.export import export_bundle
from dse.models.backbones import build_backbone
from dse.train.full import train_config
from dse.train.model_file import assemble_config, collect_outputs, save_model
from dse.train.options import TrainOptions
from tests.export.cases import CASES, Trained, make_config


@pytest.fixture(scope="session")
def digits_splits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="session")
def test_images(digits_splits):
    return split_tensors(digits_splits.test)


@pytest.fixture(scope="session")
def trained(digits_checkpoint, digits_splits, tmp_path_factory) -> dict[str, Trained]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name in CASES:
        result = train_config(make_config(name), root / name, TrainOptions(epochs=10, seed=0),
                              checkpoint=digits_checkpoint, splits=digits_splits, log=None,
                              progress=False)
        bundle = root / f"{name}-bundle"
        export_bundle(result.model_path, bundle, all_exits=True)
        out[name] = Trained(name, result.model_path, bundle)
    return out


@pytest.fixture(scope="session")
def untrained(digits_splits, tmp_path_factory) -> Trained:
    """Seeded random weights (no training: fast), learned criterion with ISC, exported: for the
    tests that need a bundle, not a good model. The thresholds are the median confidence of
    each early exit on test images, so every exit takes some."""
    torch.manual_seed(0)
    config = make_config("learned-convx-isc")
    info = digits_splits.info
    backbone = build_backbone(config.backbone, num_classes=info.num_classes,
                              in_channels=info.channels)
    a = assemble_config(config, backbone, InputSpec(info.channels, info.input_size,
                                                    info.num_classes))
    inputs = {"dataset": "digits", "dataset_name": info.name, "num_classes": info.num_classes,
              "in_channels": info.channels, "input_size": info.input_size,
              "class_names": list(info.class_names), "mean": list(info.mean),
              "std": list(info.std)}
    x, y = split_tensors(digits_splits.test)
    outputs = collect_outputs(a.model, x, y, isc=True)
    medians = tuple(float(np.median(outputs.conf[e])) for e in range(outputs.num_exits - 1))
    config = replace(config, policy=replace(config.policy, thresholds=medians))
    root = tmp_path_factory.mktemp("untrained")
    path = save_model(root / "model.pt", a.model.eval(), config, inputs, {}, {}, a.exit_macs)
    export_bundle(path, root / "bundle")
    return Trained("untrained", path, root / "bundle")


@pytest.fixture(params=list(CASES))
def case(request, trained) -> Trained:
    return trained[request.param]
