"""The final table of a search's Pareto front."""
from __future__ import annotations

from typing import Any

from dse.cli.output import table
from dse.search.schema import study_attrs


def front_table(study: Any, front: Any) -> str:
    """The front (the rows of ``pareto.csv``, :func:`dse.search.export.pareto_frame`) as a text
    table, cheapest first, with the backbone alone for reference."""
    a = study_attrs(study)
    rows = [[int(r["trial"]), f"{r['val_accuracy']:.2f}", f"{r['test_accuracy']:.2f}",
             f"{r['val_latency_ms']:.4g}", f"{r['test_latency_ms']:.4g}",
             f"{r['val_macs'] / 1e6:.3f}", (r["blocks"] or "").replace(" ", ","),
             f"{r['branch']} {r['branch_params']}".strip(), r["loss"], r["criterion"],
             " ".join(f"{float(x):.3g}" for x in (r["thresholds"] or "").split())]
            for _, r in front.iterrows()]
    text = table(["trial", "val acc %", "test acc %", "latency ms", "test ms", "M MACs",
                  "exit blocks", "branch", "loss", "criterion", "threshold"], rows)
    if a["backbone_val_accuracy"] is not None:
        text += (f"\nbackbone alone: val {a['backbone_val_accuracy']:.2f}%, test "
                 f"{a['backbone_test_accuracy']:.2f}%, {a['backbone_latency_ms']:.4g} ms, "
                 f"{a['backbone_macs'] / 1e6:.3f} M MACs on {a['profile']}/{a['runtime']}")
    return text
