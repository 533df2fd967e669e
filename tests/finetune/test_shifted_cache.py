"""Shifted features on disk are read by rows (never mapped whole), with the same results as
features kept in memory."""
from __future__ import annotations

import torch

from dse.design import load_config
from dse.finetune.context import context_for, shifted_features
from dse.finetune.selective import finetune_config
from dse.train.feature_file import RowFile


def test_fine_tuning_reads_rows_from_disk_with_identical_results(make_config, tmp_path):
    config = load_config(make_config(count=2, steps=10))
    on_disk = context_for(config)
    on_disk.cache_folder = tmp_path
    in_memory = context_for(config)
    in_memory.cache_folder = False
    a = finetune_config(config, "jitter", probe_steps=2, ctx=on_disk)
    b = finetune_config(config, "jitter", probe_steps=2, ctx=in_memory)
    assert a == b
    disk = shifted_features(on_disk, "jitter", [0])
    memory = shifted_features(in_memory, "jitter", [0])
    for split in ("train", "val", "test"):
        x, y = disk[split].features, memory[split].features
        assert set(x) == set(y) and all(isinstance(r, RowFile) for r in x.values())
        assert torch.equal(disk[split].labels, memory[split].labels)
        rows = torch.tensor([5, 0, 5, len(y[0]) - 1])
        for block in x:
            assert torch.equal(x[block][rows], y[block][rows])
            assert torch.equal(x[block][3:40], y[block][3:40])
            assert torch.equal(x[block][-1], y[block][-1])
    assert len(list(tmp_path.glob("*.feat"))) >= 3
