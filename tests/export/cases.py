"""The export tests' cases: one tiny configuration per exit criterion (ISC and every branch
kind among them), and the PyTorch early-exit reference the bundles are compared with."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dse.design import ExitDesign, ExitPolicy, LossSpec, RunConfig, TrainingSpec
from dse.train.model_file import load_model

#: name -> (branch, branch params, exit blocks, criterion, thresholds, isc); thresholds low
#: enough that every early exit takes some test images after one epoch
CASES = {
    "maxprob-pool": ("pool", (), (1, 3), "maxprob", (0.6,), False),
    "learned-convx-isc": ("convx", (("depth", 1),), (1, 3), "learned", (0.3, 0.4), True),
    "entropy-bnpool": ("bnpool", (), (1, 2, 4), "entropy", (0.5,), False),
}


@dataclass
class Trained:
    name: str
    model_file: Path
    bundle: Path


def make_config(name: str) -> RunConfig:
    branch, params, blocks, criterion, thresholds, isc = CASES[name]
    return RunConfig(
        backbone="digits-resnet", dataset="digits",
        exits=ExitDesign(len(blocks), "pareto", None, blocks, branch, params),
        training=TrainingSpec(loss=LossSpec("ce", {}, isc), lr=0.03, batch_size=256),
        policy=ExitPolicy(criterion, thresholds),
        provenance=(("study", "export-test"), ("profile", "jetson")))


def pytorch_early_exit(model_file: Path, x: torch.Tensor):
    """Batch-1 PyTorch early exit on every image: (logits [N, K], exit index [N])."""
    loaded = load_model(model_file)
    model, policy = loaded.model, loaded.config.policy
    thresholds = policy.per_exit(model.num_exits - 1)
    logits, exits = [], []
    with torch.inference_mode():
        for i in range(x.shape[0]):
            z, k = model.early_exit(x[i:i + 1], policy.criterion, thresholds)
            logits.append(z[0])
            exits.append(int(k[0]))
    return torch.stack(logits).numpy(), exits
