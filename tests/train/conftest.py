"""Shared fixtures for the proxy-training tests: digits, a small backbone, in-memory caches."""
from __future__ import annotations

import pytest
import torch

from dse.data import load_dataset
from dse.models.backbones import build_backbone
from dse.train.features import build_feature_cache


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="session")
def backbone():
    """digits-resnet with seeded random weights (eval mode): frozen, so any weights will do."""
    torch.manual_seed(0)
    model = build_backbone("digits-resnet", num_classes=10, in_channels=1)
    # non-trivial batch-norm statistics, so eval-mode features are not just conv outputs
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="session")
def cache32(backbone, digits):
    """Every attach point, every split, float32, in memory."""
    return build_feature_cache(backbone, digits, dtype=torch.float32, cache_dir=False)


@pytest.fixture(scope="session")
def cache16(backbone, digits):
    return build_feature_cache(backbone, digits, [1, 3], splits=("train", "val"), cache_dir=False)
