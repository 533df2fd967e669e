"""The report writer: the only code in :mod:`dse.report` that touches the disk.

``report.pdf`` is written page by page with matplotlib's ``PdfPages`` into a temporary file and
renamed into place, so a reader never opens a half-written report. Fine-tuning subsets go to
``finetune_<shift>.csv`` and, when the search's ``pareto.csv`` is there, into extra columns of
it (matched on the trial number).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence


from dse.report.plots import STYLE

if TYPE_CHECKING:  # heavy: loaded where used (dse search refuses first)
    import pandas as pd
    from matplotlib.figure import Figure

#: pareto.csv columns added for the fine-tuning subsets (prefix + result column)
SUBSET_COLUMNS = ("subset", "accuracy", "entire_accuracy", "baseline_accuracy", "ops_ratio",
                  "best_subset", "best_subset_accuracy", "estimated_gap", "estimated_gap_se",
                  "warning")
_NUMBER_COLUMNS = ("number", "trial", "trial_number")


def write_pdf(path: str | os.PathLike, figures: Sequence[Figure], *, title: str = "",
              subject: str = "") -> int:
    """Write ``figures`` as the pages of ``path`` (atomically); returns the page count."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_pdf import PdfPages
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    meta = {"Title": title, "Subject": subject, "Creator": "dse"}
    try:
        with rc_context(STYLE), PdfPages(tmp, metadata=meta) as pdf:
            for fig in figures:
                pdf.savefig(fig)
            pages = pdf.get_pagecount()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return pages


def write_png(path: str | os.PathLike, figure: Figure, dpi: int = 100) -> Path:
    """One page as a PNG (to look at a page without a PDF viewer)."""
    from matplotlib import rc_context
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rc_context(STYLE):
        figure.savefig(path, dpi=dpi)
    return path


def write_subsets(out_dir: str | os.PathLike, subsets: pd.DataFrame, shift: str) -> list[Path]:
    """``finetune_<shift>.csv``, and the subset columns merged into ``pareto.csv`` if present."""
    import pandas as pd
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"finetune_{shift}.csv"]
    subsets.to_csv(written[0], index=False)
    pareto = out_dir / "pareto.csv"
    if pareto.is_file():
        front = pd.read_csv(pareto)
        key = next((c for c in _NUMBER_COLUMNS if c in front.columns), None)
        if key is not None:
            extra = subsets[["number", *[c for c in SUBSET_COLUMNS if c in subsets]]].rename(
                columns={c: f"finetune_{c}" for c in SUBSET_COLUMNS})
            extra.insert(1, "finetune_shift", shift)
            front = front.drop(columns=[c for c in front.columns if c.startswith("finetune_")])
            merged = front.merge(extra.rename(columns={"number": key}), on=key, how="left")
            tmp = pareto.with_name(f".{pareto.name}.tmp{os.getpid()}")
            merged.to_csv(tmp, index=False)
            os.replace(tmp, pareto)
            written.append(pareto)
    return written
