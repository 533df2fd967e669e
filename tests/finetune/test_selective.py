"""The selective fine-tuning procedure: independence of exits, the result's bookkeeping, and
an end-to-end run on digits with a quickly trained backbone."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dse.errors import ConfigError
from dse.finetune.context import OriginalModel, ShiftedSplit
from dse.finetune.ops import ExitTrainCost, ops_ratio
from dse.finetune.classifiers import Schedule, classifier_logits, finetune
from dse.finetune.selective import run_selective
from dse.finetune.subsets import parse_pattern, score_subsets


def toy(num_exits: int = 3, n: int = 64, dim: int = 6, k: int = 4, seed: int = 0):
    """Linear classifiers on random features; labels depend on the features."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    classifiers = nn.ModuleList(nn.Linear(dim, k) for _ in range(num_exits))
    w = torch.randn(dim, k, generator=g)

    def split(m: int) -> ShiftedSplit:
        feats = {b: torch.randn(m, dim, generator=g) for b in range(num_exits)}
        labels = (feats[num_exits - 1] @ w).argmax(1)
        return ShiftedSplit(feats, labels)

    costs = [ExitTrainCost(dim * k, dim * k + k, 100 * (b + 1)) for b in range(num_exits)]
    base = OriginalModel(tuple(range(num_exits - 1)), classifiers, tuple(range(num_exits)), costs,
                     [100 * (b + 1) for b in range(num_exits)])
    return base, {"train": split(n), "val": split(n), "test": split(n)}


def test_exits_train_independently():
    base, data = toy()
    x = [data["train"].features[b] for b in base.input_blocks]
    y = data["train"].labels
    sched = Schedule(probe_steps=3, steps=12, lr=0.05, batch_size=16, seed=1)
    every = finetune(base.classifiers, x, y, sched)[12]
    some = finetune(base.classifiers, x, y, sched, trained=[True, False, True])[12]
    for b in (0, 2):
        for p, q in zip(every[b].parameters(), some[b].parameters()):
            assert torch.equal(p, q)
    for p, q in zip(some[1].parameters(), base.classifiers[1].parameters()):
        assert torch.equal(p, q)  # not trained: unchanged
    assert not torch.equal(every[1].weight, base.classifiers[1].weight)


def test_snapshots_and_base_left_untouched():
    base, data = toy()
    before = [p.clone() for p in base.classifiers.parameters()]
    x = [data["train"].features[b] for b in base.input_blocks]
    states = finetune(base.classifiers, x, data["train"].labels,
                      Schedule(probe_steps=2, steps=6, lr=0.05, batch_size=16), snapshots=[2])
    assert set(states) == {2, 6}
    assert not torch.equal(states[2][0].weight, states[6][0].weight)
    assert all(torch.equal(p, q) for p, q in zip(before, base.classifiers.parameters()))


def test_run_selective_bookkeeping():
    base, data = toy(num_exits=4)
    sched = Schedule(probe_steps=2, steps=20, lr=0.05, batch_size=16)
    r = run_selective(base, data, sched, "jitter")
    assert len(r.subset) == 4 and set(r.subset) <= {"F", "B"}
    tuned = finetune(base.classifiers, [data["train"].features[b] for b in range(4)],
                     data["train"].labels, sched)[20]
    test_x = [data["test"].features[b] for b in range(4)]
    l0, l1 = classifier_logits(base.classifiers, test_x), classifier_logits(tuned, test_x)
    y = data["test"].labels.numpy()
    masks = np.stack([parse_pattern(r.subset), np.ones(4, bool), np.zeros(4, bool)])
    expected = 100 * score_subsets(l0, l1, y, masks)
    assert [r.accuracy, r.entire_accuracy, r.baseline_accuracy] == pytest.approx(expected, abs=1e-3)
    assert r.ops_ratio == pytest.approx(ops_ratio(base.costs, parse_pattern(r.subset), 2, 20, 16),
                                        abs=1e-6)
    assert r.exit_ensemble_entire[-1] == pytest.approx(r.entire_accuracy, abs=1e-3)
    assert set(r.to_dict()) >= {"shift", "subset", "accuracy", "entire_accuracy",
                                "baseline_accuracy", "ops_ratio", "best_subset_accuracy"}
    assert r.original_accuracy is None  # no original split given


def test_run_selective_measures_the_original_test_split_too():
    base, data = toy(num_exits=4)
    sched = Schedule(probe_steps=2, steps=20, lr=0.05, batch_size=16)
    # the shifted test split given as the "original": the same three accuracies
    same = run_selective(base, data, sched, "jitter", original=data["test"])
    assert [same.original_accuracy, same.original_entire_accuracy,
            same.original_baseline_accuracy] == [same.accuracy, same.entire_accuracy,
                                                 same.baseline_accuracy]
    # another split: its accuracies, by hand, with the same chosen subset and tuned classifiers
    other = toy(num_exits=4, seed=5)[1]["test"]
    r = run_selective(base, data, sched, "jitter", original=other)
    tuned = finetune(base.classifiers, [data["train"].features[b] for b in range(4)],
                     data["train"].labels, sched)[20]
    x = [other.features[b] for b in range(4)]
    masks = np.stack([parse_pattern(r.subset), np.ones(4, bool), np.zeros(4, bool)])
    expected = 100 * score_subsets(classifier_logits(base.classifiers, x),
                                   classifier_logits(tuned, x), other.labels.numpy(), masks)
    assert [r.original_accuracy, r.original_entire_accuracy,
            r.original_baseline_accuracy] == pytest.approx(expected, abs=1e-3)
    assert r.accuracy == same.accuracy  # the shifted results do not depend on it


def test_schedule_checks():
    with pytest.raises(ConfigError, match="exceeds the fine-tuning schedule"):
        Schedule(probe_steps=20, steps=10, lr=0.01)
    with pytest.raises(ConfigError, match="optimizer"):
        Schedule(probe_steps=1, steps=10, lr=0.01, optimizer="rmsprop")


def test_end_to_end_on_digits(make_config):
    from dse.design import load_config
    from dse.finetune.selective import finetune_config

    config = load_config(make_config(count=3, steps=30))
    r = finetune_config(config, "jitter", probe_steps=3)
    assert r.num_exits == 4 and r.probe_steps == 3 and r.steps == 30
    assert 0.0 < r.ops_ratio <= 1.0 and 0.0 < r.ops_ratio_with_backbone <= 1.0
    assert 0.0 <= r.baseline_accuracy <= 100.0
    again = finetune_config(config, "jitter", probe_steps=3)
    assert again == r, "the procedure is seeded end to end"


def crafted(fixed_by_exit1: int, n: int = 100):
    """2 exits, labels 0: exit 2's probe fixes 90 images; exit 1's probe fixes
    ``fixed_by_exit1`` of the 10 that are left. Scores: {} 0, {2} 0.90, {1, 2} 0.90 + k / n."""
    base = np.zeros((2, n, 2))
    base[1, :, 0] = -1.0                       # exit 2 wrong everywhere, exit 1 neutral
    probe = base.copy()
    probe[1, :90, 0] = 1.0                     # exit 2 fine-tuned: right on 90 images
    probe[0, 90:90 + fixed_by_exit1, 0] = 3.0  # exit 1 fine-tuned: tips a few of the others
    return base, probe, np.zeros(n, dtype=int)


def test_choose_subset_one_se_prefers_the_cheaper_subset_within_noise():
    from dse.finetune.selective import choose_subset
    from dse.finetune.subsets import subset_masks

    masks = subset_masks(2)                    # [], [1], [2], [1, 2]
    costs = np.array([0.0, 10.0, 1.0, 11.0])   # exit 1 is the expensive one
    base, probe, y = crafted(1)                # {1, 2} is 1 image (se 0.01) ahead of {2}
    assert choose_subset(base, probe, y, masks, costs, "best").rule_index == 3
    assert choose_subset(base, probe, y, masks, costs, "one-se").rule_index == 2
    base, probe, y = crafted(5)                # 5 images ahead, se ~0.022: a real difference
    assert choose_subset(base, probe, y, masks, costs, "one-se").rule_index == 3


@pytest.mark.parametrize("selection,score_on,samples", [("one-se", "train+val", 128),
                                                        ("best", "val", 64)])
def test_run_selective_scores_on_the_chosen_splits(selection, score_on, samples):
    base, data = toy(num_exits=4)
    sched = Schedule(probe_steps=2, steps=20, lr=0.05, batch_size=16)
    r = run_selective(base, data, sched, "jitter", selection=selection, score_on=score_on)
    assert (r.selection, r.score_on, r.score_samples) == (selection, score_on, samples)
    probe = finetune(base.classifiers, [data["train"].features[b] for b in range(4)],
                     data["train"].labels, sched, snapshots=[2])[2]
    splits = ["val", "train"] if score_on == "train+val" else ["val"]
    xs = [[data[s].features[b] for b in range(4)] for s in splits]
    l0 = np.concatenate([classifier_logits(base.classifiers, x) for x in xs], 1)
    l1 = np.concatenate([classifier_logits(probe, x) for x in xs], 1)
    y = np.concatenate([data[s].labels.numpy() for s in splits])
    expected = score_subsets(l0, l1, y, parse_pattern(r.subset)[None])[0]
    assert r.probe_accuracy == pytest.approx(100 * expected, abs=1e-3)
    if selection == "best":  # the plain rule: highest val score, then fewest exits
        from dse.finetune.subsets import best_subset, pattern, subset_masks
        masks = subset_masks(4)
        assert r.rule_subset == pattern(masks[best_subset(score_subsets(l0, l1, y, masks),
                                                          masks)])


def test_unknown_selection_and_score_splits_are_config_errors(make_config):
    from dse.design import load_config
    from dse.finetune.selective import finetune_config

    base, data = toy()
    sched = Schedule(probe_steps=2, steps=6, lr=0.05, batch_size=16)
    with pytest.raises(ConfigError, match="selection must be one of budget, one-se, best, got 'top'"):
        run_selective(base, data, sched, "jitter", selection="top")
    with pytest.raises(ConfigError, match="scored on one of train\\+val, val, got 'test'"):
        run_selective(base, data, sched, "jitter", score_on="test")
    config = load_config(make_config(count=2, steps=10))
    with pytest.raises(ConfigError, match="got 'test'"):  # checked before any training
        finetune_config(config, "jitter", score_on="test", ctx=object())
