"""The final table of a search's Pareto front."""
from __future__ import annotations

from typing import Any

from dse.cli.output import table
from dse.search.schema import study_attrs, trial_attrs


def front_table(study: Any, front: list[Any]) -> str:
    """The Pareto front as a text table, cheapest first, with the backbone alone for reference."""
    a = study_attrs(study)
    rows = []
    for t in front:
        u = trial_attrs(t)
        cfg = u["config"] or {}
        ex, po = cfg.get("exits", {}), cfg.get("exit_policy", {})
        loss = (cfg.get("training", {}).get("loss") or {}).get("name", "")
        params = " ".join(f"{k}{v}" for k, v in (ex.get("branch_params") or {}).items())
        rows.append([t.number, f"{u['val_accuracy']:.2f}", f"{u['test_accuracy']:.2f}",
                     f"{u['expected_latency_ms']:.4g}", f"{u['test_expected_latency_ms']:.4g}",
                     f"{u['expected_macs'] / 1e6:.3f}",
                     ",".join(str(b) for b in u["blocks"] or []),
                     f"{ex.get('branch', '')}{(' ' + params) if params else ''}", loss,
                     po.get("criterion", ""),
                     " ".join(f"{x:.3g}" for x in po.get("thresholds", []))])
    text = table(["trial", "val acc %", "test acc %", "latency ms", "test ms", "M MACs",
                  "exit blocks", "branch", "loss", "criterion", "threshold"], rows)
    if a["backbone_val_accuracy"] is not None:
        text += (f"\nbackbone alone: val {a['backbone_val_accuracy']:.2f}%, test "
                 f"{a['backbone_test_accuracy']:.2f}%, {a['backbone_latency_ms']:.4g} ms, "
                 f"{a['backbone_macs'] / 1e6:.3f} M MACs on {a['profile']}/{a['runtime']}")
    return text
