"""Every command's ``--json`` speaks one language: the same key for the same quantity, one unit
per quantity (accuracy in percent, latency in ms, energy in mJ, MACs as counts, exit fractions
as 0-1), and ``val`` / ``test`` sections with the same keys wherever a command reports both."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from dse.cli import cli
from dse.evaluation.metrics import SECTION_KEYS

TINY_SPACE = Path(__file__).resolve().parents[1] / "search" / "data" / "tiny.yaml"

#: a val or test section (dse.evaluation.metrics.SECTION_KEYS)
SECTION = {"accuracy": "%", "per_exit_accuracy": "%[]", "mean_anytime_accuracy": "%",
           "exit_accuracy": "%[]", "exit_fractions": "fraction[]", "expected_macs": "MACs",
           "expected_latency_ms": "ms", "expected_energy_mj": "mJ"}

#: command -> the keys its --json must hold and their units ("x[]": a list of x; "{...}[]": a
#: list of objects of that schema)
SCHEMA: dict[str, dict] = {
    "search": {"n_complete": "count",
               "pareto": [{"trial": "count", "accuracy": "%", "latency_ms": "ms",
                           "test_accuracy": "%", "test_latency_ms": "ms",
                           "val": SECTION, "test": SECTION}]},
    "train": {"epochs_run": "count", "train_seconds": "s", "val": SECTION, "test": SECTION},
    "evaluate": {"test_accuracy": "%", "per_exit_accuracy": "%[]", "mean_anytime_accuracy": "%",
                 "exit_fractions": "fraction[]", "expected_macs": "MACs",
                 "exit_macs": "MACs[]", "predicted_latency_ms": "ms",
                 "measured_latency_ms": "ms", "val": SECTION, "test": SECTION},
    "thresholds": {"max_latency_ms": "ms", "exit_latency_ms": "ms[]",
                   "before": {"val": SECTION, "test": SECTION},
                   "after": {"val": SECTION, "test": SECTION}},
    "finetune": {"accuracy": "%", "entire_accuracy": "%", "baseline_accuracy": "%",
                 "best_subset_accuracy": "%", "probe_accuracy": "%",
                 "exit_ensemble_baseline": "%[]", "selective_ops": "MACs"},
    "latency": {"total_ms": "ms", "total_macs": "MACs",
                "exits": [{"latency_ms": "ms", "energy_mj": "mJ", "cum_macs": "MACs"}]},
    "backbone train": {"val_accuracy": "%", "test_accuracy": "%", "train_seconds": "s"},
}

#: unit -> the range a value in it must lie in
RANGES = {"%": (0, 100), "fraction": (0, 1), "ms": (0, math.inf), "mJ": (0, math.inf),
          "MACs": (0, math.inf), "count": (0, math.inf), "s": (0, math.inf)}


def check(value, schema, where: str) -> None:
    if isinstance(schema, dict):
        assert isinstance(value, dict), where
        if schema is SECTION:  # sections hold exactly the shared keys
            assert tuple(value) == SECTION_KEYS, f"{where}: {list(value)}"
        for key, sub in schema.items():
            assert key in value, f"{where}: no key {key!r}"
            check(value[key], sub, f"{where}.{key}")
    elif isinstance(schema, list):
        assert isinstance(value, list) and value, where
        for i, item in enumerate(value):
            check(item, schema[0], f"{where}[{i}]")
    elif value is None:  # not computed (a study stores no exit_accuracy)
        return
    elif schema.endswith("[]"):
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            check(item, schema[:-2], f"{where}[{i}]")
    else:
        low, high = RANGES[schema]
        assert isinstance(value, (int, float)) and low <= value <= high, f"{where}={value} ({schema})"


def every_accuracy_is_percent(obj, where: str = "") -> None:
    """Anywhere in any JSON, a key ending in 'accuracy' holds percent (0-100)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key.endswith("accuracy") and value is not None:
                check(value, "%[]" if isinstance(value, list) else "%", f"{where}.{key}")
            every_accuracy_is_percent(value, f"{where}.{key}")
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            every_accuracy_is_percent(item, f"{where}[{i}]")


def run_json(*args) -> dict:
    result = CliRunner().invoke(cli, [str(a) for a in args] + ["--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_every_command_uses_the_same_keys_and_units(tmp_path, digits_checkpoint):
    out = {}
    out["search"] = run_json("search", "--checkpoint", digits_checkpoint, "--space", TINY_SPACE,
                             "--trials", 3, "--out", tmp_path / "s", "--no-report",
                             "--max-drop", "none")
    config = out["search"]["configs"][0]
    out["train"] = run_json("train", "--config", config, "--epochs", 1, "--threads", 1,
                            "--out", tmp_path / "t")
    out["evaluate"] = run_json("evaluate", "--checkpoint", out["train"]["model"], "--profile",
                               "jetson", "--latency-samples", 5, "--warmup", 0, "--budgets", 3,
                               "--threads", 1)
    out["thresholds"] = run_json("thresholds", "--checkpoint", out["train"]["model"], "--dry-run",
                                 "--threads", 1)
    out["finetune"] = run_json("finetune", "--config", config, "--shift", "jitter", "--steps", 2,
                               "--full-steps", 4, "--threads", 1)
    out["latency"] = run_json("latency", "--profile", "jetson", "--exits", 2)
    out["backbone train"] = run_json("backbone", "train", "--epochs", 1, "--out",
                                     tmp_path / "b.pt", "--threads", 1)
    for command, schema in SCHEMA.items():
        check(out[command], schema, command)
        every_accuracy_is_percent(out[command], command)
    # percent, not fractions: every trained digits model is far above 1 %
    assert out["train"]["test"]["accuracy"] > 1 and out["evaluate"]["test"]["accuracy"] > 1
    assert out["search"]["pareto"][0]["val"]["accuracy"] > 1
    assert out["backbone train"]["test_accuracy"] > 1
    # the same quantity under the same key: evaluate's top level is its test section
    ev = out["evaluate"]
    assert ev["test_accuracy"] == ev["test"]["accuracy"]
    assert ev["predicted_latency_ms"] == ev["test"]["expected_latency_ms"]
    p = out["search"]["pareto"][0]
    assert p["accuracy"] == p["val"]["accuracy"] and p["test_latency_ms"] == p["test"]["expected_latency_ms"]
    # what train measured on test is what evaluate measures (same model, same split)
    assert out["train"]["test"]["accuracy"] == pytest.approx(ev["test"]["accuracy"])
