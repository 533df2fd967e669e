"""Text and table pages of the report (title page, front table, fine-tuning subsets).

Like :mod:`dse.report.plots`, every function returns a matplotlib Figure and touches no file.
"""
from __future__ import annotations

import datetime as _dt
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np

from dse.cost.profiles import error_line, load_profile
from dse.errors import DseError
from dse.report.data import ReportData
from dse.report import plots
from dse.report.plots import chunks, page
from dse.report.tables import counts_line, finetune_table, finetune_warnings

if TYPE_CHECKING:  # heavy: loaded where used (dse search refuses first)
    import pandas as pd
    from matplotlib.figure import Figure

ROWS_PER_TABLE_PAGE = 14
ROWS_PER_FINETUNE_PAGE = 7


def _fmt(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}"
    return f"{value}{unit}"


def _space_lines(space: Any, limit: int = 9, width: int = 95) -> list[str]:
    """A search space dict as short 'key: value' lines (nested keys dotted)."""
    if not isinstance(space, dict) or not space:
        return ["(not recorded)"]
    flat: list[str] = []

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node and len(flat) < 200:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            text = ", ".join(map(str, node)) if isinstance(node, (list, tuple)) else str(node)
            flat.append(textwrap.shorten(f"{prefix}: {text}", width, placeholder=" ..."))

    walk("", space)
    if len(flat) > limit:
        flat = flat[:limit - 1] + [f"... and {len(flat) - limit + 1} more settings"]
    return flat


def title_page(data: ReportData, version: str, now: _dt.datetime | None = None,
               shift: str | None = None) -> Figure:
    """Study, profile and runtime, backbone, dataset, search space, trial counts, date, version."""
    m = data.meta
    now = now or _dt.datetime.now()
    fig = page("title")
    fig.text(0.5, 0.89, f"Study {data.study_name}", ha="center", fontsize=20)
    objectives = ", ".join(data.objectives)
    constraints = []
    if m.get("budget_ms") is not None:
        constraints.append(f"expected latency <= {m['budget_ms']:g} ms")
    if m.get("max_drop") is not None:
        constraints.append(f"accuracy drop <= {m['max_drop']:g} points vs the backbone")
    ckpt = m.get("checkpoint")
    dataset = f"{m.get('dataset', '?')}"
    if m.get("input_size"):
        dataset += (f" ({m.get('in_channels', '?')}x{m['input_size']}x{m['input_size']}, "
                    f"{m.get('num_classes', '?')} classes)")
    bb_acc = data.backbone_accuracy
    backbone = f"{m.get('backbone', '?')}"
    if bb_acc is not None:
        backbone += (f"  -  alone: {bb_acc:.2f}% val accuracy, "
                     f"{_fmt(m.get('backbone_latency_ms'), ' ms')}, "
                     f"{_fmt(_mega(m.get('backbone_macs')), ' M MACs')}")
    rows = [
        ("Hardware profile", f"{m.get('profile', '?')}"
                             + (f"  (runtime {m['runtime']})" if m.get("runtime") else "")
                             + (f", batch {m['batch']}" if m.get("batch") else "")),
        ("Latency model", textwrap.shorten(_model_error(m), 95, placeholder=" ...")),
        ("Backbone", backbone),
        ("Weights", textwrap.shorten(str(ckpt), 90, placeholder=" ...") if ckpt else
         "trained by dse (cached)"),
        ("Dataset", dataset),
        ("Objectives", objectives + "  (accuracy maximised, costs minimised)"),
        ("Constraints", "; ".join(constraints) or "none"),
        ("Trials", counts_line(data)),
        ("Fine-tuning shift", shift or "none (--shift none)"),
        ("Search space", m.get("space_file") or "-"),
    ]
    y = 0.80
    for label, value in rows:
        fig.text(0.08, y, label, fontsize=13, fontweight="bold", va="top")
        fig.text(0.30, y, value, fontsize=13, va="top")
        y -= 0.052
    for line in _space_lines(m.get("space"), limit=max(1, int((y - 0.07) / 0.032))):
        fig.text(0.30, y, line, fontsize=10.5, va="top", family="monospace")
        y -= 0.032
    stamp = (f"Generated {now:%Y-%m-%d %H:%M} by dse {version}; study created "
             f"{m.get('created', '?')} with dse {m.get('dse_version', '?')}")
    fig.text(0.5, 0.035, stamp, ha="center", fontsize=10, color="#555555")
    return fig


def _model_error(meta: dict) -> str:
    """The latency model's error on the chosen profile's published rows (dse.cost.published)."""
    name = meta.get("profile_path") or meta.get("profile")
    if not name:
        return "not validated (no profile recorded)"
    try:
        profile = load_profile(str(name))
        return error_line(profile, profile.runtime(meta.get("runtime"))).removeprefix("latency model ")
    except DseError:
        return f"not validated ({name} could not be loaded)"


def _mega(value: Any) -> float | None:
    return None if value is None else float(value) / 1e6


def draw_table(ax, table: pd.DataFrame, font_size: float = 10.5, row_height: float = 0.055) -> None:
    """Draw ``table`` in ``ax`` (axis off) with columns sized to their text and fitted to the
    axes width (the font shrinks, down to 7 pt, when the text would not fit). Headers may hold
    a newline; the header row is shaded and grows with it."""
    ax.axis("off")
    headers = [str(c) for c in table.columns]
    cells = [[str(v) for v in row] for row in table.to_numpy().tolist()]
    chars = [max([len(x) for h in [headers[j]] for x in h.split("\n")]
                 + [len(r[j]) for r in cells]) + 2 for j in range(len(headers))]
    bbox = ax.get_position()
    width_pt = bbox.width * ax.figure.get_figwidth() * 72
    size = max(7.0, min(font_size, width_pt / (0.62 * sum(chars))))
    widths = [c / sum(chars) for c in chars]
    tab = ax.table(cellText=cells, colLabels=headers, colWidths=widths, loc="upper center",
                   cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(size)
    lines = max(h.count("\n") + 1 for h in headers)
    for (r, _), cell in tab.get_celld().items():
        cell.set_height(row_height * (lines if r == 0 else 1) * (0.8 if r == 0 and lines > 1 else 1))
        if r == 0:
            cell.set_facecolor("#d6eaf8")
            cell.set_text_props(fontweight="bold")
        elif r % 2 == 0:
            cell.set_facecolor("#f4f6f7")


def table_figure(section: str, table: pd.DataFrame, subtitle: str = "", note: str = "",
                 font_size: float = 10.5) -> Figure:
    """A page holding one table, optionally with a note under it."""
    fig = page(section, subtitle)
    ax = fig.add_axes([0.03, 0.1, 0.94, 0.78])
    ax.axis("off")
    if table.empty:
        ax.text(0.5, 0.5, note or "Nothing to show.", ha="center", va="center", fontsize=13,
                transform=ax.transAxes)
        return fig
    draw_table(ax, table, font_size)
    if note:
        fig.text(0.5, 0.05, note, ha="center", fontsize=10.5, color="#444444", wrap=True)
    return fig


def front_table_pages(table: pd.DataFrame, note: str = "") -> list[Figure]:
    parts = chunks(table, ROWS_PER_TABLE_PAGE)
    out = []
    for k, part in enumerate(parts):
        subtitle = "fastest first; accuracy of the early-exit model with its chosen thresholds"
        if len(parts) > 1:
            subtitle += f" (part {k + 1} of {len(parts)})"
        out.append(table_figure("table", part, subtitle, note=note or (
            "" if not table.empty else "The front is empty: no trial satisfies the constraints.")))
    return out


def finetune_pages(subsets: pd.DataFrame | None, shift: str | None,
                   reason: str = "") -> list[Figure]:
    """The selected subsets: a chart of the accuracies and a table with the ops savings."""
    if subsets is None or subsets.empty:
        text = reason or ("Fine-tuning subsets were turned off (--shift none). Run 'dse report "
                          "--study NAME' (shift random) or name a shift (jitter, cutout, resize, "
                          "rotate, grayscale) to choose which exits to fine-tune for every "
                          "front configuration.")
        fig = page("finetune")
        fig.text(0.5, 0.5, "\n".join(textwrap.wrap(text, 80)), ha="center", va="center",
                 fontsize=13)
        return [fig]
    note = ("Ensemble = mean of the logits of all exits (Hirose et al. 2020), shifted test split. "
            "Subset: exit 1 first, F = fine-tuned, B = original; chosen on the shifted train and "
            "validation splits after a probe of every exit: the best-probed subset whose training "
            "step costs at most 0.8 of re-training every exit. Probe gap: the chosen subset's probed "
            "score minus re-training every exit's, ± its paired standard error; '!': the rule's "
            "pick (named) may lose more than 2 points, so every exit is re-trained (the safe "
            "choice; reasons below). Train ops = "
            "selective / entire training MACs (classifiers; forward + backward + update).")
    out = []
    for k, part in enumerate(chunks(subsets, ROWS_PER_FINETUNE_PAGE)):
        fig = page("finetune", f"deployment shift '{shift}': which exits to re-train; accuracy "
                               "of the last-exit ensemble on the shifted test split")
        ax = fig.add_axes([0.08, 0.54, 0.72, 0.34])
        finetune_chart(ax, part)
        tab_ax = fig.add_axes([0.03, 0.14, 0.94, 0.34])
        draw_table(tab_ax, finetune_table(part), 9.5, row_height=0.1)
        lines = [*textwrap.wrap(note, 170),
                 *(w for line in finetune_warnings(part) for w in textwrap.wrap(line, 170))]
        fig.text(0.5, 0.01, "\n".join(lines[:9]), ha="center", va="bottom", fontsize=8.5,
                 color="#444444")
        out.append(fig)
    return out


def finetune_chart(ax, subsets: pd.DataFrame) -> None:
    """Grouped bars: no fine-tuning / selective / entire ensemble accuracy per configuration."""
    x = np.arange(len(subsets))
    w = 0.26
    for k, (col, name, color) in enumerate([("baseline_accuracy", "no fine-tuning", plots.GREY),
                                            ("accuracy", "selective", plots.FRONT_COLOR),
                                            ("entire_accuracy", "entire", plots.TRIAL_COLOR)]):
        ax.bar(x + (k - 1) * w, subsets[col], w, label=name, color=color)
    for xi, (_, s) in zip(x, subsets.iterrows()):
        ax.annotate(f"{s['subset']}\nops x{s['ops_ratio']:.2f}", (xi, s["accuracy"]),
                    xytext=(0, 4), textcoords="offset points", ha="center", fontsize=9)
    ax.set_xticks(x, [f"#{int(n)}" for n in subsets["number"]])
    ax.set_xlim(-0.6, max(len(subsets), 4) - 0.4)  # a lone configuration keeps narrow bars
    low = max(0.0, float(np.nanmin(subsets[["baseline_accuracy", "accuracy",
                                            "entire_accuracy"]].to_numpy())) - 10)
    ax.set_ylim(low, 100 + 0.15 * (100 - low))  # headroom for the subset labels
    ax.set_yticks([t for t in ax.get_yticks() if low <= t <= 100])
    ax.set_ylabel("Ensemble accuracy (%)")
    ax.set_xlabel("Front configuration")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)

