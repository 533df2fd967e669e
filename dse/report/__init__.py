"""Reports: a study's Pareto front, costs, exits, sweeps, importances, front table and the
selected fine-tuning subsets, as one PDF (``reports/<study>/report.pdf``).

    from dse.report import write_report
    write_report(study, "reports/demo", shift="jitter")

:mod:`~dse.report.data` turns the study into DataFrames, :mod:`~dse.report.plots` and
:mod:`~dse.report.pages` turn those into Figures, :mod:`~dse.report.pdf` writes them.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from matplotlib import rc_context
from matplotlib.figure import Figure

from dse.report.data import ReportData, pareto_mask, study_frames
from dse.report.plots import SECTIONS, STYLE

__all__ = ["SECTIONS", "ReportData", "ReportOutput", "build_pages", "pareto_mask", "render_report",
           "study_frames", "write_report"]


def build_pages(data: ReportData, subsets: pd.DataFrame | None = None, shift: str | None = None,
                *, now: _dt.datetime | None = None, subsets_note: str = "") -> list[Figure]:
    """Every page of the report, in order (sections 1-8 of the issue)."""
    from dse import __version__
    from dse.report import pages, plots
    from dse.report.tables import front_table

    with rc_context(STYLE):
        figs = [pages.title_page(data, __version__, now=now, shift=shift),
                plots.pareto_latency(data), plots.accuracy_vs_cost(data)]
        figs += plots.paged(plots.exit_profiles, data, data.front)
        figs += plots.paged(plots.threshold_curves, data, data.front)
        figs.append(plots.importances(data))
        figs += pages.front_table_pages(front_table(data, subsets))
        figs += pages.finetune_pages(subsets, shift, reason=subsets_note)
    return figs


@dataclass
class ReportOutput:
    """What :func:`render_report` wrote."""

    path: Path                          #: report.pdf
    pages: int
    data: ReportData
    subsets: pd.DataFrame | None = None  #: one row per front configuration (with ``shift``)
    files: list[Path] = field(default_factory=list)  #: CSVs written or updated


def render_report(study, out_dir: str | Path, shift: str | None = None, *,
                  device: torch.device | str = "cpu", probe_steps: int | None = None,
                  log: Callable[[str], None] | None = None,
                  now: _dt.datetime | None = None) -> ReportOutput:
    """Write ``out_dir/report.pdf`` for ``study`` (an optuna Study); with ``shift``, also choose
    the fine-tuning subset of every front configuration (``finetune_<shift>.csv`` and columns of
    ``pareto.csv``)."""
    from dse.report import pdf

    if shift is not None:
        from dse.finetune.shifts import check_shift

        shift = check_shift(shift)  # fail before any work
    data = study_frames(study)
    subsets, note = None, ""
    if shift is not None:
        from dse.report.subsets import front_subsets

        subsets = front_subsets(data, shift, probe_steps=probe_steps, device=device, log=log)
        if subsets.empty:
            note = (f"Shift '{shift}': no front configuration with early exits could be "
                    "fine-tuned (see the log).")
    figures = build_pages(data, subsets, shift, now=now, subsets_note=note)
    out = Path(out_dir) / "report.pdf"
    pages = pdf.write_pdf(out, figures, title=f"dse report: {data.study_name}",
                          subject="early-exit design-space exploration")
    files = []
    if subsets is not None and not subsets.empty:
        files = pdf.write_subsets(out_dir, subsets, shift)
    if log is not None:
        log(f"wrote {out} ({pages} pages)")
    return ReportOutput(out, pages, data, subsets, files)


def write_report(study, out_dir: str | Path, shift: str | None = None, **kwargs) -> Path:
    """:func:`render_report` and return the PDF's path (what ``dse search`` calls)."""
    return render_report(study, out_dir, shift, **kwargs).path
