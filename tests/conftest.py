"""Suite-wide fixtures: an isolated cache folder, a calm torch, a quickly trained digits backbone."""
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


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory) -> str:
    """digits-resnet trained for 2 epochs (about a second), saved as a checkpoint (shared by
    the report and finetune tests)."""
    from dse.data import load_dataset
    from dse.train.backbone import save_backbone, train_backbone

    torch.set_num_threads(1)
    splits = load_dataset("digits", seed=0)
    model, metrics = train_backbone("digits-resnet", splits, epochs=2, seed=0, progress=False)
    path = tmp_path_factory.mktemp("ckpt") / "digits-resnet.pt"
    save_backbone(path, model, "digits-resnet", "digits", splits.info, metrics)
    return str(path)
