"""Report charts: each function takes DataFrames (:class:`~dse.report.data.ReportData`) and
returns a matplotlib Figure, one A4-landscape page with its section title. Nothing here touches
the disk; :mod:`dse.report.pdf` writes the pages.

Fonts are sized for print (11-15 pt on a 29.7 x 21 cm page); every axis says its unit.
"""
from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import numpy as np

from dse.report.data import OBJECTIVE_LABELS, ReportData, pareto_mask, sweep_accuracy

if TYPE_CHECKING:  # heavy: loaded where used (dse search refuses first)
    import pandas as pd
    from matplotlib.figure import Figure

PAGE = (11.69, 8.27)  #: A4 landscape, inches
STYLE = {
    "font.size": 12, "axes.titlesize": 13, "axes.labelsize": 13, "xtick.labelsize": 11,
    "ytick.labelsize": 11, "legend.fontsize": 10, "figure.titlesize": 16, "axes.grid": True,
    "grid.alpha": 0.3, "pdf.fonttype": 42,
}
#: section titles, in page order (tests look for them in the PDF)
SECTIONS = {
    "title": "Early-exit design-space exploration",
    "pareto": "Pareto front: accuracy vs expected latency",
    "cost": "Accuracy vs expected MACs and energy",
    "exits": "Front configurations: exit distribution and per-exit accuracy",
    "sweeps": "Threshold trade-off curves of the front configurations",
    "importance": "Parameter importances",
    "table": "Front configurations",
    "finetune": "Selected fine-tuning subsets",
}
MAX_LINES = 10  #: front configurations drawn per chart page
FRONT_COLOR = "#c0392b"
TRIAL_COLOR = "#2e86c1"
GREY = "#a6acaf"
FINAL_COLOR = "#34495e"


def page(section: str, subtitle: str = "") -> Figure:
    """An empty page with the section's title (and a smaller subtitle)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=PAGE)
    fig.suptitle(SECTIONS.get(section, section), fontweight="bold", y=0.975)
    if subtitle:
        fig.text(0.5, 0.925, subtitle, ha="center", va="center", fontsize=11, color="#444444")
    return fig


def colors(n: int) -> list:
    import matplotlib
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _note(ax, text: str, size: float = 13) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=size, transform=ax.transAxes)


def _references(ax, data: ReportData, x_key: str, scale: float = 1.0) -> None:
    """The backbone alone (a star) and the max-drop accuracy line."""
    acc = data.backbone_accuracy
    x = data.meta.get(x_key)
    if acc is not None and x is not None:
        ax.scatter([float(x) * scale], [acc], marker="*", s=260, color="black", zorder=5,
                   label=f"backbone alone ({acc:.1f}%)")
    drop = data.meta.get("max_drop")
    if acc is not None and drop is not None:
        ax.axhline(acc - float(drop), color="#7d3c98", ls="--", lw=1.3,
                   label=f"max accuracy drop ({float(drop):g} point"
                   f"{'' if float(drop) == 1 else 's'})")


def _scatter_trials(ax, trials: pd.DataFrame, x: str, scale: float = 1.0) -> None:
    feasible = trials[trials["feasible"] & ~trials["on_front"]]
    infeasible = trials[~trials["feasible"]]
    front = trials[trials["on_front"]]
    if len(infeasible):
        ax.scatter(infeasible[x] * scale, infeasible["accuracy"], marker="x", s=30, color=GREY,
                   label=f"violates a constraint ({len(infeasible)})")
    if len(feasible):
        ax.scatter(feasible[x] * scale, feasible["accuracy"], s=28, color=TRIAL_COLOR, alpha=0.8,
                   label=f"feasible trial ({len(feasible)})")
    if len(front):
        ax.scatter(front[x] * scale, front["accuracy"], s=70, color=FRONT_COLOR, edgecolor="black",
                   zorder=4, label=f"Pareto front ({len(front)})")


def _step_front(ax, trials: pd.DataFrame, x: str, scale: float = 1.0) -> None:
    """The two-objective front (accuracy up, ``x`` down) of feasible trials as a step line."""
    ok = trials[trials["feasible"]].dropna(subset=[x, "accuracy"])
    if ok.empty:
        return
    mask = pareto_mask(ok[["accuracy", x]].to_numpy(), [True, False])
    pts = ok[mask].sort_values(x)
    ax.step(pts[x] * scale, pts["accuracy"], where="post", color=FRONT_COLOR, lw=1.6, alpha=0.8,
            label="front (accuracy vs this cost)")


def focus_accuracy(ax, data: ReportData, quantile: float = 10.0) -> None:
    """Zoom the accuracy axis on the region that matters: every front point, the references
    and the better 90% of trials; the trials left below are counted in a note on the axes."""
    acc = data.trials["accuracy"].dropna().to_numpy() if "accuracy" in data.trials else []
    if len(acc) == 0:
        return
    keep = [float(np.percentile(acc, quantile))]
    keep += data.front["accuracy"].dropna().tolist()
    ref = data.backbone_accuracy
    if ref is not None:
        keep.append(ref)
        if data.meta.get("max_drop") is not None:
            keep.append(ref - float(data.meta["max_drop"]))
    low, high = min(keep), max(max(keep), float(acc.max()))
    pad = max(0.5, 0.06 * (high - low))
    below = int((acc < low - pad).sum())
    ax.set_ylim(low - pad, high + pad)
    if below:
        ax.text(0.99, 0.01, f"{below} trial{'s' if below > 1 else ''} below "
                            f"{low - pad:.1f}% not shown", transform=ax.transAxes, ha="right",
                va="bottom", fontsize=10, color="#555555")


def pareto_latency(data: ReportData) -> Figure:
    """Accuracy vs expected latency: every trial, the front, the backbone, the constraints."""
    profile = data.meta.get("profile") or "the profile"
    runtime = data.meta.get("runtime")
    fig = page("pareto", f"{profile}" + (f" / {runtime}" if runtime else "")
               + f" - {data.counts.get('complete', 0)} complete trials")
    ax = fig.add_axes([0.08, 0.1, 0.64, 0.78])
    t = data.trials
    if t.empty or "latency_ms" not in t:
        _note(ax, "No complete trial with a latency to plot yet.")
        return fig
    _scatter_trials(ax, t, "latency_ms")
    _step_front(ax, t, "latency_ms")
    for _, r in data.front.iterrows():
        ax.annotate(f"#{int(r['number'])}", (r["latency_ms"], r["accuracy"]), fontsize=9,
                    xytext=(5, -11), textcoords="offset points")
    _references(ax, data, "backbone_latency_ms")
    budget = data.meta.get("budget_ms")
    if budget is not None:
        ax.axvline(float(budget), color="#d35400", ls="--", lw=1.3,
                   label=f"latency budget ({float(budget):g} ms)")
    focus_accuracy(ax, data)
    ax.set_xlabel(f"Expected latency predicted on {profile} (ms per input)")
    ax.set_ylabel("Validation accuracy (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return fig


def accuracy_vs_cost(data: ReportData) -> Figure:
    """Accuracy vs expected MACs, and vs expected energy when the study has it."""
    has_energy = data.has("expected_energy_mj")
    fig = page("cost", "the same trials and front; x axes in millions of MACs"
               + (" and millijoules" if has_energy else ""))
    t = data.trials
    panels = [("expected_macs", 1e-6, "Expected MACs (millions per input)", "backbone_macs")]
    if has_energy:
        panels.append(("expected_energy_mj", 1.0, "Expected energy (mJ per input)",
                       "backbone_energy_mj"))
    width = 0.84 / len(panels)
    for i, (col, scale, label, ref) in enumerate(panels):
        ax = fig.add_axes([0.08 + i * width + (0.03 if i else 0), 0.22, width - 0.08, 0.65])
        if t.empty or not data.has(col):
            _note(ax, f"No complete trial recorded {label.split(' (')[0].lower()}.")
            continue
        _scatter_trials(ax, t, col, scale)
        _step_front(ax, t, col, scale)
        _references(ax, data, ref, scale)
        focus_accuracy(ax, data)
        ax.set_xlabel(label)
        ax.set_ylabel("Validation accuracy (%)")
        if i == 0:
            handles, labels = ax.get_legend_handles_labels()
            fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False,
                       bbox_to_anchor=(0.5, 0.01))
    return fig


def exit_profiles(data: ReportData, rows: pd.DataFrame, subtitle: str = "") -> Figure:
    """Left: where inputs leave (stacked % per exit); right: per-exit (anytime) accuracy."""
    fig = page("exits", subtitle or "validation split; anytime accuracy = every input "
                                    "forced through that exit")
    left = fig.add_axes([0.1, 0.1, 0.36, 0.76])
    right = fig.add_axes([0.57, 0.1, 0.28, 0.76])
    if rows.empty:
        _note(left, "The front is empty: no feasible trial.")
        right.axis("off")
        return fig
    n_exit_max = max([len(f) for f in rows["exit_fractions"] if f] or [1])
    exit_colors = colors(n_exit_max)
    labels = [f"#{int(n)}" for n in rows["number"]]
    labelled: set[int] = set()
    for i, fractions in enumerate(rows["exit_fractions"]):
        start = 0.0
        fractions = list(fractions or [])
        for e, f in enumerate(fractions):
            key = -1 if e == len(fractions) - 1 else e
            left.barh(i, 100 * f, left=start, color=FINAL_COLOR if key < 0 else exit_colors[e],
                      edgecolor="white", label=None if key in labelled else (
                          "final exit" if key < 0 else f"exit {e + 1}"))
            labelled.add(key)
            start += 100 * f
    left.set_yticks(range(len(labels)), labels)
    left.invert_yaxis()
    left.set_xlim(0, 100)
    left.set_xlabel("Inputs leaving at each exit (%)")
    left.set_ylabel("Front configuration (fastest first)")
    left.grid(axis="y", visible=False)
    handles, names = left.get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda k: (names[k] == "final exit",
                                                    int(names[k].split()[-1]) if names[k][-1].isdigit() else 0))
    left.legend([handles[k] for k in order], [names[k] for k in order], loc="upper center",
                bbox_to_anchor=(0.5, -0.09), ncol=min(7, len(names)), frameon=False)
    line_colors = colors(len(rows))
    for c, (_, r) in zip(line_colors, rows.iterrows()):
        acc = r.get("per_exit_accuracy")
        lat = r.get("exit_latency_ms")
        if not acc or not lat:
            continue
        right.plot(lat, acc, marker="o", color=c, label=f"#{int(r['number'])}")
    right.set_xlabel("Exit cost: cumulative latency predicted on the profile (ms)")
    right.set_ylabel("Per-exit accuracy (%)")
    right.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return fig


def threshold_curves(data: ReportData, rows: pd.DataFrame, subtitle: str = "") -> Figure:
    """Accuracy vs expected latency along each front configuration's threshold sweep."""
    fig = page("sweeps", subtitle or "each line sweeps one global threshold of the exit rule; "
                                     "the dot is the chosen operating point")
    ax = fig.add_axes([0.08, 0.1, 0.66, 0.78])
    curves = [(r, r.get("sweep")) for _, r in rows.iterrows()]
    curves = [(r, s) for r, s in curves if isinstance(s, dict) and s.get("latency_ms")]
    if not curves:
        _note(ax, "No threshold sweep stored for the front configurations.")
        return fig
    for c, (r, s) in zip(colors(len(curves)), curves):
        acc = sweep_accuracy(s)
        order = np.argsort(s["latency_ms"])
        crit = s.get("criterion") or r.get("criterion") or ""
        ax.plot(np.asarray(s["latency_ms"])[order], np.asarray(acc)[order], color=c, lw=1.6,
                label=f"#{int(r['number'])} ({crit})")
        ax.scatter([r.get("expected_latency_ms", r.get("latency_ms"))], [r["accuracy"]], color=c,
                   edgecolor="black", s=60, zorder=4)
    _references(ax, data, "backbone_latency_ms")
    budget = data.meta.get("budget_ms")
    if budget is not None:
        ax.axvline(float(budget), color="#d35400", ls="--", lw=1.3,
                   label=f"latency budget ({float(budget):g} ms)")
    ax.set_xlabel("Expected latency predicted on the profile (ms per input)")
    ax.set_ylabel("Validation accuracy (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return fig


def importances(data: ReportData, top: int = 8) -> Figure:
    """One bar chart per objective: fANOVA importance of each searched parameter."""
    fig = page("importance", "fraction of each objective's variance explained by a parameter "
                             "(Optuna fANOVA); parameters present in every trial")
    names = data.objectives
    rows = 1 if len(names) <= 2 else 2
    cols = -(-len(names) // rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    longest = max([len(str(k)) for imp in data.importances.values() if isinstance(imp, dict)
                   for k in sorted(imp, key=imp.get, reverse=True)[:top]] or [8])
    label_w = 0.0075 * longest + 0.02  # figure fraction taken by the parameter names (11 pt)
    left, right, gap = label_w + 0.03, 0.97, label_w + 0.05
    axis_w = (right - left - (cols - 1) * gap) / cols
    fig.subplots_adjust(left=left, right=right, top=0.84, bottom=0.1, wspace=gap / axis_w,
                        hspace=0.45)
    for ax in axes[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes, names):
        imp = data.importances.get(name)
        label = _objective_label(name)
        if not isinstance(imp, dict) or not imp:
            ax.set_title(label)
            _note(ax, "\n".join(_wrap(str(imp or "not computed"), 72 // cols)), size=12)
            continue
        items = sorted(imp.items(), key=lambda kv: kv[1], reverse=True)[:top]
        ax.barh(range(len(items)), [v for _, v in items], color=TRIAL_COLOR)
        ax.set_yticks(range(len(items)), [k for k, _ in items])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("Importance (fraction)")
        ax.set_title(label)
    return fig


def _objective_label(name: str) -> str:
    return OBJECTIVE_LABELS.get(name, name)


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width) or [""]


def chunks(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    """Split rows into pages of ``size`` (at least one, possibly empty, page)."""
    if frame.empty:
        return [frame]
    return [frame.iloc[i:i + size] for i in range(0, len(frame), size)]


def paged(fn, data: ReportData, rows: pd.DataFrame, size: int = MAX_LINES) -> list[Figure]:
    """``fn(data, rows_chunk, subtitle)`` for every chunk of ``rows`` (one page each)."""
    parts = chunks(rows, size)
    out = []
    for k, part in enumerate(parts):
        subtitle = "" if len(parts) == 1 else f"configurations {k * size + 1}-{k * size + len(part)} " \
                                              f"of {len(rows)}, fastest first"
        out.append(fn(data, part, subtitle))
    return out
