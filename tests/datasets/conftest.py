"""Fixtures: tiny dataset folders in every real format (builders live in builders.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # so `tests.datasets.builders` imports under --import-mode=importlib
    sys.path.insert(0, _ROOT)

from tests.datasets import builders  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> Path:
    return builders.make_cifar10(tmp_path / "cifar-10-batches-py", n_train=50, n_test=20)


@pytest.fixture
def cifar100_dir(tmp_path: Path) -> Path:
    return builders.make_cifar100(tmp_path / "cifar-100-python", n_train=200, n_test=100)


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    return builders.make_mnist(tmp_path / "mnist", n_train=60, n_test=20, gz=True)


@pytest.fixture
def svhn_dir(tmp_path: Path) -> Path:
    return builders.make_svhn(tmp_path / "svhn", n_train=40, n_test=20)


@pytest.fixture
def imagefolder_dir(tmp_path: Path) -> Path:
    return builders.make_imagefolder(tmp_path / "images", ("cat", "dog", "emu"), per_class=10)
