"""The proxy benchmarks run end to end (slow: they train the default digits backbone once).

``benchmarks/digits_exits.py`` is the digits result of issue 4: pool exits trained by the proxy
keep test accuracy within 1 point of the backbone while cutting expected MACs by >= 30%.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-cache")


@pytest.mark.slow
def test_digits_pool_exits_keep_accuracy_and_cut_macs(shared_cache, monkeypatch, capsys):
    monkeypatch.setenv("DSE_CACHE", str(shared_cache))
    r = load("digits_exits").main(["--json", "--threads", "2"])
    assert r["backbone_test_accuracy"] >= 0.97  # the default backbone trains well in seconds
    assert r["accuracy_drop_points"] <= 1.0
    assert r["macs_saving"] >= 0.30
    # numbers from cached outputs are those of the real early-exit path
    assert r["real_early_exit_test_accuracy"] == pytest.approx(r["early_exit_test_accuracy"], abs=1e-9)
    assert r["real_early_exit_fractions"] == pytest.approx(r["exit_fractions"], abs=1e-9)
    assert '"macs_saving"' in capsys.readouterr().out


@pytest.mark.slow
def test_proxy_speed_reports_the_keys(shared_cache, monkeypatch, capsys):
    monkeypatch.setenv("DSE_CACHE", str(shared_cache))
    r = load("proxy_speed").main(["--json", "--steps", "20", "--repeats", "1", "--threads", "1"])
    for key in ("cached_trial_s", "uncached_trial_s", "speedup", "sweep_ms"):
        assert r[key] > 0
    assert r["speedup"] == pytest.approx(r["uncached_trial_s"] / r["cached_trial_s"], rel=0.01)
    assert '"speedup"' in capsys.readouterr().out


@pytest.mark.slow
def test_scale_benchmark_reports_one_row_per_request(tmp_path, capsys):
    r = load("scale").main(["--json", "--rows", "resnet20:120", "--trials", "1",
                            "--train", "600", "--test", "200", "--data", str(tmp_path / "c10"),
                            "--work", str(tmp_path / "work")])
    (row,) = r["rows"]
    assert row["backbone"] == "resnet20" and row["samples"] == 120 and row["trials"] == 1
    assert row["rows"] == {"train": 120, "val": 60, "test": 120}
    for key in ("build_s", "cache_gib", "peak_rss_gib", "s_per_trial"):
        assert row[key] > 0
    assert list((tmp_path / "work").iterdir()) == []  # the row's private cache is removed
    assert '"peak_rss_gib"' in capsys.readouterr().out
