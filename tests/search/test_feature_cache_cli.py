"""`dse search` refuses a feature cache that cannot fit (fast, one line, a fix); `dse train
--mode frozen --no-augment` reuses the study's cache."""
from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from dse.cli import cli
from dse.data import builtin
from dse.design import load_config
from dse.search.study import settings_from_attrs
from dse.train import cache_size
from dse.train import features as tf
from dse.train import streamed
from tests.datasets import builders

DATA = Path(__file__).parent / "data"


def test_over_budget_search_fails_in_one_line_naming_max_samples(checkpoint, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("DSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tf, "free_disk", lambda folder: cache_size.MARGIN_MIN_BYTES + 3_000_000)
    start = time.monotonic()
    res = CliRunner().invoke(cli, ["search", "--checkpoint", checkpoint, "--space",
                                   str(DATA / "tiny.yaml"), "--trials", "1", "--no-report",
                                   "--out", str(tmp_path / "study"), "--profile", "jetson"])
    seconds = time.monotonic() - start
    assert res.exit_code == 2, res.output
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "the feature cache needs" in err[0]
    assert "--max-samples" in err[0] and "GiB of disk" in err[0]
    assert seconds < 5
    assert not list((tmp_path / "cache" / "features").glob("*.feat"))
    # the suggested value is accepted and fits
    fit = err[0].split("--max-samples ")[1].split()[0]
    res = CliRunner().invoke(cli, ["search", "--checkpoint", checkpoint, "--space",
                                   str(DATA / "tiny.yaml"), "--trials", "1", "--no-report",
                                   "--out", str(tmp_path / "study"), "--profile", "jetson",
                                   "--max-samples", fit])
    assert res.exit_code == 0, res.output


def test_cache_budget_chooses_the_samples_and_says_so(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("DSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(streamed, "MIN_SUBSET", 100)  # digits is small: 4M holds ~150 rows
    args = ["search", "--checkpoint", checkpoint, "--space", str(DATA / "tiny.yaml"),
            "--trials", "1", "--no-report", "--profile", "jetson", "--max-drop", "none"]
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a"), "--cache-budget", "4M",
                                   "--max-samples", "10"])
    assert res.exit_code == 2 and "not both" in res.stderr
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "s"), "--cache-budget", "4M",
                                   "--json"])
    assert res.exit_code == 0, res.output
    said = [line for line in res.stderr.splitlines() if "feature cache budget" in line]
    assert len(said) == 1 and "seeded subset of" in said[0], res.stderr
    n = int(said[0].split("seeded subset of ")[1].split()[0])
    files = list((tmp_path / "cache" / "features").glob("*.feat"))
    assert 1 <= n < 1078 and sum(f.stat().st_size for f in files) <= 4 * 2**20
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 's' / 'study.db'}")
    assert study.user_attrs["max_samples"] == n
    assert study.user_attrs["feature_source"] == "cache"
    # a budget too small for a useful subset: no cache, features streamed per batch
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "t"), "--cache-budget", "1K",
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert "streaming features from the frozen backbone per batch" in res.stderr
    assert sorted((tmp_path / "cache" / "features").glob("*.feat")) == sorted(files)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 't' / 'study.db'}")
    assert study.user_attrs["feature_source"] == "stream"
    assert study.user_attrs["max_samples"] is None
    assert settings_from_attrs(study.user_attrs).feature_source == "stream"  # workers stream


def test_frozen_train_reuses_the_study_feature_cache(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("DSE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "study"
    res = CliRunner().invoke(cli, ["search", "--checkpoint", checkpoint, "--space",
                                   str(DATA / "tiny.yaml"), "--trials", "2", "--no-report",
                                   "--out", str(out), "--profile", "jetson", "--max-drop", "none",
                                   "--max-samples", "300", "--seed", "3"])
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "cache" / "features").glob("*.feat"))
    inodes = [f.stat().st_ino for f in files]
    assert len(files) == 3
    config = sorted((out / "configs").glob("trial_*.yaml"))[0]
    res = CliRunner().invoke(cli, ["train", "--config", str(config), "--mode", "frozen",
                                   "--no-augment", "--epochs", "1", "--out",
                                   str(tmp_path / "train"), "--json"])
    assert res.exit_code == 0, res.output
    assert "frozen training on the feature cache" in res.stderr
    assert sorted((tmp_path / "cache" / "features").glob("*.feat")) == files
    assert [f.stat().st_ino for f in files] == inodes  # the study's files, not rebuilt


def test_over_budget_refused_from_metadata_before_the_splits_load(tmp_path, monkeypatch):
    """CIFAR-10's split sizes come from its pickles' outlines, the per-sample size from zeros
    through the backbone: the refusal needs no image decoded and no backbone trained."""
    root = builders.make_cifar10(tmp_path / "c10", n_train=200, n_test=40)
    monkeypatch.setenv("DSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache_size, "free_disk", lambda folder: cache_size.MARGIN_MIN_BYTES + 2**20)

    def unreadable(*args, **kwargs):
        raise AssertionError("the splits were loaded before the size check")

    monkeypatch.setattr(builtin, "read_cifar_batch", unreadable)
    res = CliRunner().invoke(cli, ["search", "--backbone", "resnet20", "--dataset",
                                   f"cifar10:{root}", "--trials", "1", "--no-report",
                                   "--out", str(tmp_path / "study"), "--profile", "jetson"])
    assert res.exit_code == 2, res.output
    err = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: the feature cache needs"), res.stderr
    fit = int(err[0].split("--max-samples ")[1].split()[0])
    assert 1 <= fit < 180          # 180 train, 20 val, 40 test: the cap that fits 1 MiB
    assert not (tmp_path / "study").exists()


@pytest.mark.slow  # a search, a training epoch and three refusals: ~15 s at rest
def test_a_streamed_study_trains_frozen_per_batch_and_refuses_cache_builders(checkpoint, tmp_path,
                                                                             monkeypatch):
    """No cache fitted the study's budget: `dse train --mode frozen` runs the backbone per
    batch (builds no cache); --init proxy and fine-tuning, which would cache every block, are
    refused in one line that says what to do."""
    monkeypatch.setenv("DSE_CACHE", str(tmp_path / "cache"))
    res = CliRunner().invoke(cli, ["search", "--checkpoint", checkpoint, "--space",
                                   str(DATA / "tiny.yaml"), "--trials", "1", "--no-report",
                                   "--profile", "jetson", "--max-drop", "none", "--out",
                                   str(tmp_path / "s"), "--cache-budget", "1K"])
    assert res.exit_code == 0, res.output
    config = sorted((tmp_path / "s" / "configs").glob("trial_*.yaml"))[0]
    assert dict(load_config(str(config)).provenance)["feature_source"] == "stream"
    train = ["train", "--config", str(config), "--mode", "frozen", "--no-augment", "--epochs",
             "1", "--out", str(tmp_path / "t")]
    res = CliRunner().invoke(cli, train)
    assert res.exit_code == 0, res.output
    assert "frozen training runs the backbone per batch" in res.stderr
    assert not list((tmp_path / "cache" / "features").glob("*.feat"))
    for args, fix in ((["--init", "proxy"], "--init pretrained"),
                      (None, "--max-samples N")):
        cmd = [*train, *args] if args else ["finetune", "--config", str(config), "--shift",
                                             "jitter"]
        res = CliRunner().invoke(cli, cmd)
        assert res.exit_code == 2, res.output
        err = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(err) == 1 and "streamed its features" in err[0] and fix in err[0]
    assert not list((tmp_path / "cache" / "features").glob("*.feat"))
