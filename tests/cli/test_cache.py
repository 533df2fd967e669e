"""``dse cache list|prune`` on a private cache folder with hand-made files of known sizes/ages."""
from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner

from dse.cli import cli
from dse.train.cache_files import parse_size

DAY = 86_400


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DSE_CACHE", str(tmp_path))
    now = time.time()
    (tmp_path / "features").mkdir()
    (tmp_path / "backbones").mkdir()
    files = {"features/a.feat": (3000, 0.5), "features/b.feat": (2000, 2.5),
             "features/c.feat": (1000, 10.0), "backbones/r.pt": (500, 30.0)}
    for name, (size, age_days) in files.items():
        path = tmp_path / name
        path.write_bytes(b"x" * size)
        os.utime(path, (now - age_days * DAY, now - age_days * DAY))
    (tmp_path / "features/c.feat.lock").write_bytes(b"")
    stale = tmp_path / "features/.d.feat.123.tmp"
    stale.write_bytes(b"x" * 7)
    os.utime(stale, (now - 2 * DAY, now - 2 * DAY))
    return tmp_path


def _run(*args):
    return CliRunner().invoke(cli, ["cache", *args])


def test_list_shows_every_file_newest_first(cache):
    res = _run("list", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [os.path.basename(f["path"]) for f in out["files"]] == ["a.feat", "b.feat", "c.feat",
                                                                   "r.pt"]
    assert out["total_bytes"] == 6500 and out["files"][3]["kind"] == "backbones"
    text = _run("list")
    assert "4 files" in text.output and "features" in text.output


@pytest.mark.parametrize("args, removed", [
    (["--keep", "1"], ["b.feat", "c.feat"]),
    (["--older-than", "2"], ["b.feat", "c.feat"]),
    (["--older-than", "5"], ["c.feat"]),
    (["--max-size", "4000"], ["b.feat"]),  # a (3000) kept, b would pass 4000, c (1000) fits
    (["--keep", "0"], ["a.feat", "b.feat", "c.feat"]),  # backbones are never pruned
])
def test_prune_removes_feature_files_only(cache, args, removed):
    res = _run("prune", *args, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    names = sorted(os.path.basename(p) for p in out["removed"])
    assert names == sorted([*removed, ".d.feat.123.tmp"])
    left = sorted(p.name for p in (cache / "features").iterdir())
    assert all(name not in left for name in names)
    assert (cache / "backbones/r.pt").exists()
    assert ("c.feat.lock" in left) == ("c.feat" not in removed)


def test_dry_run_removes_nothing(cache):
    res = _run("prune", "--keep", "0", "--dry-run")
    assert res.exit_code == 0 and "would remove 4 files" in res.output
    assert len(list((cache / "features").iterdir())) == 5


def test_prune_needs_a_rule_and_a_valid_size(cache):
    res = _run("prune")
    assert res.exit_code == 2 and "needs --keep, --older-than or --max-size" in res.output
    res = _run("prune", "--max-size", "lots")
    assert res.exit_code == 2 and "size must be a number" in res.output


def test_parse_size():
    assert parse_size("1024") == 1024
    assert parse_size("2G") == 2 * 2**30 and parse_size("1.5 MiB") == 3 * 2**19
