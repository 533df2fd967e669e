"""Proxy vs full training of chosen trials (``dse report --check K``,
``benchmarks/proxy_fidelity.py``).

Each checked trial's stored configuration is fully trained with :func:`dse.api.train` (frozen
backbone, on the study's feature cache, no augmentation: the backbone never runs per step, so a
check costs the exits' training only; our choice, for speed on a CPU), once per seed, and
evaluated at the thresholds training leaves in its written ``config.yaml``: the trial's own,
or re-tuned ones where training re-tunes them (the summary's ``thresholds`` says which).
Full-training latency is the trial's per-exit latency on the study's profile weighted by the
exit fractions measured after full training (the latency model depends on the design only;
the fractions move).

Compared (:mod:`dse.search.fidelity`): the proxy's val accuracy (the search's objective) with
the fully trained test accuracy (mean over seeds): Spearman and Kendall; the share of the
checked proxy-front trials that stay non-dominated in (test accuracy, test expected latency);
and the seed noise, the same configuration trained with two seeds. The same numbers on val are
under ``val``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from dse.api._report import trial_config
from dse.api._train import train
from dse.design import load_config
from dse.errors import ConfigError
from dse.report.data import study_frames
from dse.train.full import CONFIG, METRICS, MODEL
from dse.search.fidelity import front_kept, kendall, seed_noise, spearman

Log = Callable[[str], None]
#: full-training epochs of a check (our choice: several times the proxy's steps, minutes on a CPU)
CHECK_EPOCHS = 5
#: what a check trains with where the user gives nothing
CHECK_SEEDS = (0,)


@dataclass
class CheckResult:
    """One row per checked trial (``rows``) and the comparison (``summary``, JSON-ready)."""

    rows: pd.DataFrame
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary, "configs": self.rows.to_dict("records")}


def best_front(data, k: int) -> pd.DataFrame:
    """The ``k`` front trials of ``data`` (:class:`dse.report.data.ReportData`) with the best
    proxy accuracy, best first."""
    if k < 1:
        raise ConfigError(f"--check must be >= 1, got {k}")
    front = data.front
    if front.empty:
        raise ConfigError(f"study {data.study_name}: no trial on the front, nothing to check")
    return front.sort_values(["accuracy", "number"], ascending=[False, True]).head(k)


def weighted_latency(fractions: Sequence[float], exit_latency_ms: Sequence[float]) -> float:
    """Expected latency (ms) = sum_k fraction_k * latency of exiting at exit k."""
    if len(fractions) != len(exit_latency_ms):
        raise ConfigError(f"{len(fractions)} exit fractions for {len(exit_latency_ms)} exit "
                          "latencies")
    return float(sum(f * t for f, t in zip(fractions, exit_latency_ms)))


def train_trial(row: pd.Series, meta: dict[str, Any], out_dir: Path, *, epochs: int,
                seed: int, device: str, log: Log | None) -> dict[str, Any]:
    """Fully train one trial's configuration with ``seed``: its val/test accuracy (percent) and
    latency (ms), and whether training re-tuned its thresholds (``retuned``)."""
    number = int(row["number"])
    cfg = trial_config(row["config"], number, meta)
    run = out_dir / f"trial_{number}" / f"seed_{seed}"
    metrics = _finished(run, epochs)
    if metrics is None:
        metrics = train(cfg, epochs=epochs, out=run, mode="frozen", augment=False, seed=seed,
                        device=device, log=None, progress=False).metrics
    out: dict[str, Any] = {"retuned": _retuned(cfg, run)}
    for split in ("val", "test"):
        section = metrics[split]
        out[f"{split}_accuracy"] = float(section["accuracy"])
        out[f"{split}_latency_ms"] = weighted_latency(section["exit_fractions"],
                                                      row["exit_latency_ms"])
    if log:
        log(f"trial {number} seed {seed}: full training {out['val_accuracy']:.2f}% val, "
            f"{out['test_accuracy']:.2f}% test, {out['test_latency_ms']:.4g} ms "
            f"(proxy {float(row['accuracy']):.2f}% val)")
    return out


def _retuned(cfg, run: Path) -> bool:
    """Whether the run's written config holds other thresholds than the trial's (training
    re-tuned them) rather than the trial's own."""
    path = run / CONFIG
    if not path.is_file():
        return False
    trained = load_config(str(path))
    num_early = max(len(trained.exits.blocks), trained.exits.count or 0)
    return trained.policy.per_exit(num_early) != cfg.policy.per_exit(num_early)


def _finished(run: Path, epochs: int) -> dict[str, Any] | None:
    """The metrics of a finished run of ``epochs`` epochs in ``run`` (a check run again reuses
    it), else None; an unfinished or different run there is refused by training itself."""
    path = run / METRICS
    if not (run / MODEL).is_file() or not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return metrics if metrics.get("epochs_run") == epochs else None


def check_trials(trials: pd.DataFrame, meta: dict[str, Any], out_dir: str | Path, *,
                 epochs: int = CHECK_EPOCHS, seeds: Sequence[int] = CHECK_SEEDS,
                 device: str = "cpu", log: Log | None = None) -> CheckResult:
    """Fully train every row of ``trials`` (rows of :attr:`ReportData.trials`, with
    ``on_front``) once per seed, into ``out_dir/trial_N/seed_S/``, and compare with the proxy."""
    if not seeds:
        raise ConfigError("a check needs at least one seed")
    rows = []
    for _, r in trials.iterrows():
        if not isinstance(r.get("config"), dict):
            raise ConfigError(f"trial {int(r['number'])}: no stored configuration to train")
        row = {"number": int(r["number"]), "on_front": bool(r.get("on_front", False)),
               "proxy_accuracy": float(r["accuracy"]), "proxy_latency_ms": float(r["latency_ms"]),
               "proxy_test_accuracy": _float(r.get("test_accuracy"))}
        retuned = []
        for s in seeds:
            got = train_trial(r, meta, Path(out_dir), epochs=epochs, seed=int(s), device=device,
                              log=log)
            retuned.append(got.pop("retuned"))
            row.update({f"{k}_s{s}": v for k, v in got.items()})
        row["retuned"] = all(retuned)
        for key in ("val_accuracy", "test_accuracy", "val_latency_ms", "test_latency_ms"):
            row[f"full_{key}"] = sum(row[f"{key}_s{s}"] for s in seeds) / len(seeds)
        rows.append(row)
    frame = pd.DataFrame(rows)
    return CheckResult(frame, summarize(frame, seeds, epochs))


def _float(value: Any) -> float | None:
    return None if value is None or value != value else float(value)


def _stats(frame: pd.DataFrame, split: str) -> dict[str, Any]:
    proxy = frame["proxy_accuracy"].tolist()
    full = frame[f"full_{split}_accuracy"].tolist()
    return {"spearman": spearman(proxy, full), "kendall": kendall(proxy, full),
            "front_kept": front_kept(frame["on_front"].tolist(), full,
                                     frame[f"full_{split}_latency_ms"].tolist())}


def _thresholds_note(frame: pd.DataFrame) -> str:
    if "retuned" not in frame or not frame["retuned"].any():
        return "the trial's own (not re-tuned)"
    return "re-tuned after full training" if frame["retuned"].all() else "re-tuned for some"


def summarize(frame: pd.DataFrame, seeds: Sequence[int], epochs: int) -> dict[str, Any]:
    """The comparison of :func:`check_trials`' rows (accuracy in percent, latency in ms)."""
    main = _stats(frame, "test")
    noise: dict[str, Any] = {"seeds": [int(s) for s in seeds]}
    if len(seeds) >= 2:
        a, b = seeds[0], seeds[1]
        noise.update({f"test_accuracy_{k}": v for k, v in seed_noise(
            frame[f"test_accuracy_s{a}"].tolist(), frame[f"test_accuracy_s{b}"].tolist()).items()})
        noise["spearman_between_seeds"] = spearman(frame[f"test_accuracy_s{a}"].tolist(),
                                                   frame[f"test_accuracy_s{b}"].tolist())
        noise["front_kept_per_seed"] = [
            front_kept(frame["on_front"].tolist(), frame[f"test_accuracy_s{s}"].tolist(),
                       frame[f"test_latency_ms_s{s}"].tolist()) for s in seeds]
    else:
        noise["note"] = "one seed: no seed noise measured"
    return {**main, "seed_noise": noise, "val": _stats(frame, "val"),
            "n_configs": int(len(frame)), "n_front": int(frame["on_front"].sum()),
            "epochs": int(epochs), "thresholds": _thresholds_note(frame),
            "compared": "proxy val accuracy vs full-training test accuracy (mean over seeds)"}


def front_check(study, out_dir: str | Path, k: int, *, epochs: int = CHECK_EPOCHS,
                seeds: Sequence[int] = CHECK_SEEDS, device: str = "cpu",
                log: Log | None = None) -> CheckResult:
    """``dse report --check K``: fully train the ``k`` best front trials of ``study`` (by proxy
    accuracy) into ``out_dir/check/``; write ``check.csv`` (one row per trial) and
    ``check.json`` (the summary) into ``out_dir``."""
    if epochs < 1:
        raise ConfigError(f"--check-epochs must be >= 1, got {epochs}")
    data = study_frames(study, importances=False)
    chosen = best_front(data, k)
    if log:
        log(f"checking {len(chosen)} front configuration(s): full training, {epochs} epochs, "
            f"seed(s) {', '.join(map(str, seeds))}")
    result = check_trials(chosen, data.meta, Path(out_dir) / "check", epochs=epochs, seeds=seeds,
                          device=device, log=log)
    result.rows.to_csv(Path(out_dir) / "check.csv", index=False)
    (Path(out_dir) / "check.json").write_text(json.dumps(result.summary, indent=2) + "\n")
    return result
