"""The latency model against published batch-1 measurements: fit, error, leave-one-model-out.

For every shipped profile and runtime with ``fitted_to`` rows (see hardware_profiles/*.yaml), the
error of the shipped (fitted) runtime on its rows and the leave-one-model-out error (refit the
runtime's multipliers without one model's rows, predict that model; dse.cost.published).
Summary keys, over all cited rows: ``rows``, ``median_abs_error``, ``loo_median_abs_error``,
``within_25pct`` (fractions) and ``spearman`` (published vs predicted ms). Pass: LOO median
absolute error <= 0.20 and Spearman >= 0.95, and every profile >= 4 rows on >= 2 models.

``--write`` refits every runtime and stores ``fit`` and ``fit_error`` in the YAML files (text
edits: the comments stay).

    python benchmarks/published_latency.py --json
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace
from pathlib import Path


def _flow(d: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in d.items()) + "}"


def write_fit(path: Path, runtime: str, fit: dict, error: dict) -> None:
    """Replace (or add) the runtime's ``fit:`` and ``fit_error:`` lines, after its ``dtype:``."""
    text = path.read_text()
    block = re.compile(rf"(\n  {re.escape(runtime)}:\n(?:    .*\n)*?    dtype: [a-z0-9]+\n)"
                       r"((?:    fit(?:_error)?: .*\n)*)")
    lines = f"    fit: {_flow(fit)}\n    fit_error: {_flow(error)}\n"
    new, n = block.subn(lambda m: m.group(1) + lines, text, count=1)
    if n != 1:
        raise SystemExit(f"{path}: runtime {runtime} not found")
    path.write_text(new)


def run(args: argparse.Namespace) -> dict:
    from dse.cost import published as pub
    from dse.cost.profiles import list_profiles, load_profile

    rows, profiles, skipped = [], {}, []
    entries = list_profiles(skipped)
    if skipped:
        raise SystemExit("profiles that do not load: " + "; ".join(skipped))
    for entry in entries:
        if args.profile and entry["name"] not in args.profile:
            continue
        prof = load_profile(entry["name"])
        if args.write:
            for name, rrows in pub.rows_by_runtime(prof).items():
                rt = prof.runtimes[name]
                fit = pub.fit_runtime(prof, rt, rrows)
                fitted = replace(rt, fit=fit)
                err = pub.fit_error(pub.errors(prof, fitted, rrows),
                                    pub.leave_one_model_out(prof, rt, rrows), rrows)
                write_fit(Path(prof.path), name, fit, err)
            prof = load_profile(entry["name"])
        prows = pub.evaluate_profile(prof)
        rows += prows
        profiles[prof.name] = {"rows": len(prof.fitted_to),
                               "models": len({r.model for r in prof.fitted_to}),
                               **(pub.summary(prows) if prows else {})}
    summary = pub.summary(rows)
    ok_rows = all(p["rows"] >= 4 and p["models"] >= 2 for p in profiles.values())
    summary["pass"] = bool(summary["loo_median_abs_error"] <= 0.20 and summary["spearman"] >= 0.95
                           and ok_rows)
    return {"summary": summary, "profiles": profiles,
            "rows": [{k: v for k, v in r.items() if k != "source"} for r in rows]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="Print the result as JSON.")
    ap.add_argument("--write", action="store_true", help="Refit and store fit/fit_error in the YAML.")
    ap.add_argument("--profile", action="append", help="Only this profile (repeatable).")
    args = ap.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for r in result["rows"]:
        print(f"{r['profile']:<18} {r['runtime']:<17} {r['model']:<12} {r['published_ms']:>8.2f} "
              f"{r['predicted_ms']:>8.2f} {100 * r['error']:+6.1f}% loo {100 * r['loo_error']:+6.1f}%")
    for name, p in result["profiles"].items():
        print(f"{name}: {p}")
    print(json.dumps(result["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
