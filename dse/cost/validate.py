"""Check a profile's latency model against measured early-exit latency on this machine.

For each case (backbone x exit configuration) the real deployment path,
:meth:`dse.models.multiexit.MultiExitNet.early_exit` at batch 1, is timed once per exit with
thresholds that force every input out at that exit, so the time is "reach and evaluate exit n"
(all earlier branches and decisions included). A case is timed warm, as deployed (warm-up, then
its exits round-robin); the samples of each exit are spread over several passes over all cases,
so a burst of load on a shared machine hits one pass of everything rather than every sample of
one case; the median sample is kept (``statistic="min"`` keeps the least disturbed one, for a
loaded machine; calibrate with the same statistic). The model predicts the same quantity from the traced
records (:func:`dse.cost.latency.predict`).

Reported: mean absolute percentage error, the fraction of exits within +-10 %, and Spearman's
rank correlation, for the model and for the MACs-only baseline that nn-Meter (Zhang et al.,
MobiSys 2021) compares against: latency = s x MACs, with the one slope s fitted to these very
measurements by least relative squared error (s = sum r_i / sum r_i^2, r_i = MACs_i / t_i), which
flatters the baseline.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.stats import rankdata

from dse.cost.assemble import assemble, default_input_spec
from dse.cost.latency import predict
from dse.cost.op_trace import trace_multiexit
from dse.cost.microbench import STATISTICS, forcing_thresholds, measure_samples, timer
from dse.cost.profiles import Profile, Runtime
from dse.device import set_threads
from dse.models.backbones import build_backbone

#: Backbones validated by default with their input size (CPU-sized: a run takes minutes).
DEFAULT_BACKBONES = (("digits-resnet", 8), ("resnet8", 32), ("resnet20", 32), ("resnet56", 32),
                     ("vgg11-3block", 32), ("mobilenetv2", 224), ("resnet18", 224))
#: Exit configurations: (number of early exits, placement rule, branch type).
DEFAULT_EXIT_CONFIGS = ((1, "pareto", "pool"), (2, "linear", "bnpool"), (3, "golden", "convx"))


@dataclass(frozen=True)
class Case:
    backbone: str
    input_size: int | None
    num_exits: int
    placement: str
    branch: str


def default_cases(quick: bool = False) -> list[Case]:
    if quick:
        return [Case("digits-resnet", 8, 2, "linear", "pool"), Case("resnet8", 32, 1, "pareto", "bnpool")]
    return [Case(b, size, n, p, br) for b, size in DEFAULT_BACKBONES
            for n, p, br in DEFAULT_EXIT_CONFIGS]


@dataclass(frozen=True)
class ValidationSettings:
    rounds: int = 12             # samples per exit in all (median kept) ...
    passes: int = 4              # ... spread over this many passes over every case
    target_ms: float = 15.0      # wall time of one timed sample (inner loop of calls)
    threads: int | None = None   # None: the runtime's threads, else all cores
    criterion: str = "maxprob"   # the exit criterion of the timed path (calibrate's default)
    quick: bool = False          # two tiny cases (tests, smoke runs)
    clock: str = "auto"          # wall, cpu, or auto (cpu time when single-threaded)
    statistic: str = "median"    # of the samples of an exit: median, or min on a loaded machine


def _ranks(values: Sequence[float]) -> list[float]:
    return list(rankdata(values))


def summarize(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """MAPE (%), fraction within +-10 % and Spearman's rho of predictions against measurements."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    err = np.abs(p / m - 1.0)
    rho = float(np.corrcoef(_ranks(p), _ranks(m))[0, 1]) if len(p) > 1 else float("nan")
    return {"n": int(len(p)), "mape": round(float(100 * err.mean()), 3),
            "within_10pct": round(float((err <= 0.10).mean()), 4), "spearman": round(rho, 4)}


def macs_baseline(macs: Sequence[float], measured_ms: Sequence[float]) -> tuple[float, list[float]]:
    """Fitted ms-per-MAC slope s (least relative squared error) and its predictions."""
    r = [m / t for m, t in zip(macs, measured_ms)]
    slope = sum(r) / sum(x * x for x in r)
    return slope, [slope * m for m in macs]


def validate(profile: Profile, runtime: str | None = None,
             settings: ValidationSettings = ValidationSettings(), cases: Sequence[Case] | None = None,
             log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure per-exit latency of every case here and compare it with the model."""
    rt = profile.runtime(runtime)
    threads = set_threads(settings.threads or rt.threads)
    clock = timer(settings.clock, threads)
    load_before = _load()
    rows: list[dict[str, Any]] = []
    groups: list[list[Callable[[], Any]]] = []  # the exits of each case
    for case in cases or default_cases(settings.quick):
        case_rows, fns = _case_exits(case, profile, rt, settings.criterion)
        rows += case_rows
        groups.append(fns)
    # Each pass times every case in turn (warm-up, then its exits round-robin), so a case runs
    # warm as deployed, and the passes spread each case over the whole run: a burst of load on a
    # shared machine hits one pass of every case rather than every round of one case.
    passes = max(1, min(settings.passes, settings.rounds))
    per_pass = max(1, round(settings.rounds / passes))
    samples: list[list[float]] = [[] for _ in rows]
    with torch.no_grad():
        for p in range(passes):
            log(f"pass {p + 1}/{passes}: timing {len(rows)} exits of {len(groups)} configurations")
            i = 0
            for fns in groups:
                for j, s in enumerate(measure_samples(fns, per_pass, settings.target_ms / 1e3,
                                                      clock=clock)):
                    samples[i + j] += s
                i += len(fns)
    seconds = [STATISTICS[settings.statistic](s) for s in samples]
    for row, t in zip(rows, seconds):
        row["measured_ms"] = round(t * 1e3, 5)
        row["error"] = round(row["predicted_ms"] / (t * 1e3) - 1, 4)
    measured = [r["measured_ms"] for r in rows]
    slope, base = macs_baseline([r["cum_macs"] for r in rows], measured)
    return {
        "profile": profile.name, "runtime": rt.name, "threads": threads,
        "clock": "cpu" if clock is not time.perf_counter else "wall",
        "criterion": settings.criterion, "statistic": settings.statistic,
        **summarize([r["predicted_ms"] for r in rows], measured),
        "baseline": {"model": "latency = s x MACs (s fitted to these measurements)",
                     "ms_per_gmac": round(slope * 1e9, 4), **summarize(base, measured)},
        "load_avg": {"before": load_before, "after": _load()},
        "rows": rows,
    }


def _case_exits(case: Case, profile: Profile, rt: Runtime,
                criterion: str) -> tuple[list[dict[str, Any]], list[Callable[[], Any]]]:
    """One row (predicted ms) and one timed call forcing that exit, for every exit of ``case``."""
    torch.manual_seed(0)
    inputs = default_input_spec(case.backbone, case.input_size)
    backbone = build_backbone(case.backbone, num_classes=inputs.num_classes,
                              in_channels=inputs.in_channels)
    num_exits = min(case.num_exits, len(backbone.blocks) - 1)
    a = assemble(backbone, inputs, num_exits, case.placement, case.branch)
    model = a.model.eval()
    blocks = list(model.exit_blocks)
    records = trace_multiexit(model.backbone, inputs.shape, blocks, list(model.branches))
    pred = predict(records, profile, rt)
    x = torch.randn(1, *inputs.shape)
    final_block = len(model.backbone.blocks) - 1
    rows, fns = [], []
    for k in range(len(blocks) + 1):
        ths = forcing_thresholds(criterion, len(blocks), k)
        fn = lambda m=model, x=x, t=ths: m.early_exit(x, criterion, t)  # noqa: E731
        got = int(fn()[1][0])
        if got != k:  # the thresholds really force exit k
            raise AssertionError(f"{case}: forced exit {k} but the sample left at {got}")
        fns.append(fn)
        rows.append({
            "backbone": case.backbone, "input_size": inputs.input_size,
            "exits": len(blocks), "placement": case.placement, "branch": case.branch,
            "exit": k, "block": blocks[k] if k < len(blocks) else final_block,
            "cum_macs": a.exit_macs[k], "predicted_ms": round(pred.exit_ms[k], 5),
        })
    return rows, fns


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return []
