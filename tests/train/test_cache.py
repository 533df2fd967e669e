"""dse.cache: the cache folder, atomic writes, digests and the file lock."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dse import cache
from dse.errors import ConfigError


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DSE_CACHE", str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"
    assert cache.cache_dir("features") == tmp_path / "c" / "features"
    assert (tmp_path / "c" / "features").is_dir()


def test_cache_dir_default_is_user_cache(tmp_path, monkeypatch):
    import platformdirs

    monkeypatch.delenv("DSE_CACHE", raising=False)
    seen = {}

    def fake(appname, appauthor=None):
        seen["app"] = appname
        return str(tmp_path / "user-cache" / appname)

    monkeypatch.setattr(platformdirs, "user_cache_dir", fake)
    assert cache.cache_dir() == tmp_path / "user-cache" / "dse"
    assert seen["app"] == "dse"


def test_cache_dir_unwritable_is_a_config_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("DSE_CACHE", str(blocker))
    with pytest.raises(ConfigError, match="DSE_CACHE"):
        cache.cache_dir("backbones")


def test_atomic_save_writes_and_leaves_no_temporary(tmp_path):
    path = cache.atomic_torch_save({"a": torch.arange(3)}, tmp_path / "sub" / "x.pt")
    assert torch.equal(torch.load(path)["a"], torch.arange(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.pt"]


def test_atomic_save_failure_keeps_old_file(tmp_path):
    path = cache.atomic_torch_save({"v": 1}, tmp_path / "x.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.atomic_torch_save({"v": Unpicklable()}, path)
    assert torch.load(path) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]


def test_state_digest_tracks_weights():
    a = torch.nn.Linear(2, 2)
    d = cache.state_digest(a)
    assert d == cache.state_digest(a.state_dict()) and len(d) == 64
    with torch.no_grad():
        a.weight[0, 0] += 1e-3
    assert cache.state_digest(a) != d


def test_digest_and_slug():
    assert cache.digest("a", 1) == cache.digest("a", 1)
    assert cache.digest("a", 1) != cache.digest("a", 2)
    assert len(cache.digest("x", length=10)) == 10
    assert cache.slug("cifar10:/data/c 10") == "cifar10-data-c-10"
    assert cache.slug("mod.x:factory") == "mod.x-factory"


def test_file_lock_is_reentrant_across_uses(tmp_path):
    target = tmp_path / "thing.pt"
    with cache.file_lock(target):
        assert Path(f"{target}.lock").exists()
    with cache.file_lock(target):  # released: can be taken again
        pass
    assert os.path.exists(f"{target}.lock")


def test_file_lock_excludes_another_process(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "thing.pt"
    probe = ("import sys, filelock; l = filelock.FileLock(sys.argv[1] + '.lock')\n"
             "try:\n    l.acquire(timeout=0.2)\nexcept filelock.Timeout:\n    print('busy')\n"
             "else:\n    print('free')")
    with cache.file_lock(target):
        held = subprocess.run([sys.executable, "-c", probe, str(target)], capture_output=True,
                              text=True, timeout=60)
    after = subprocess.run([sys.executable, "-c", probe, str(target)], capture_output=True,
                           text=True, timeout=60)
    assert (held.stdout.strip(), after.stdout.strip()) == ("busy", "free"), held.stderr
