"""Reports: a study's Pareto front, costs, exits, sweeps, importances, front table and the
selected fine-tuning subsets, as one PDF (``reports/<study>/report.pdf``).

    from dse.report import write_report
    write_report(study, "reports/demo")

:mod:`~dse.report.data` turns the study into DataFrames, :mod:`~dse.report.plots` and
:mod:`~dse.report.pages` turn those into Figures, :mod:`~dse.report.pdf` writes them. A report
runs nothing: the fine-tuning subsets of a deployment shift are computed by the caller
(:mod:`dse.api._report`) and passed in as a DataFrame.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable


from dse import __version__
from dse.report import pages, pdf, plots
from dse.report.check import check_pages
from dse.report.data import ReportData, pareto_mask, study_frames
from dse.report.plots import SECTIONS, STYLE
from dse.report.tables import front_table

if TYPE_CHECKING:  # heavy: loaded where used (dse search refuses first)
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["SECTIONS", "ReportData", "ReportOutput", "build_pages", "pareto_mask", "render_frames",
           "render_report", "study_frames", "write_report"]


def build_pages(data: ReportData, subsets: pd.DataFrame | None = None, shift: str | None = None,
                *, now: _dt.datetime | None = None, subsets_note: str = "",
                check: tuple[pd.DataFrame, dict] | None = None) -> list[Figure]:
    """Every page of the report, in order (sections 1-8 of the issue; ``check``: the rows and
    summary of ``dse report --check``, a last page)."""
    from matplotlib import rc_context
    with rc_context(STYLE):
        figs = [pages.title_page(data, __version__, now=now, shift=shift),
                plots.pareto_latency(data), plots.accuracy_vs_cost(data)]
        figs += plots.paged(plots.exit_profiles, data, data.front)
        figs += plots.paged(plots.threshold_curves, data, data.front)
        figs.append(plots.importances(data))
        figs += pages.front_table_pages(front_table(data, subsets))
        figs += pages.finetune_pages(subsets, shift, reason=subsets_note)
        figs += check_pages(*check) if check is not None else []
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
                  subsets: pd.DataFrame | None = None, log: Callable[[str], None] | None = None,
                  now: _dt.datetime | None = None) -> ReportOutput:
    """Write ``out_dir/report.pdf`` for ``study`` (an optuna Study); see :func:`render_frames`."""
    return render_frames(study_frames(study), out_dir, shift, subsets=subsets, log=log, now=now)


def render_frames(data: ReportData, out_dir: str | Path, shift: str | None = None, *,
                  subsets: pd.DataFrame | None = None, log: Callable[[str], None] | None = None,
                  now: _dt.datetime | None = None,
                  check: tuple[pd.DataFrame, dict] | None = None) -> ReportOutput:
    """Write ``out_dir/report.pdf`` from a study read by :func:`study_frames`.

    ``subsets``: the fine-tuning subset chosen for every front configuration under the
    deployment ``shift`` (one row per configuration, columns of
    :data:`dse.api._report.COLUMNS`); also written to ``finetune_<shift>.csv`` and as
    columns of ``pareto.csv``. An empty frame says that no configuration could be fine-tuned.
    """
    note = ""
    if shift is not None and subsets is not None and subsets.empty:
        note = (f"Shift '{shift}': no front configuration with early exits could be "
                "fine-tuned (see the log).")
    figures = build_pages(data, subsets, shift, now=now, subsets_note=note, check=check)
    out = Path(out_dir) / "report.pdf"
    n_pages = pdf.write_pdf(out, figures, title=f"dse report: {data.study_name}",
                            subject="early-exit design-space exploration")
    files = []
    if subsets is not None and not subsets.empty:
        files = pdf.write_subsets(out_dir, subsets, shift)
    if log is not None:
        log(f"wrote {out} ({n_pages} pages)")
    return ReportOutput(out, n_pages, data, subsets, files)


def write_report(study, out_dir: str | Path, shift: str | None = None, **kwargs) -> Path:
    """:func:`render_report` and return the PDF's path."""
    return render_report(study, out_dir, shift, **kwargs).path
