"""The deployment benchmarks run end to end: ``deploy_speed.py`` (random-weight resnet8, no
training) times both paths on the same inputs with the same exits; ``export_front.py`` (slow)
checks every front configuration of a small study."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_speed_benchmark_reports_both_paths_and_the_load(capsys):
    spec = importlib.util.spec_from_file_location("deploy_speed",
                                                  ROOT / "benchmarks" / "deploy_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    r = module.main(["--backbone", "resnet8", "--images", "12", "--repeats", "1", "--warmup", "2",
                     "--json"])
    assert r["same_exits"] is True and r["images"] == 12
    assert r["onnxruntime_median_ms"] > 0 and r["eager_median_ms"] > 0
    assert r["eager_over_onnxruntime"] == r["eager_median_ms"] / r["onnxruntime_median_ms"]
    assert len(r["loadavg_before"]) == 3 and r["cpu_count"] >= 1
    assert len(r["exit_fractions"]) == 3 and abs(sum(r["exit_fractions"]) - 1) < 1e-9
    assert '"eager_over_onnxruntime"' in capsys.readouterr().out


@pytest.mark.slow
def test_every_front_config_of_a_small_study_runs_as_pytorch_does(monkeypatch, tmp_path):
    """``benchmarks/export_front.py``: search, train each front config, export, compare."""
    spec = importlib.util.spec_from_file_location("export_front",
                                                  ROOT / "benchmarks" / "export_front.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    r = module.main(["--trials", "8", "--epochs", "3", "--out", str(tmp_path)])
    assert r["configs"] >= 1
    assert r["all_same_exits"] and r["all_same_predictions"] and r["all_accuracy_equal"]
    assert r["max_logit_abs_diff"] < 1e-4
