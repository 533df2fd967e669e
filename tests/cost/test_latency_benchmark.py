"""``benchmarks/latency_model.py``: calibrate and validate both runtimes, report the targets."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("latency_model",
                                                  ROOT / "benchmarks" / "latency_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unknown_runtime_is_refused():
    with pytest.raises(SystemExit) as exc:
        load_benchmark().main(["--runtimes", "tflite"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_quick_benchmark_reports_both_runtimes(tmp_path, capsys):
    load_benchmark().main(["--quick", "--json", "--out", str(tmp_path)])
    result = json.loads(capsys.readouterr().out)
    assert set(result["summary"]) == {"pytorch", "onnxruntime"}
    for engine in ("pytorch", "onnxruntime"):
        r = result[engine]
        assert {"within_10pct", "spearman", "repeatability", "load_avg", "checks"} <= set(r)
        assert r["n"] == 5 and Path(r["profile_path"]).is_file()
    assert result["onnxruntime"]["runtime"] == "onnxruntime-cpu-fp32"
    assert len(result["load_avg_start"]) == 3 and isinstance(result["machine_busy"], bool)
    by = result["median_error_by_backbone"]
    assert set(by) == {"pytorch", "onnxruntime"} and all(by.values())


def test_co_timed_cannot_validate_saved_profiles(tmp_path):
    with pytest.raises(SystemExit) as exc:
        load_benchmark().main(["--co-timed", "--profiles", str(tmp_path)])
    assert exc.value.code == 2


@pytest.mark.slow
def test_co_timed_benchmark_fits_and_compares_in_one_run(tmp_path, capsys):
    """``--co-timed``: the exits are timed in the calibration's passes (4 of them, the
    calibration's), the profile is fitted and written, and the comparison is of that profile."""
    load_benchmark().main(["--quick", "--co-timed", "--json", "--out", str(tmp_path)])
    result = json.loads(capsys.readouterr().out)
    for engine in ("pytorch", "onnxruntime"):
        r = result[engine]
        assert r["co_timed"] is True and r["n"] == 5 and r["passes"] == 4
        assert Path(r["profile_path"]).is_file()
        assert all(row["measured_ms"] > 0 and row["predicted_ms"] > 0 for row in r["rows"])
        # one run: its validation samples and the calibration share one machine state
        assert r["reference_us"] is not None and 0.5 < r["speed_ratio"] < 2.0
    assert result["onnxruntime"]["runtime"] == "onnxruntime-cpu-fp32"
