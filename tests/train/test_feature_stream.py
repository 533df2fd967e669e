"""The streamed feature cache: same numbers as the in-memory build, one file per content, size
checks before any work, the file format, and progress lines off a terminal."""
from __future__ import annotations

import pytest
import torch

from dse.data.meta import DataMeta
from dse.errors import ConfigError
from dse.train import cache_size
from dse.train.cache_budget import budget_samples, check_request
from dse.train import features as tf
from dse.train.feature_file import FeatureWriter, file_bytes, read_feature_file
from dse.train.ticker import LineTicker


@pytest.mark.parametrize("max_samples", [None, 100])
def test_streamed_cache_equals_the_in_memory_build(backbone, digits, tmp_path, max_samples):
    kwargs = dict(max_samples=max_samples, seed=3, batch_size=64)
    old = tf.build_feature_cache(backbone, digits, [0, 2, 4], cache_dir=False, **kwargs)
    new = tf.build_feature_cache(backbone, digits, [0, 2, 4], cache_dir=tmp_path, **kwargs)
    assert len(list(tmp_path.glob("*.feat"))) == 3 and new.shapes == old.shapes
    for split in ("train", "val", "test"):
        a, b = old.split(split), new.split(split)
        for block in (0, 2, 4):
            assert b.features[block].dtype == torch.float16
            assert torch.equal(a.features[block], b.features[block])
        for name in ("logits", "labels", "indices"):
            assert torch.equal(getattr(a, name), getattr(b, name))
    assert new.nbytes == old.nbytes and new.num_classes == old.num_classes


def test_max_samples_at_or_above_the_split_size_reuses_the_full_file(backbone, digits, tmp_path):
    full = tf.build_feature_cache(backbone, digits, [1], splits=("val",), cache_dir=tmp_path)
    for cap in (360, 10_000):  # val has 360 rows
        again = tf.build_feature_cache(backbone, digits, [1], splits=("val",), cache_dir=tmp_path,
                                       max_samples=cap, seed=7)
        assert again.keys == full.keys
    assert len(list(tmp_path.glob("*.feat"))) == 1


def test_over_budget_fails_before_any_work_with_a_fitting_max_samples(backbone, digits, tmp_path,
                                                                      monkeypatch):
    # blocks 0-2 of digits-resnet: 3 x 16x8x8 float16 + 10 float32 logits + 2 int64 per sample
    per_sample = 3 * 1024 * 2 + 40 + 16
    assert per_sample == 6200
    free = cache_size.MARGIN_MIN_BYTES + 2_000_000  # usable: 2 MB
    monkeypatch.setattr(tf, "free_disk", lambda folder: free)

    def no_compute(*args, **kwargs):
        raise AssertionError("nothing may be computed when the cache cannot fit")

    monkeypatch.setattr(tf, "stream_split_features", no_compute)
    with pytest.raises(ConfigError) as err:
        tf.build_feature_cache(backbone, digits, [0, 1, 2], cache_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "needs 0.01 GiB of disk" in msg and "--max-samples" in msg
    fit = int(msg.split("--max-samples ")[1].split()[0])
    specs = tf.file_specs({b: (16, 8, 8) for b in (0, 1, 2)}, 10, torch.float16)
    overhead = file_bytes(specs, 0) + 4096 * len(specs)
    # the suggestion fits, one more sample does not
    assert cache_size.total_bytes(per_sample, overhead, [1078, 360, 359], fit) <= 2_000_000
    assert cache_size.total_bytes(per_sample, overhead, [1078, 360, 359], fit + 1) > 2_000_000
    assert not list(tmp_path.glob("*.feat"))


def test_fitting_max_samples_by_hand():
    # 3 splits of 100, 10, 10 rows; 10 bytes a row, 1 byte per split
    assert cache_size.total_bytes(10, 1, [100, 10, 10], None) == 1203
    assert cache_size.total_bytes(10, 1, [100, 10, 10], 20) == 403
    assert cache_size.fitting_max_samples(10, 1, [100, 10, 10], 403) == 20
    assert cache_size.fitting_max_samples(10, 1, [100, 10, 10], 402) == 19
    assert cache_size.fitting_max_samples(10, 1, [100, 10, 10], 2) == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_feature_file_round_trip(tmp_path, dtype):
    torch.manual_seed(0)
    block = torch.randn(10, 3, 2, 2).to(dtype)
    labels = torch.arange(10)
    specs = [("block0", dtype, (3, 2, 2)), ("labels", torch.int64, ())]
    path = tmp_path / "x.feat"
    with FeatureWriter(path, specs, 10) as out:
        for start in (0, 4, 8):  # uneven batches, any order of tensors
            out.write("labels", start, labels[start:start + 4])
            out.write("block0", start, block[start:start + 4])
        assert not path.exists()  # only once complete
        out.commit()
    back = read_feature_file(path)
    assert torch.equal(back["block0"], block) and torch.equal(back["labels"], labels)
    assert path.stat().st_size == file_bytes(specs, 10)
    assert [p.name for p in tmp_path.iterdir()] == ["x.feat"]


def test_an_interrupted_write_leaves_no_file(tmp_path):
    path = tmp_path / "x.feat"
    with pytest.raises(KeyboardInterrupt):
        with FeatureWriter(path, [("labels", torch.int64, ())], 4) as out:
            out.write("labels", 0, torch.arange(2))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    path.write_bytes(b"DSEFEAT1")
    with pytest.raises(ValueError, match="not a dse feature file"):
        read_feature_file(path)


def test_line_ticker_prints_every_ten_percent_and_every_few_seconds():
    lines: list[str] = []
    now = [0.0]
    with LineTicker(1000, "features train", log=lines.append, clock=lambda: now[0],
                    every_s=5.0, quiet_s=0.0) as bar:
        for _ in range(10):
            now[0] += 0.1
            bar.update(50)   # 500 rows in 1 s: a line at 100 (10%), 200, ...
        now[0] += 6.0
        bar.update(1)        # 1 row but 6 s later: a line
        bar.update(9)        # then silent until the end
    assert len(lines) == 7
    assert lines[0] == "features train: 100/1,000 img (10%), 0.2 s, 500 img/s"
    assert lines[5].startswith("features train: 501/1,000 img (50%), 7.0 s")
    assert lines[6].startswith("features train: 510/1,000 img (51%)")  # close()


def test_line_ticker_is_quiet_for_a_short_step():
    lines: list[str] = []
    now = [0.0]
    with LineTicker(100, "features val", log=lines.append, clock=lambda: now[0]) as bar:
        for _ in range(10):
            now[0] += 0.2
            bar.update(10)
    assert lines == []  # done in 2 s < quiet_s


def test_an_in_memory_cache_is_checked_against_available_memory(backbone, digits, monkeypatch):
    monkeypatch.setattr(tf, "available_memory", lambda: cache_size.MARGIN_MIN_BYTES + 1_000_000)
    with pytest.raises(ConfigError, match=r"GiB of memory but .*--max-samples \d+"):
        tf.build_feature_cache(backbone, digits, [0, 1, 2], cache_dir=False)


def test_cache_budget_picks_the_largest_subset_that_fits(backbone, digits):
    # blocks 0-2: 6,200 bytes per sample (see above); splits of 1078, 360 and 359 rows
    specs = tf.file_specs({b: (16, 8, 8) for b in (0, 1, 2)}, 10, torch.float16)
    overhead = file_bytes(specs, 0) + 4096 * len(specs)
    sizes = [1078, 360, 359]
    at_100 = cache_size.total_bytes(6200, overhead, sizes, 100)
    assert at_100 == 300 * 6200 + 3 * overhead
    choice = budget_samples(backbone, digits, at_100 + 6199, blocks=[0, 1, 2])
    assert choice.max_samples == 100 and choice.bytes == at_100
    assert "seeded subset of 100 samples per split" in choice.describe()
    full = cache_size.total_bytes(6200, overhead, sizes, None)
    everything = budget_samples(backbone, digits, full, blocks=[0, 1, 2])
    assert everything.max_samples is None and "every sample fits" in everything.describe()
    nothing = budget_samples(backbone, digits, 3 * overhead, blocks=[0, 1, 2])
    assert nothing.max_samples == 0 and "not one sample per split fits" in nothing.describe()


def test_request_check_counts_only_the_splits_not_already_on_disk(backbone, digits, tmp_path,
                                                                  monkeypatch):
    """From metadata alone, before the data load: refused when the splits to build do not fit,
    not when their files are already there (same rows and shapes)."""
    meta = DataMeta("digits", 10, 1, 8, digits.sizes())
    monkeypatch.setattr(cache_size, "free_disk", lambda folder: cache_size.MARGIN_MIN_BYTES + 400_000)
    with pytest.raises(ConfigError, match=r"use --max-samples \d+ \(or fewer\)"):
        check_request(backbone, meta, dtype="float16", max_samples=None, cache_dir=tmp_path)
    tf.build_feature_cache(backbone, digits, cache_dir=tmp_path, max_samples=50)
    check_request(backbone, meta, dtype="float16", max_samples=50, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs"):  # another cap: other rows, not on disk
        check_request(backbone, meta, dtype="float16", max_samples=60, cache_dir=tmp_path)
