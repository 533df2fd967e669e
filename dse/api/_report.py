"""A study's report with the selective fine-tuning subsets of its front (``dse report``,
``dse search``): by default under the shift :data:`DEFAULT_SHIFT`, ``none`` for no subsets.

The report (:mod:`dse.report`) draws what it is given; choosing a subset runs fine-tuning, so it
happens here, above both. Each front trial's stored configuration is rebuilt
(:func:`dse.finetune.selective.finetune_config`) on one shared context (dataset, frozen
backbone, shifted features), so the backbone is loaded and the shifted data computed once per
study (and cached on disk per shift and seed, :mod:`dse.finetune.shifted_cache`).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from dse.design import RunConfig, config_from_section
from dse.errors import DseError
from dse.finetune.context import context_for
from dse.finetune.selective import finetune_config
from dse.finetune.shifts import check_shift
from dse.report import ReportOutput, render_frames
from dse.report.data import study_frames
from dse.yamlio import Section

if TYPE_CHECKING:  # heavy: loaded where used (dse search refuses first)
    import pandas as pd

Log = Callable[[str], None]
COLUMNS = ("number", "num_exits", "subset", "accuracy", "entire_accuracy", "baseline_accuracy",
           "ops_ratio", "ops_ratio_with_backbone", "best_subset", "best_subset_accuracy",
           "probe_steps", "steps", "estimated_gap", "estimated_gap_se", "probe_gain",
           "probe_gain_se", "rule_subset", "warning", "original_accuracy",
           "original_entire_accuracy", "original_baseline_accuracy")
#: the shift a report chooses subsets under when none is named (every built-in shift, mixed)
DEFAULT_SHIFT = "random"
#: what turns the subsets off (``--shift none``)
NO_SHIFT = ("none", "off")


def resolve_shift(shift: str | None) -> str | None:
    """The canonical shift name, or None for ``None``/``none``/``off`` (no subsets)."""
    if shift is None or (isinstance(shift, str) and shift.strip().lower() in NO_SHIFT):
        return None
    return check_shift(shift)


def render_study_report(study, out_dir: str | Path, shift: str | None = DEFAULT_SHIFT, *,
                        device: torch.device | str = "cpu", probe_steps: int | None = None,
                        log: Log | None = None,
                        check: tuple[pd.DataFrame, dict] | None = None) -> ReportOutput:
    """Write ``out_dir/report.pdf`` for ``study``; with a ``shift`` (default
    :data:`DEFAULT_SHIFT`; None or ``"none"``: no subsets), first choose the fine-tuning
    subset of every front configuration (``finetune_<shift>.csv`` and columns of
    ``pareto.csv``); ``check``: the rows and summary of :func:`dse.api._check.front_check`."""
    shift = resolve_shift(shift)  # fail before any work
    data = study_frames(study)
    subsets = None
    if shift is not None:
        subsets = front_subsets(data.front, data.meta, shift, probe_steps=probe_steps,
                                device=device, log=log)
    # no log: the caller says where the report went (dse report prints it once, on stdout)
    return render_frames(data, out_dir, shift, subsets=subsets, check=check)


def trial_config(config: dict, number: int, meta: dict[str, Any]) -> RunConfig:
    """A trial's stored ``config`` user attr -> RunConfig (study attrs fill a missing checkpoint)."""
    raw = {k: v for k, v in config.items() if k != "dse_config"}
    cfg = config_from_section(Section(raw, f"trial {number} config"))
    if cfg.checkpoint is None and meta.get("checkpoint"):
        cfg = replace(cfg, checkpoint=str(meta["checkpoint"]))
    return cfg


def front_subsets(front: pd.DataFrame, meta: dict[str, Any], shift: str, *,
                  probe_steps: int | None = None, device: torch.device | str = "cpu",
                  log: Log | None = None) -> pd.DataFrame:
    """One row per front configuration with early exits: the chosen subset and its numbers.

    ``front`` and ``meta`` are a study's front trials and study attributes
    (:class:`dse.report.data.ReportData`). Configurations without early exits, or whose stored
    config cannot be rebuilt, are skipped with a line in ``log``.
    """
    import pandas as pd
    shift = check_shift(shift)
    rows, ctx = [], None
    done: dict[str, tuple[int, Any]] = {}  # fine-tuning key -> (trial, result)
    for k, (_, r) in enumerate(front.iterrows()):
        number = int(r["number"])
        _say(log, f"fine-tuning subsets under shift {shift}: trial {number} "
                  f"({k + 1} of {len(front)})")
        if not isinstance(r.get("config"), dict):
            _say(log, f"trial {number}: no stored configuration, no fine-tuning subset")
            continue
        try:
            cfg = trial_config(r["config"], number, meta)
            if not (cfg.exits.blocks or cfg.exits.count):
                _say(log, f"trial {number}: no early exit, nothing to choose")
                continue
            seed = r.get("proxy_seed")
            seed = None if seed is None or seed != seed else int(seed)
            key = finetune_key(cfg, seed)
            source = done[key][0] if key in done else None
            if source is None:
                ctx = ctx if ctx is not None else context_for(cfg, device=device, log=log)
                done[key] = (number, finetune_config(cfg, shift, probe_steps=probe_steps,
                                                     ctx=ctx, proxy_seed=seed, log=log))
        except DseError as exc:
            _say(log, f"trial {number}: no fine-tuning subset ({exc})")
            continue
        d = done[key][1].to_dict()
        rows.append({"number": number, **{k: d[k] for k in COLUMNS if k in d}})
        _say(log, subset_line(number, d, source))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def subset_line(number: int, d: dict[str, Any], source: int | None = None) -> str:
    """The progress line of one front configuration's fine-tuning result ``d``. A result reused
    from trial ``source`` (same exits and training, other thresholds) says so instead of
    repeating that trial's warning, which the log already holds once."""
    line = (f"trial {number}: fine-tune {d['subset']} -> {d['accuracy']:.2f}% "
            f"(entire {d['entire_accuracy']:.2f}%, ops x{d['ops_ratio']:.2f})")
    if source is not None:
        return line + (f"; same exits and training as trial {source} (only thresholds "
                       "differ): its result" + (", and its warning" if d["warning"] else ""))
    return line + (f"; warning: {d['warning']}" if d["warning"] else "")


def finetune_key(cfg: RunConfig, proxy_seed: int | None) -> str:
    """What a fine-tuning result depends on: the exits, their training, the seeds and the data;
    not the thresholds (selective fine-tuning scores the last-exit ensemble, which uses none),
    so front configurations that differ only in thresholds share one fine-tuning run."""
    return repr((cfg.backbone, cfg.checkpoint, cfg.dataset, cfg.input_size, cfg.exits,
                 cfg.training, cfg.seed, proxy_seed))


def _say(log: Log | None, msg: str) -> None:
    if log is not None:
        log(msg)
