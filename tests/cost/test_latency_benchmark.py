"""``benchmarks/latency_model.py``: the repeatability ceiling compares two measurements."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("latency_model",
                                                  ROOT / "benchmarks" / "latency_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(measured, predicted):
    return {"rows": [{"measured_ms": m, "predicted_ms": p} for m, p in zip(measured, predicted)]}


def test_repeatability_is_agreement_between_two_measurements():
    bench = load_benchmark()
    first = rows([1.0, 2.0, 4.0, 8.0], [1.0, 2.0, 4.0, 8.0])
    # second measurement: +5 %, +20 %, -5 %, +50 % -> two of four within +-10 % of the first
    second = rows([1.05, 2.4, 3.8, 12.0], [1.0, 2.0, 4.0, 8.0])
    rep = bench.repeatability(first, second)
    assert rep["measurement_within_10pct"] == 0.5
    # |1.05-1| + |2.4/2-1| + |3.8/4-1| + |12/8-1| over 4 = (0.05+0.2+0.05+0.5)/4 = 20 %
    assert rep["measurement_mape"] == pytest.approx(20.0, abs=1e-3)
    # the model against the second: 1/1.05, 2/2.4, 4/3.8, 8/12 -> within 10 %: 1st and 3rd
    assert rep["model_vs_second"]["within_10pct"] == 0.5
    assert rep["model_vs_second"]["spearman"] == pytest.approx(1.0)
