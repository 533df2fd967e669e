"""The search's proxy-trained exits kept in the dse cache: loaded instead of re-trained, with
re-training as the fallback (missing, damaged or foreign file), and the same weights either way."""
from __future__ import annotations

import pytest
import torch

from dse.cache import cache_dir
from dse.design import Design, ExitDesign, LossSpec, TrainingSpec
from dse.train import saved_exits
from dse.train.features import build_feature_cache

DESIGN = Design(exits=ExitDesign(2, branch="convx", branch_params=(("depth", 1), ("width", 8))),
                training=TrainingSpec(LossSpec("kd", {}), steps=12, lr=0.01, batch_size=32))
BLOCKS = (1, 3)
COSTS = [0.3, 0.6, 1.0]


@pytest.fixture(scope="module")
def disk_cache(backbone, digits, tmp_path_factory):
    """The train split's features at two blocks, on disk (so it has a key); built once."""
    return build_feature_cache(backbone, digits, BLOCKS, splits=("train",),
                               cache_dir=tmp_path_factory.mktemp("features"))


def state(result):
    return {k: v.clone() for k, v in result.branches.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train(source, design=DESIGN, seed=7):
    return saved_exits.trained_exits(source, design, BLOCKS, 10, seed=seed, exit_costs=COSTS)


def files():
    return sorted(cache_dir("exits").glob(f"*{saved_exits.SUFFIX}"))


def test_trained_once_then_loaded_with_the_same_weights_and_losses(disk_cache):
    first, loaded = train(disk_cache)
    assert not loaded and len(files()) == 1
    again, loaded = train(disk_cache)
    assert loaded and len(files()) == 1
    assert same(state(first), state(again))
    assert again.losses == first.losses and again.steps_done == 12
    assert again.exit_blocks == BLOCKS and not any(br.training for br in again.branches)


def test_missing_file_is_trained_again_to_the_same_weights(disk_cache):
    kept, _ = train(disk_cache)
    for path in files():
        path.unlink()
    retrained, loaded = train(disk_cache)
    assert not loaded and same(state(kept), state(retrained))
    assert retrained.losses == kept.losses


def test_damaged_file_falls_back_to_training(disk_cache):
    kept, _ = train(disk_cache)
    (path,) = files()
    path.write_bytes(b"not a torch file")
    retrained, loaded = train(disk_cache)
    assert not loaded and same(state(kept), state(retrained))
    assert train(disk_cache)[1]  # the re-training wrote a good file over it


def test_every_training_input_changes_the_key(disk_cache):
    key = saved_exits.exits_key(disk_cache, DESIGN, BLOCKS, 10, 7, COSTS)
    others = [
        (DESIGN, (1, 4), 7, COSTS),
        (DESIGN, BLOCKS, 8, COSTS),
        (DESIGN, BLOCKS, 7, [0.3, 0.7, 1.0]),
        (Design(exits=DESIGN.exits, training=TrainingSpec(LossSpec("ce", {}), steps=12, lr=0.01,
                                                          batch_size=32)), BLOCKS, 7, COSTS),
        (Design(exits=DESIGN.exits, training=TrainingSpec(LossSpec("kd", {}), steps=13, lr=0.01,
                                                          batch_size=32)), BLOCKS, 7, COSTS),
        (Design(exits=ExitDesign(2, branch="convx", branch_params=(("depth", 2), ("width", 8))),
                training=DESIGN.training), BLOCKS, 7, COSTS),
    ]
    keys = {saved_exits.exits_key(disk_cache, d, b, 10, s, c) for d, b, s, c in others}
    assert key not in keys and len(keys) == len(others)
    # the thresholds and the criterion are not training inputs
    assert saved_exits.exits_key(disk_cache, DESIGN.with_thresholds((0.6,)), BLOCKS, 10, 7,
                                 COSTS) == key


def test_other_features_never_load_these_exits(disk_cache, backbone, digits, tmp_path):
    train(disk_cache)
    other = build_feature_cache(backbone, digits, BLOCKS, splits=("train",), dtype=torch.float32,
                                cache_dir=tmp_path)
    assert not train(other)[1]


def test_memory_only_features_keep_nothing(cache32):
    result, loaded = train(cache32)
    assert not loaded and files() == [] and result.steps_done == 12
