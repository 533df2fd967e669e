"""Features streamed from the frozen backbone per batch: the numbers of a float32 cache, the
automatic choice between cache, subset and stream."""
from __future__ import annotations

import torch

from dse.train.cache_budget import BudgetChoice
from dse.train.proxy import exit_outputs, train_branches
from dse.train.streamed import MIN_SUBSET, StreamedFeatures, choose_source, describe_choice


def test_streamed_batches_equal_a_float32_cache(backbone, digits, cache32):
    source = StreamedFeatures(backbone, digits)
    assert source.shapes == cache32.shapes and source.num_classes == cache32.num_classes
    assert source.num_samples("val") == cache32.num_samples("val")
    idx = torch.tensor([9, 0, 301, 9])
    for a, b in zip(source.batch("val", idx, [0, 3]), cache32.batch("val", idx, [0, 3])):
        for x, y in zip(a, b) if isinstance(a, list) else [(a, b)]:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(source.final_logits("test"), cache32.final_logits("test"),
                               rtol=1e-5, atol=1e-5)
    assert torch.equal(source.labels("test"), cache32.labels("test"))
    runs = [train_branches(s, [1, 3], "bnpool", steps=3, batch_size=16, seed=2)
            for s in (source, cache32)]
    torch.testing.assert_close(torch.tensor(runs[0].losses), torch.tensor(runs[1].losses),
                               rtol=1e-4, atol=1e-5)
    out = exit_outputs(source, [1, 3], runs[0].branches, "val", batch_size=100)
    assert out.logits.shape == (3, 360, 10)


def test_the_budget_picks_cache_subset_or_stream():
    sizes = [45_000, 5_000, 10_000]
    gib = 2**30
    assert choose_source(BudgetChoice(None, gib, gib, 2 * gib), sizes) == "cache"
    assert choose_source(BudgetChoice(MIN_SUBSET, gib, 9 * gib, gib), sizes) == "subset"
    low = BudgetChoice(MIN_SUBSET - 1, gib, 9 * gib, gib)
    assert choose_source(low, sizes) == "stream"
    assert "streaming features from the frozen backbone" in describe_choice(low, "stream")
    assert choose_source(BudgetChoice(0, 0, 9 * gib, 1), sizes) == "stream"
    # splits smaller than MIN_SUBSET: a subset of the largest split's size is the whole data
    assert choose_source(BudgetChoice(300, 1, 2, 1), [300, 40, 40]) == "subset"
