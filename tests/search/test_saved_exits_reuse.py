"""The report's fine-tuning subsets start from the exits the search kept (no re-training), and
give the same numbers as when those files are gone and the exits are trained again."""
from __future__ import annotations

import pandas as pd

from dse.api import search
from dse.api._report import front_subsets, trial_config
from dse.cache import cache_dir
from dse.finetune.context import context_for, train_original
from dse.report.data import study_frames
from dse.train.saved_exits import SUFFIX

from .conftest import DATA


def test_subsets_reuse_the_search_exits_and_match_re_training(tmp_path, checkpoint):
    result = search(checkpoint=checkpoint, space=str(DATA / "tiny.yaml"), trials=4,
                    max_drop=None, report=False, out=tmp_path / "study")
    data = study_frames(result.study)
    front = data.front[data.front["num_exits"] > 1].head(2)
    assert len(front) >= 1

    row = front.iloc[0]
    config = trial_config(row["config"], int(row["number"]), data.meta)
    lines: list[str] = []
    original = train_original(config, context_for(config), seed=int(row["proxy_seed"]),
                              log=lines.append)
    assert original.loaded and "loaded from the dse cache" in lines[-1]

    reused: list[str] = []
    kept = front_subsets(front, data.meta, "random", log=reused.append)
    for path in cache_dir("exits").glob(f"*{SUFFIX}"):
        path.unlink()
    retrained: list[str] = []
    again = front_subsets(front, data.meta, "random", log=retrained.append)
    assert any("loaded from the dse cache" in line for line in reused)
    assert not any("trained again" in line for line in reused)
    assert any("trained again" in line for line in retrained)
    assert len(kept) == len(front)
    pd.testing.assert_frame_equal(kept, again)
