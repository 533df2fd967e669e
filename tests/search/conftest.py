"""Search tests: one small trained backbone and one cache folder shared by the whole session.

The suite-wide ``_isolated_cache`` fixture gives every test a fresh cache; here it is replaced by
one session folder (still outside the user's cache), so the backbone checkpoint and the digits
feature cache are built once. Studies use ``tests/search/data/*.yaml`` spaces (trials of
milliseconds), the checkpoint of a 2-epoch backbone, and the shipped ``jetson`` profile.
"""
from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def search_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("search-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(search_cache, monkeypatch):
    monkeypatch.setenv("DSE_CACHE", str(search_cache))


@pytest.fixture(scope="session")
def checkpoint(search_cache) -> str:
    """A digits-resnet trained 2 epochs on digits (seconds), saved once per session."""
    import os

    import torch

    from dse.data import load_dataset
    from dse.train.backbone import save_backbone, train_backbone

    old = os.environ.get("DSE_CACHE")
    os.environ["DSE_CACHE"] = str(search_cache)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        splits = load_dataset("digits", seed=0)
        model, metrics = train_backbone("digits-resnet", splits, epochs=2, seed=0, progress=False)
        path = search_cache / "digits-resnet-2ep.pt"
        save_backbone(path, model, "digits-resnet", "digits", splits.info, metrics)
    finally:
        torch.set_num_threads(threads)
        if old is None:
            os.environ.pop("DSE_CACHE", None)
        else:
            os.environ["DSE_CACHE"] = old
    return str(path)


@pytest.fixture
def search_args(checkpoint):
    """``search_args(out, *extra, space=..., trials=...)``: `dse search` arguments for a tiny
    study in ``out`` (the session checkpoint, a test space, no PDF)."""
    def make(out: Path, *extra: str, space: str = "tiny.yaml", trials: int = 6) -> list[str]:
        return ["search", "--checkpoint", checkpoint, "--space", str(DATA / space), "--trials",
                str(trials), "--out", str(out), "--no-report", "--profile", "jetson",
                "--max-drop", "none", *extra]
    return make
