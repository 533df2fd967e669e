"""``dse backbone train``: exit codes, output and the saved checkpoint."""
from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from dse.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, ["backbone", "train", *args])


def test_train_saves_checkpoint_and_prints_accuracy(tmp_path):
    out = tmp_path / "b.pt"
    result = run("--epochs", "1", "--out", str(out), "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "val accuracy" in result.output and "test accuracy" in result.output
    assert f"saved {out}" in result.output
    saved = torch.load(out, weights_only=True)
    assert saved["backbone"] == "digits-resnet" and saved["metrics"]["epochs"] == 1


def test_train_json_defaults_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DSE_CACHE", str(tmp_path))
    result = run("--epochs", "1", "--json", "--seed", "2")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["checkpoint"].startswith(str(tmp_path / "backbones"))
    assert "_s2_" in data["checkpoint"] and data["seed"] == 2
    assert 0 <= data["val_accuracy"] <= 100 and 0 <= data["test_accuracy"] <= 100  # percent


def test_cached_checkpoint_is_what_ensure_backbone_finds(tmp_path, monkeypatch):
    from dse.train.backbone import ensure_backbone

    monkeypatch.setenv("DSE_CACHE", str(tmp_path))
    assert run("--epochs", "1").exit_code == 0
    _, info = ensure_backbone("digits-resnet", "digits", epochs=1, log=None)
    assert info.source == "cache"


def test_unknown_dataset_exits_2():
    result = run("--dataset", "nope", "--epochs", "1")
    assert result.exit_code == 2
    assert "unknown dataset 'nope'" in result.output


def test_unknown_backbone_exits_2():
    result = run("--backbone", "resnet9000", "--epochs", "1")
    assert result.exit_code == 2
    assert "unknown backbone 'resnet9000'" in result.output


def test_dataset_without_path_exits_2():
    result = run("--dataset", "cifar10", "--epochs", "1")
    assert result.exit_code == 2
    assert "needs a path" in result.output


def test_bad_epochs_is_a_usage_error():
    result = run("--epochs", "0")
    assert result.exit_code == 2
    assert "--epochs" in result.output


def test_unwritable_out_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("--epochs", "1", "--out", str(blocker / "b.pt"))
    assert result.exit_code == 2
    assert f"cannot write checkpoint {blocker / 'b.pt'}" in result.output


def test_max_samples_trains_on_a_subset_and_needs_out(tmp_path):
    result = run("--epochs", "1", "--max-samples", "50", "--json", "--out", str(tmp_path / "s.pt"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # 50 test rows: accuracy is a multiple of 1/50
    assert abs(data["test_accuracy"] * 50 - round(data["test_accuracy"] * 50)) < 1e-9
    result = run("--epochs", "1", "--max-samples", "50")
    assert result.exit_code == 2 and "need --out" in result.output
