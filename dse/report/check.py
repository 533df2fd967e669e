"""The report's check page (``dse report --check K``): the search's proxy numbers against full
training of the K best front configurations.

Takes the rows and summary of :func:`dse.api._check.check_trials` (accuracy in percent,
latency in ms) and returns Figures; touches no file.
"""
from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np

from dse.report import plots
from dse.report.pages import draw_table
from dse.report.plots import chunks, page

if TYPE_CHECKING:  # heavy: loaded where used (dse search refuses first)
    import pandas as pd
    from matplotlib.figure import Figure

#: the page's section title
TITLE = "Proxy check: search numbers vs full training"
ROWS_PER_CHECK_PAGE = 8


def _num(value: Any, fmt: str = ".2f") -> str:
    return "-" if value is None or value != value else format(float(value), fmt)


def check_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per checked configuration: proxy and fully trained accuracy and latency."""
    import pandas as pd
    return pd.DataFrame({
        "Trial": [f"#{int(n)}" for n in rows["number"]],
        "Proxy front": ["yes" if f else "no" for f in rows["on_front"]],
        "Proxy val\nacc. (%)": [_num(v) for v in rows["proxy_accuracy"]],
        "Full val\nacc. (%)": [_num(v) for v in rows["full_val_accuracy"]],
        "Full test\nacc. (%)": [_num(v) for v in rows["full_test_accuracy"]],
        "Proxy latency\n(ms)": [_num(v, ".4g") for v in rows["proxy_latency_ms"]],
        "Full test\nlatency (ms)": [_num(v, ".4g") for v in rows["full_test_latency_ms"]],
    })


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The comparison in words: rank agreement, front kept, seed noise, how it was trained."""
    noise = summary.get("seed_noise") or {}
    if noise.get("test_accuracy_mean_abs_diff") is not None:
        seeds = (f"seed noise: two seeds' test accuracy differ by "
                 f"{noise['test_accuracy_mean_abs_diff']:.2f} points on average "
                 f"(max {noise['test_accuracy_max_abs_diff']:.2f})")
    else:
        seeds = "seed noise: not measured (one seed)"
    kept = summary.get("front_kept")
    return [
        f"Spearman {_num(summary.get('spearman'), '.3f')}, Kendall "
        f"{_num(summary.get('kendall'), '.3f')} (proxy val accuracy vs full-training test "
        f"accuracy); front kept: {_num(None if kept is None else 100 * kept, '.0f')} % of the "
        f"checked proxy-front configurations stay non-dominated; {seeds}.",
        f"Full training: {summary.get('epochs')} epochs, frozen backbone, the trial's own "
        f"thresholds ({summary.get('thresholds')}); latency = the profile's per-exit latency "
        "weighted by the exit fractions after full training.",
    ]


def _scatter(ax, rows: pd.DataFrame) -> None:
    colors = [plots.FRONT_COLOR if f else plots.TRIAL_COLOR for f in rows["on_front"]]
    x, y = rows["proxy_accuracy"].to_numpy(float), rows["full_test_accuracy"].to_numpy(float)
    ax.scatter(x, y, c=colors, s=40, zorder=3)
    for xi, yi, n in zip(x, y, rows["number"]):
        ax.annotate(f"#{int(n)}", (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=9)
    lo, hi = float(np.nanmin([x.min(), y.min()])), float(np.nanmax([x.max(), y.max()]))
    pad = max(0.5, 0.05 * (hi - lo))
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color=plots.GREY, lw=1, ls="--")
    ax.set_xlabel("Proxy val accuracy (%)")
    ax.set_ylabel("Full-training test accuracy (%)")


def _front(ax, rows: pd.DataFrame) -> None:
    for on, color, label in ((True, plots.FRONT_COLOR, "proxy front"),
                             (False, plots.TRIAL_COLOR, "other")):
        part = rows[rows["on_front"] == on]
        if not part.empty:
            ax.scatter(part["full_test_latency_ms"], part["full_test_accuracy"], c=color, s=40,
                       label=label, zorder=3)
    ax.set_xlabel("Expected latency after full training (ms)")
    ax.set_ylabel("Full-training test accuracy (%)")
    ax.legend(loc="lower right", frameon=False)


def check_pages(rows: pd.DataFrame | None, summary: dict[str, Any] | None) -> list[Figure]:
    """The check's charts, summary and table (no page when nothing was checked)."""
    if rows is None or rows.empty or not summary:
        return []
    out = []
    for k, part in enumerate(chunks(rows, ROWS_PER_CHECK_PAGE)):
        fig = page(TITLE, f"{len(rows)} configuration(s) fully trained"
                   + (f" (part {k + 1})" if len(rows) > ROWS_PER_CHECK_PAGE else ""))
        _scatter(fig.add_axes([0.07, 0.55, 0.38, 0.32]), rows)
        _front(fig.add_axes([0.57, 0.55, 0.38, 0.32]), rows)
        text = "\n".join(line for s in summary_lines(summary) for line in textwrap.wrap(s, 140))
        fig.text(0.5, 0.44, text, ha="center", va="center", fontsize=10, color="#333333")
        draw_table(fig.add_axes([0.05, 0.03, 0.9, 0.36]), check_table(part), 10, row_height=0.1)
        out.append(fig)
    return out
