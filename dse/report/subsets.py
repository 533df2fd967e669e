"""Selective fine-tuning subsets for every configuration on a study's Pareto front.

Each front trial's stored configuration is rebuilt (:func:`dse.finetune.selective.finetune_config`)
on one shared context (dataset, frozen backbone, shifted features), so the backbone is loaded
and the shifted data computed once per study.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
import torch

from dse.errors import DseError
from dse.report.data import ReportData

Log = Callable[[str], None]
COLUMNS = ("number", "num_exits", "subset", "accuracy", "entire_accuracy", "baseline_accuracy",
           "ops_ratio", "ops_ratio_with_backbone", "best_subset", "best_subset_accuracy",
           "probe_steps", "steps")


def trial_config(config: dict, number: int, meta: dict):
    """A trial's stored ``config`` user attr -> RunConfig (study attrs fill a missing checkpoint)."""
    from dataclasses import replace

    from dse.config import config_from_section
    from dse.yamlio import Section

    raw = {k: v for k, v in config.items() if k != "dse_config"}
    cfg = config_from_section(Section(raw, f"trial {number} config"))
    if cfg.checkpoint is None and meta.get("checkpoint"):
        cfg = replace(cfg, checkpoint=str(meta["checkpoint"]))
    return cfg


def front_subsets(data: ReportData, shift: str, *, probe_steps: int | None = None,
                  device: torch.device | str = "cpu", log: Log | None = None) -> pd.DataFrame:
    """One row per front configuration with early exits: the chosen subset and its numbers.

    Configurations without early exits, or whose stored config cannot be rebuilt, are skipped
    with a line in ``log``.
    """
    from dse.finetune.context import context_for
    from dse.finetune.selective import finetune_config
    from dse.finetune.shifts import check_shift

    shift = check_shift(shift)
    rows, ctx = [], None
    for _, r in data.front.iterrows():
        number = int(r["number"])
        if not isinstance(r.get("config"), dict):
            _say(log, f"trial {number}: no stored configuration, no fine-tuning subset")
            continue
        try:
            cfg = trial_config(r["config"], number, data.meta)
            if not (cfg.exits.blocks or cfg.exits.count):
                _say(log, f"trial {number}: no early exit, nothing to choose")
                continue
            ctx = ctx if ctx is not None else context_for(cfg, device=device, log=log)
            seed = r.get("proxy_seed")
            result = finetune_config(cfg, shift, probe_steps=probe_steps, ctx=ctx,
                                     proxy_seed=None if seed is None or seed != seed else int(seed))
        except DseError as exc:
            _say(log, f"trial {number}: no fine-tuning subset ({exc})")
            continue
        d = result.to_dict()
        rows.append({"number": number, **{k: d[k] for k in COLUMNS if k in d}})
        _say(log, f"trial {number}: fine-tune {d['subset']} -> {d['accuracy']:.2f}% "
                  f"(entire {d['entire_accuracy']:.2f}%, ops x{d['ops_ratio']:.2f})")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _say(log: Log | None, msg: str) -> None:
    if log is not None:
        log(msg)
