"""Readable tables for the report: DataFrames of short strings, one row per configuration.

These are what a colleague reads, not a dump: a trial number, the structure in a few words,
the numbers that decide (validation and test accuracy, expected latency, MACs, energy) and the
exit mix. Plot code renders them (:func:`dse.report.plots.table_pages`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence


from dse.report.data import ReportData

if TYPE_CHECKING:  # heavy: loaded where used (dse search refuses first)
    import pandas as pd


def _num(value: Any, fmt: str, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(float(value) * scale, fmt)


def _thresholds(values: Sequence[float]) -> str:
    values = list(values or [])
    if not values:
        return "-"
    if len(set(round(v, 3) for v in values)) == 1:
        return f"{values[0]:.2f}"
    return "/".join(f"{v:.2f}" for v in values)


def _exit_mix(fractions: Sequence[float] | None) -> str:
    if not fractions:
        return "-"
    return " ".join(f"{100 * f:.0f}" for f in fractions)


def _structure(row: pd.Series) -> str:
    """``convx(depth=2), golden, kd+isc``: branch (parameters), placement rule, loss."""
    branch = row.get("branch") or "?"
    params = row.get("branch_params") or ""
    loss = (row.get("loss") or "-") + ("+isc" if row.get("isc") else "")
    return ", ".join([f"{branch}({params})" if params else str(branch),
                      str(row.get("placement") or "-"), loss])


def front_table(data: ReportData, subsets: pd.DataFrame | None = None) -> pd.DataFrame:
    """The front configurations, fastest first, as display strings."""
    import pandas as pd
    rows = []
    energy = data.has("expected_energy_mj")
    sub = {} if subsets is None or subsets.empty else subsets.set_index("number").to_dict("index")
    for _, r in data.front.iterrows():
        blocks = r.get("blocks")
        row = {
            "Trial": f"#{int(r['number'])}",
            # early exits only (the final classifier is not counted): the blocks they attach to
            "Early\nexits": str(len(blocks)) if blocks is not None else "-",
            "Exit\nblocks": ",".join(str(b) for b in blocks) if blocks is not None else "-",
            "Branch, placement,\nloss": _structure(r),
            "Exit rule\n(threshold)": f"{r.get('criterion') or '-'} {_thresholds(r.get('thresholds'))}",
            "Val acc\n(%)": _num(r.get("accuracy"), ".2f"),
            "Test acc\n(%)": _num(r.get("test_accuracy"), ".2f"),
            "E[latency]\n(ms)": _num(r.get("expected_latency_ms", r.get("latency_ms")), ".3f"),
            "E[MACs]\n(M)": _num(r.get("expected_macs"), ".3f", 1e-6),
        }
        if energy:
            row["E[energy]\n(mJ)"] = _num(r.get("expected_energy_mj"), ".3f")
        row["Exit mix (%),\nexit 1 first"] = _exit_mix(r.get("exit_fractions"))
        if int(r["number"]) in sub:
            s = sub[int(r["number"])]
            row["Fine-tune\nsubset"] = str(s.get("subset", "-"))
        rows.append(row)
    return pd.DataFrame(rows)


def finetune_table(subsets: pd.DataFrame) -> pd.DataFrame:
    """Selected fine-tuning subsets of the front configurations, as display strings."""
    import pandas as pd
    rows = []
    for _, s in subsets.iterrows():
        rows.append({
            "Trial": f"#{int(s['number'])}",
            "Exits\n(final incl.)": str(int(s["num_exits"])),
            "Subset\n(F = tuned)": str(s["subset"]),
            "Selective\nacc (%)": _num(s["accuracy"], ".2f"),
            "Entire\nacc (%)": _num(s["entire_accuracy"], ".2f"),
            "No fine-tuning\nacc (%)": _num(s["baseline_accuracy"], ".2f"),
            "Train ops\nvs entire": _num(s["ops_ratio"], ".3f"),
            "Probe: gap to entire\n(points ± se)": _gap(s),
            "Original test acc (%)\nselective / entire": (
                f"{_num(s.get('original_accuracy'), '.2f')} / "
                f"{_num(s.get('original_entire_accuracy'), '.2f')}"),
            "Reference subset\n(all fine-tuned, tried)":
                f"{s['best_subset']} ({_num(s['best_subset_accuracy'], '.2f')}%)",
        })
    return pd.DataFrame(rows)


def _gap(s: Any) -> str:
    """The probe's estimated gap of the rule's pick to re-training every exit; with a warning
    (the safe choice, every exit, was finished instead) the pick is named and marked '!'."""
    gap = s.get("estimated_gap")
    if gap is None or gap != gap:
        return "-"
    text = f"{float(gap):+.2f} ± {_num(s.get('estimated_gap_se'), '.2f')}"
    if isinstance(s.get("warning"), str) and s.get("warning"):
        return f"{s.get('rule_subset')}: {text} !"
    return text


def finetune_warnings(subsets: pd.DataFrame) -> list[str]:
    """One line per configuration whose probe could not decide (the safe choice was taken)."""
    if "warning" not in subsets:
        return []
    return [f"#{int(s['number'])}: {s['warning']}" for _, s in subsets.iterrows()
            if isinstance(s["warning"], str) and s["warning"]]


def counts_line(data: ReportData) -> str:
    c = data.counts
    parts = [f"{c.get('complete', 0)} complete", f"{c.get('feasible', 0)} feasible",
             f"{len(data.front)} on the front", f"{c.get('fail', 0)} failed"]
    if c.get("pruned"):
        parts.append(f"{c['pruned']} pruned")
    if c.get("running"):
        parts.append(f"{c['running']} running")
    return ", ".join(parts)
