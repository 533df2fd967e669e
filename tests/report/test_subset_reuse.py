"""Front configurations that differ only in thresholds share one fine-tuning run."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

import dse.api._report as report_api
from dse.design import ExitDesign, ExitPolicy, LossSpec, RunConfig, TrainingSpec

BASE = RunConfig(
    backbone="digits-resnet", dataset="digits", checkpoint="/ck/d.pt",
    exits=ExitDesign(2, blocks=(1, 3), branch="pool"),
    training=TrainingSpec(LossSpec("ce", {}), steps=20), policy=ExitPolicy("maxprob", (0.5,)))


def test_key_ignores_thresholds_only():
    key = report_api.finetune_key(BASE, 7)
    assert report_api.finetune_key(replace(BASE, policy=ExitPolicy("maxprob", (0.9,))), 7) == key
    others = [replace(BASE, exits=ExitDesign(2, blocks=(1, 4), branch="pool")),
              replace(BASE, training=replace(BASE.training, steps=40)),
              replace(BASE, seed=1), replace(BASE, checkpoint="/ck/other.pt")]
    assert all(report_api.finetune_key(c, 7) != key for c in others)
    assert report_api.finetune_key(BASE, 8) != key


def test_front_fine_tunes_each_distinct_design_once(monkeypatch):
    calls = []

    class Result:
        def __init__(self, n):
            self.n = n

        def to_dict(self):
            return {"subset": "FB", "accuracy": 90.0 + self.n, "entire_accuracy": 91.0,
                    "ops_ratio": 0.5, "warning": None}

    def fake_finetune(cfg, shift, **kw):
        calls.append(cfg.policy.thresholds)
        return Result(len(calls))

    monkeypatch.setattr(report_api, "finetune_config", fake_finetune)
    monkeypatch.setattr(report_api, "context_for", lambda cfg, **kw: object())
    configs = [BASE, replace(BASE, policy=ExitPolicy("maxprob", (0.8,))),
               replace(BASE, exits=ExitDesign(2, blocks=(1, 4), branch="pool"))]
    front = pd.DataFrame({"number": [3, 5, 9], "config": [c.to_dict() for c in configs],
                          "proxy_seed": [11, 11, 11]})
    lines = []
    rows = report_api.front_subsets(front, {}, "random", log=lines.append)
    assert calls == [(0.5,), (0.5,)]  # trial 5 reuses trial 3's run; trial 9 has its own
    assert list(rows["number"]) == [3, 5, 9]
    assert list(rows["accuracy"]) == [91.0, 91.0, 92.0]
    reused = [line for line in lines if line.startswith("trial 5: fine-tune")]
    assert len(reused) == 1 and "same exits and training as trial 3" in reused[0]


def test_a_reused_result_says_whose_it_is_and_does_not_repeat_the_warning():
    d = {"subset": "FFF", "accuracy": 85.24, "entire_accuracy": 85.24, "ops_ratio": 1.0,
         "warning": "the subset rule budget picked BFF, ...: re-training every exit"}
    first = report_api.subset_line(93, d)
    assert first == ("trial 93: fine-tune FFF -> 85.24% (entire 85.24%, ops x1.00); "
                     "warning: the subset rule budget picked BFF, ...: re-training every exit")
    again = report_api.subset_line(96, d, source=93)
    assert again == ("trial 96: fine-tune FFF -> 85.24% (entire 85.24%, ops x1.00); same exits "
                     "and training as trial 93 (only thresholds differ): its result, and its "
                     "warning")
    quiet = report_api.subset_line(96, {**d, "warning": None}, source=93)
    assert quiet.endswith("as trial 93 (only thresholds differ): its result")
