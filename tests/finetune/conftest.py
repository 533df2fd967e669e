"""Run configs that use the suite's quickly trained digits checkpoint (``digits_checkpoint``)."""
from __future__ import annotations

import pytest
import yaml


@pytest.fixture
def make_config(digits_checkpoint, tmp_path):
    """``make_config(**exits_and_training)`` -> path of a config YAML using the checkpoint."""
    def make(name: str = "config.yaml", **kwargs) -> str:
        return write_config(tmp_path / name, digits_checkpoint, **kwargs)
    return make


def write_config(path, checkpoint: str, *, count: int = 4, placement: str = "linear",
                 steps: int = 40, blocks=None, branch: str = "pool") -> str:
    raw = {
        "dse_config": 1,
        "backbone": {"name": "digits-resnet", "checkpoint": checkpoint, "input_size": None},
        "dataset": "digits", "seed": 0,
        "exits": {"count": count, "placement": placement, "positions": None, "blocks": blocks,
                  "branch": branch, "branch_params": {}},
        "training": {"loss": {"name": "ce"}, "labels": "ground_truth", "steps": steps,
                     "lr": 0.01, "optimizer": "adam", "batch_size": 128},
        "exit_policy": {"criterion": "maxprob", "thresholds": [0.9]},
    }
    with open(path, "w") as fh:
        yaml.safe_dump(raw, fh)
    return str(path)
