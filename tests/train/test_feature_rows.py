"""Reading a cached split by rows: the same numbers as the memory-mapped tensors and as the
in-memory cache, the same trained trial, and a resident set that stays at about a batch."""
from __future__ import annotations

import pytest
import torch

from dse.train import features as tf
from dse.train.feature_file import FeatureWriter, RowFile, open_rows, read_feature_file
from dse.train.proxy import exit_outputs, train_branches


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _file(path, rows=50, shape=(3, 4, 4), dtype=torch.float16):
    torch.manual_seed(1)
    block = torch.randn(rows, *shape).to(dtype)
    with FeatureWriter(path, [("block0", dtype, shape)], rows) as out:
        out.write("block0", 0, block)
        out.commit()
    return block


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_rows_equal_the_mapped_tensor_in_any_order(tmp_path, dtype):
    block = _file(tmp_path / "x.feat", dtype=dtype)
    reader = open_rows(tmp_path / "x.feat", ["block0"])["block0"]
    assert len(reader) == 50 and reader.shape == (50, 3, 4, 4) and reader.dtype == dtype
    for idx in (torch.arange(10, 30), torch.tensor([7, 3, 3, 49, 0]), torch.arange(0),
                torch.randperm(50)):
        got = reader.rows(idx)
        assert got.dtype == dtype and torch.equal(got, block[idx])
    assert torch.equal(reader.slice(45, 60), block[45:])
    assert torch.equal(read_feature_file(tmp_path / "x.feat")["block0"], block)
    with pytest.raises(IndexError, match="rows outside 0..49"):
        reader.rows(torch.tensor([50]))


def test_a_pruned_file_stays_readable_by_an_open_reader(tmp_path):
    block = _file(tmp_path / "x.feat")
    reader = open_rows(tmp_path / "x.feat", ["block0"])["block0"]
    (tmp_path / "x.feat").unlink()
    assert torch.equal(reader.rows(torch.tensor([4, 1])), block[[4, 1]])


def test_reading_every_row_keeps_the_resident_set_at_a_chunk(tmp_path):
    # 48 MiB of features; read in chunks of 256 rows (1 MiB): the process must not keep them.
    rows, shape = 12_288, (16, 8, 16)  # 4 KiB a row in float16
    path = tmp_path / "big.feat"
    with FeatureWriter(path, [("block0", torch.float16, shape)], rows) as out:
        chunk = torch.ones(1024, *shape, dtype=torch.float16)
        for start in range(0, rows, 1024):
            out.write("block0", start, chunk)
        out.commit()
    reader = RowFile(path, {"name": "block0", "dtype": "float16", "shape": [rows, *shape],
                            "offset": open_rows(path, ["block0"])["block0"]._offset})
    before = _rss_bytes()
    total = 0.0
    for start in range(0, rows, 256):
        total += float(reader.slice(start, start + 256).float().sum())
    assert total == rows * 16 * 8 * 16
    assert _rss_bytes() - before < 16 * 2**20
    # the control: the same sweep through the mapping leaves the pages it touched resident
    mapped = read_feature_file(path)["block0"]
    before = _rss_bytes()
    for start in range(0, rows, 256):
        float(mapped[start:start + 256].float().sum())
    assert _rss_bytes() - before > 32 * 2**20


def test_batches_and_trials_from_disk_equal_the_in_memory_cache(backbone, digits, tmp_path):
    kwargs = dict(max_samples=200, seed=3, batch_size=64)
    mem = tf.build_feature_cache(backbone, digits, [0, 2], cache_dir=False, **kwargs)
    disk = tf.build_feature_cache(backbone, digits, [0, 2], cache_dir=tmp_path, **kwargs)
    assert set(disk.split("train").readers) == {0, 2} and not mem.split("train").readers
    idx = torch.tensor([5, 199, 0, 17, 17])
    for a, b in zip(mem.batch("val", idx, [0, 2]), disk.batch("val", idx, [0, 2])):
        for x, y in zip(a, b) if isinstance(a, list) else [(a, b)]:
            assert torch.equal(x, y)
    pool = torch.nn.AdaptiveAvgPool2d(1)
    assert torch.equal(mem.derived("train", 2, "k", pool), disk.derived("train", 2, "k", pool))
    for branch in ("pool", "bnpool"):  # pool trains on derived vectors, bnpool on the rows
        runs = [train_branches(c, [0, 2], branch, steps=5, batch_size=32, seed=1)
                for c in (mem, disk)]
        assert runs[0].losses == runs[1].losses
        outs = [exit_outputs(c, [0, 2], r.branches, "test", batch_size=64)
                for c, r in zip((mem, disk), runs)]
        assert (outs[0].logits == outs[1].logits).all()


def test_moving_a_file_backed_cache_copies_it_in_chunks(backbone, digits, tmp_path):
    disk = tf.build_feature_cache(backbone, digits, [1], splits=("val",), cache_dir=tmp_path)
    mem = tf.build_feature_cache(backbone, digits, [1], splits=("val",), cache_dir=False)
    moved = disk.to("cpu")  # what a CUDA search does, chunk by chunk, on the host here
    assert torch.equal(moved.split("val").features[1], mem.split("val").features[1])
    assert torch.equal(tf._moved(disk.split("val"), 1, "cpu", chunk=7),
                       mem.split("val").features[1])
