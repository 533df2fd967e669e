"""Suite-wide fixtures: an isolated cache folder and a calm torch."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Nothing a test does touches the user's cache (trained backbones, feature caches)."""
    monkeypatch.setenv("DSE_CACHE", str(tmp_path_factory.mktemp("dse-cache")))


@pytest.fixture(autouse=True, scope="session")
def _seeded_torch():
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """CLI commands set torch's global thread count; keep one test from slowing the next."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
