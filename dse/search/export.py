"""Study -> tables and files: ``trials.csv``, ``pareto.csv`` and ``configs/trial_<n>.yaml``.

The Pareto front is :func:`dse.search.schema.front_trials` (feasible, non-dominated COMPLETE
trials on the study's objectives, val metrics); ``pareto.csv`` puts each one's test metrics
beside its val metrics. Each front configuration is written as a
:class:`dse.design.RunConfig` file that ``dse train --config`` loads, except over a file of the
same name that dse did not write (:mod:`dse.written`): that one stays as it is.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dse.design import config_from_section, save_config
from dse.search.schema import (TRIAL, front_trials, is_feasible, objectives, same_values,
                               trial_attrs)
from dse.written import MANIFEST, replace_written, written_files
from dse.yamlio import Section

CONFIG_PATTERN = "trial_{number}.yaml"


def _config_summary(t: Any) -> dict[str, Any]:
    cfg = TRIAL["config"].get(t) or {}
    ex, tr, po = cfg.get("exits", {}), cfg.get("training", {}), cfg.get("exit_policy", {})
    loss = dict(tr.get("loss") or {})
    name = loss.pop("name", None)
    isc = loss.pop("isc", None)
    return {"exits": len(ex.get("blocks") or []), "blocks": _join(ex.get("blocks")),
            "placement": ex.get("placement"), "branch": ex.get("branch"),
            "branch_params": _kv(ex.get("branch_params")), "loss": name, "loss_params": _kv(loss),
            "isc": isc, "labels": tr.get("labels"), "steps": tr.get("steps"), "lr": tr.get("lr"),
            "criterion": po.get("criterion"), "thresholds": _join(po.get("thresholds"))}


def _join(values: Any, digits: int = 6) -> str | None:
    if values is None:
        return None
    return " ".join(f"{v:.{digits}g}" if isinstance(v, float) else str(v) for v in values)


def _kv(mapping: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in (mapping or {}).items())


def fail_reason(t: Any, retried: dict[int, int]) -> str | None:
    reason = TRIAL["fail_reason"].get(t)
    if reason is None and t.state.name == "FAIL":
        again = retried.get(t.number)
        reason = "worker stopped sending heartbeats (killed or lost)" + (
            f"; retried as trial {again}" if again is not None else "")
    return reason


def trials_frame(study: Any):
    """One row per trial (every state): values, val/test metrics, configuration, reason."""
    import pandas as pd
    names = objectives(study)
    trials = study.get_trials(deepcopy=False)
    retried = {}
    for t in trials:
        if "retry_history" in t.system_attrs:
            retried[t.system_attrs["retry_history"][-1]] = t.number
    front = {t.number for t in front_trials(study)}
    rows = []
    for t in trials:
        a = trial_attrs(t)
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        for i, name in enumerate(names):
            row[name] = t.values[i] if t.values else None
        row.update({"pareto": t.number in front, "feasible": is_feasible(t) if t.values else None})
        for key in ("val_accuracy", "test_accuracy", "expected_latency_ms",
                    "test_expected_latency_ms", "expected_macs", "test_expected_macs",
                    "expected_energy_mj", "test_expected_energy_mj", "duration_s"):
            row[key] = a.get(key)
        row.update(_config_summary(t))
        row["exit_fractions"] = _join(a.get("exit_fractions"), 4)
        row["constraint"] = _join(a.get("constraint"))
        row["fail_reason"] = fail_reason(t, retried)
        row["retry_of"] = a.get("retry_of")
        row["datetime_start"] = t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None
        for k, v in t.params.items():
            row[f"params_{k}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_frame(study: Any):
    """The front, test metrics beside val ones, cheapest first."""
    import pandas as pd
    trials = study.get_trials(deepcopy=False)
    rows = []
    for t in front_trials(study):
        a = trial_attrs(t)
        rows.append({
            "trial": t.number, "val_accuracy": a.get("val_accuracy"),
            "test_accuracy": a.get("test_accuracy"),
            "val_latency_ms": a.get("expected_latency_ms"),
            "test_latency_ms": a.get("test_expected_latency_ms"),
            "val_macs": a.get("expected_macs"), "test_macs": a.get("test_expected_macs"),
            "val_energy_mj": a.get("expected_energy_mj"),
            "test_energy_mj": a.get("test_expected_energy_mj"),
            **_config_summary(t),
            "exit_fractions": _join(a.get("exit_fractions"), 4),
            "test_exit_fractions": _join(a.get("test_exit_fractions"), 4),
            "config": f"configs/{CONFIG_PATTERN.format(number=t.number)}",
            "same_values_trials": _join(same_values(t, trials)) or None,
        })
    return pd.DataFrame(rows)


def write_outputs(study: Any, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write trials.csv, pareto.csv and one config per front trial; return what was written."""
    out = Path(out_dir)
    configs = out / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    _write_csv(trials_frame(study), out / "trials.csv")
    front = front_trials(study)
    pareto = pareto_frame(study)
    _write_csv(pareto, out / "pareto.csv")
    wanted, theirs = set(), []
    ours = written_files(configs) | written_files(configs, "kept")
    recorded = (configs / MANIFEST).is_file()  # else a folder from before dse kept a record
    for t in front:
        name = CONFIG_PATTERN.format(number=t.number)
        if recorded and name not in ours and (configs / name).exists():
            theirs.append(str(configs / name))  # a file of the user's: never replaced
            continue
        wanted.add(name)
        a = trial_attrs(t)
        config = config_from_section(Section(a["config"], f"trial {t.number}"))
        header = (f"dse search: study {study.study_name}, trial {t.number} (Pareto front)\n"
                  f"val accuracy {a['val_accuracy']:.2f}%, test accuracy {a['test_accuracy']:.2f}%, "
                  f"expected latency {a['expected_latency_ms']:.4g} ms (val)\n"
                  f"train it: dse train --config {configs / name}")
        save_config(config, str(configs / name), header=header)
    replace_written(configs, wanted)  # removes only configs an earlier run wrote
    return {"trials_csv": str(out / "trials.csv"), "pareto_csv": str(out / "pareto.csv"),
            "configs": sorted(str(configs / n) for n in wanted), "front": front,
            "pareto": pareto, "not_replaced": theirs}


def _write_csv(frame: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
