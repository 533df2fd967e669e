"""Frozen `dse train` on the feature cache: the same training as the per-step backbone pass,
built once (or found), and --max-samples."""
from __future__ import annotations


import pytest
import torch

from dse.design import ExitDesign, ExitPolicy, RunConfig, TrainingSpec
from dse.data import load_dataset
from dse.train.backbone import save_backbone, train_backbone
from dse.train.full import train_config
from dse.train.losses import LossSpec
from dse.train.options import TrainOptions


@pytest.fixture(scope="module")
def splits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def ckpt(splits, tmp_path_factory):
    model, metrics = train_backbone("digits-resnet", splits, epochs=2, seed=0, progress=False)
    path = tmp_path_factory.mktemp("bb") / "digits-resnet.pt"
    save_backbone(path, model, "digits-resnet", "digits", splits.info, metrics)
    return str(path)


def config(labels: str = "ground_truth", dtype: str = "float32") -> RunConfig:
    return RunConfig(
        backbone="digits-resnet", dataset="digits",
        exits=ExitDesign(2, "pareto", None, (1, 3), "pool", ()),
        training=TrainingSpec(loss=LossSpec("kd", {}, True), labels=labels, lr=0.03,
                              batch_size=128),
        policy=ExitPolicy("maxprob", (0.9,)), provenance=(("feature_dtype", dtype),))


def run(cfg, out, splits, ckpt, **opts):
    o = TrainOptions(mode="frozen", epochs=2, augment=False, **opts)
    return train_config(cfg, out, o, checkpoint=ckpt, splits=splits, log=None, progress=False)


@pytest.mark.parametrize("labels", ["ground_truth", "pseudo"])
def test_cache_path_trains_like_the_backbone_pass(tmp_path, splits, ckpt, labels):
    cached = run(config(labels), tmp_path / "c", splits, ckpt)
    online = run(config(labels), tmp_path / "o", splits, ckpt, feature_cache=False)
    assert cached.metrics["feature_cache"] and online.metrics["feature_cache"] is None
    for a, b in zip(cached.metrics["history"], online.metrics["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    for split in ("val", "test"):
        assert cached.metrics[split]["accuracy"] == pytest.approx(
            online.metrics[split]["accuracy"], abs=1 / 350)  # at most one sample apart
    for (k, x), (_, y) in zip(cached.model.state_dict().items(),
                              online.model.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-4, msg=k)


def test_the_cache_is_built_once_and_reused(tmp_path, splits, ckpt, monkeypatch):
    monkeypatch.setenv("DSE_CACHE", str(tmp_path / "cache"))
    run(config(dtype="float16"), tmp_path / "a", splits, ckpt)
    files = sorted((tmp_path / "cache" / "features").glob("*.feat"))
    assert len(files) == 3
    stamps = [f.stat().st_ino for f in files]
    run(config(dtype="float16"), tmp_path / "b", splits, ckpt)
    assert sorted((tmp_path / "cache" / "features").glob("*.feat")) == files
    assert [f.stat().st_ino for f in files] == stamps  # read, not rewritten


@pytest.mark.parametrize("feature_cache", [True, False])
def test_max_samples_caps_every_split(tmp_path, splits, ckpt, feature_cache):
    r = run(config(), tmp_path / "m", splits, ckpt, max_samples=100, feature_cache=feature_cache)
    assert r.metrics["options"]["max_samples"] == 100
    steps = r.metrics["history"][0]
    assert steps["epoch"] == 1
    # 100 train rows in batches of 128: one step per epoch; val/test measured on 100 rows
    assert r.metrics["val"]["exit_fractions"] and len(r.metrics["history"]) == 2
    assert r.metrics["test"]["accuracy"] * 100 == pytest.approx(round(r.metrics["test"]["accuracy"] * 100))


def test_normalisation_is_settable_and_stored_in_the_model_file(tmp_path, splits, ckpt):
    r = run(config(), tmp_path / "n", splits, ckpt, normalize="none")
    saved = torch.load(r.model_path, weights_only=True)
    assert saved["input"]["mean"] == [0.0] and saved["input"]["std"] == [1.0]
    assert saved["training"]["normalize"] == "none"
    d = run(config(), tmp_path / "d", splits, ckpt)
    assert torch.load(d.model_path, weights_only=True)["input"]["mean"] == list(splits.info.mean)
