"""Check a profile's latency model against measured early-exit latency on this machine.

For each case (backbone x exit configuration) the real deployment path,
:meth:`dse.models.multiexit.MultiExitNet.early_exit` at batch 1, is timed once per exit with
thresholds that force every input out at that exit, so the time is "reach and evaluate exit n"
(all earlier branches and decisions included). A case is timed warm, as deployed (warm-up, then
its exits round-robin); the samples of each exit are spread over several passes over all cases,
so a burst of load on a shared machine hits one pass of everything rather than every sample of
one case; the median sample is kept (``statistic="min"`` keeps the least disturbed one, for a
loaded machine; calibrate with the same statistic). Samples count in units of a reference
kernel timed around each, converted back at the profile runtime's calibrated ``reference_us``,
so a machine running slower now than at calibration does not read as a model error. This is
the shared harness (:mod:`dse.cost.harness`); the same exits through ONNX Runtime bundles are
:mod:`dse.export.ort_validate`. The model predicts the same quantity from the traced
records (:func:`dse.cost.latency.predict`).

Beside every validation: ``repeatability``, the share of exits whose two halves of the samples
(the first half of the passes and the second) agree within +-10 % (``repeatability_raw``: the
same in plain seconds, without the reference).

Reported (:func:`report`): the statistics and checks of :mod:`dse.cost.validation_stats` (MAPE,
the share within +-10 %, Spearman's rho, the MACs-only baseline, the per-backbone errors, the
speed and level-shift warnings).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from dse.cost.assemble import InputSpec, assemble, default_input_spec
from dse.cost.harness import DEFAULT_REFERENCE, LEGACY_REFERENCE, Timing, time_groups
from dse.cost.latency import predict
from dse.cost.microbench import clock_name, reference_kernel, timer
from dse.cost.network_bench import forcing_thresholds
from dse.cost.op_trace import trace_multiexit
from dse.cost.profiles import Profile, Runtime
from dse.cost.validation_stats import (by_backbone, join_warnings, level_check, macs_baseline,
                                       speed_check, summarize)
from dse.device import set_threads
from dse.errors import ConfigError
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
        return [Case("digits-resnet", 8, 2, "linear", "pool"),
                Case("resnet8", 32, 1, "pareto", "bnpool")]
    return [Case(b, size, n, p, br) for b, size in DEFAULT_BACKBONES
            for n, p, br in DEFAULT_EXIT_CONFIGS]


@dataclass(frozen=True)
class ValidationSettings:
    rounds: int = 40             # samples per exit in all (median kept) ...
    passes: int = 8              # ... spread over this many passes over every case
    target_ms: float = 3.0       # wall time of one timed sample (inner loop of calls)
    threads: int | None = None   # None: the runtime's threads, else all cores
    criterion: str = "maxprob"   # the exit criterion of the timed path (calibrate's default)
    quick: bool = False          # two tiny cases (tests, smoke runs)
    clock: str = "auto"          # wall, cpu, or auto (cpu time when single-threaded)
    statistic: str = "median"    # of an exit's samples: median, trimmed (mean), q25, or min
    reference: bool = True       # count samples in reference units (dse.cost.harness)


def validate(profile: Profile, runtime: str | None = None,
             settings: ValidationSettings = ValidationSettings(),
             cases: Sequence[Case] | None = None,
             log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure per-exit latency of every case here (PyTorch eager) and compare it with the model."""
    rt = profile.runtime(runtime)
    threads = set_threads(settings.threads or rt.threads)
    clock = timer(settings.clock, threads)
    load_before = load_average()
    exits = pytorch_exits(settings, cases)
    with torch.no_grad():
        timing = time_exits(exits.groups, settings, clock, log, rt)
    return compare(profile, rt, exits, timing, settings, threads=threads,
                   clock=clock_name(clock),
                   load_before=load_before, engine="pytorch")


@dataclass(frozen=True)
class CaseExits:
    """The cases of a validation, ready to time: each case's model, input spec and cumulative
    MACs per exit, and per case the calls that run it out of each exit in turn (one group)."""

    cases: tuple[tuple[Case, Any, InputSpec, tuple[int, ...]], ...]
    groups: tuple[tuple[Callable[[], Any], ...], ...]


def pytorch_exits(settings: ValidationSettings, cases: Sequence[Case] | None = None) -> CaseExits:
    """Every case's exits through :meth:`MultiExitNet.early_exit` at batch 1, each call forced
    out at its exit by the thresholds (checked once here)."""
    built, groups = [], []
    for case in cases or default_cases(settings.quick):
        model, inputs, exit_macs = case_model(case)
        x = torch.randn(1, *inputs.shape)
        last = len(model.exit_blocks)
        fns = []
        for k in range(last + 1):
            ths = forcing_thresholds(settings.criterion, last, k)
            fn = lambda m=model, x=x, t=ths: m.early_exit(x, settings.criterion, t)  # noqa: E731
            check_forced(case, k, int(fn()[1][0]))
            fns.append(fn)
        built.append((case, model, inputs, tuple(exit_macs)))
        groups.append(tuple(fns))
    return CaseExits(tuple(built), tuple(groups))


def compare(profile: Profile, rt: Runtime, exits: CaseExits, timing: Timing,
            settings: ValidationSettings, **context: Any) -> dict[str, Any]:
    """The model's predictions for every exit of ``exits`` against ``timing`` (their measured
    times, in the order of ``exits.groups``): :func:`report` with ``context`` (threads, clock,
    load_before, engine, ...)."""
    rows = [row for case, model, inputs, macs in exits.cases
            for row in exit_rows(case, model, inputs, macs, profile, rt)]
    return report(profile, rt, rows, timing, settings, **context)


def time_exits(groups: Sequence[Sequence[Callable[[], Any]]], settings: ValidationSettings,
               clock: Callable[[], float], log: Callable[[str], None], rt: Runtime,
               reference: Callable[[], Any] | None = None) -> Timing:
    """Time every exit with the shared harness (:func:`dse.cost.harness.time_groups`).

    Each pass times every case in turn (warm-up, then its exits round robin), so a case runs
    warm as deployed, and the passes spread each case over the whole run: a burst of load on a
    shared machine hits one pass of every case rather than every sample of one case. With
    ``settings.reference``, samples count in units of the reference kernel (``reference``,
    default the runtime's own, :func:`reference_name`) converted back at the runtime's calibrated
    ``reference_us`` (this run's own reference time when the profile has none), so the
    machine's speed at calibration and at validation cancels out.
    """
    ref_s = rt.reference_us / 1e6 if rt.reference_us else None
    if settings.reference and reference is None:
        reference = reference_kernel(reference_name(rt))
    return time_groups(groups, rounds=settings.rounds, passes=settings.passes,
                       target_s=settings.target_ms / 1e3, clock=clock,
                       statistic=settings.statistic, log=log,
                       reference=reference if settings.reference else None, reference_s=ref_s)


def reference_name(rt: Runtime) -> str:
    """The reference kernel a validation of ``rt`` brackets its samples with: the one its
    calibration used (its ``reference_us`` is that kernel's time; unnamed, the legacy one, as
    the profile reader and writer take it), else the default."""
    if rt.reference_us:
        return rt.reference or LEGACY_REFERENCE
    return DEFAULT_REFERENCE


def report(profile: Profile, rt: Runtime, rows: list[dict[str, Any]], timing: Timing,
           settings: ValidationSettings, *, threads: int, clock: str, load_before: list[float],
           engine: str, **extra: Any) -> dict[str, Any]:
    """The validation result: per-exit rows with their measurements, the model's and the
    MACs-only baseline's summaries, and the measurement's ``repeatability``."""
    seconds = timing.seconds()
    first, second = timing.halves()
    for row, t, a, b in zip(rows, seconds, first, second):
        row["measured_ms"] = round(t * 1e3, 5)
        row["measured_halves_ms"] = [round(a * 1e3, 5), round(b * 1e3, 5)]
        row["error"] = round(row["predicted_ms"] / (t * 1e3) - 1, 4)
    measured = [r["measured_ms"] for r in rows]
    slope, base = macs_baseline([r["cum_macs"] for r in rows], measured)
    summary = summarize([r["predicted_ms"] for r in rows], measured)
    return {
        "profile": profile.name, "runtime": rt.name, "engine": engine, **extra,
        "threads": threads, "clock": clock, "criterion": settings.criterion,
        "statistic": settings.statistic, "rounds": settings.rounds, "passes": settings.passes,
        **summary,
        "repeatability": round(timing.repeatability(), 4),
        "repeatability_meaning": "share of exits whose two halves of the samples (first and "
                                 "second half of the passes) agree within +-10%",
        "repeatability_raw": round(timing.raw().repeatability(), 4),
        "reference_us": (round(timing.reference_s * 1e6, 3) if timing.reference_s is not None
                         else None),
        "reference": reference_name(rt) if timing.references is not None else None,
        **join_warnings(speed_check(timing),
                        level_check([r["error"] for r in rows], summary["spearman"])),
        "by_backbone": by_backbone(rows),
        "baseline": {"model": "latency = s x MACs (s fitted to these measurements)",
                     "ms_per_gmac": round(slope * 1e9, 4), **summarize(base, measured)},
        "load_avg": {"before": load_before, "after": load_average()},
        "rows": rows,
    }


def case_model(case: Case) -> tuple[Any, InputSpec, list[int]]:
    """(multi-exit model in eval mode, its input spec, cumulative MACs per exit) of a case
    (seeded random weights: latency does not depend on what they learned)."""
    torch.manual_seed(0)
    inputs = default_input_spec(case.backbone, case.input_size)
    backbone = build_backbone(case.backbone, num_classes=inputs.num_classes,
                              in_channels=inputs.in_channels)
    attach_points = len(backbone.blocks) - 1 - backbone.first_attach  # the stem is skipped
    for n in range(min(case.num_exits, attach_points), 0, -1):
        try:  # a rule may fit fewer exits than asked on a short backbone: take what fits
            a = assemble(backbone, inputs, n, case.placement, case.branch)
            break
        except ConfigError:
            continue
    else:
        a = assemble(backbone, inputs, 0, case.placement, case.branch)
    return a.model.eval(), inputs, list(a.exit_macs)


def exit_rows(case: Case, model: Any, inputs: InputSpec, exit_macs: Sequence[int],
              profile: Profile, rt: Runtime) -> list[dict[str, Any]]:
    """One row per exit of ``model`` (early exits, then the final) with the model's prediction."""
    blocks = list(model.exit_blocks)
    records = trace_multiexit(model.backbone, inputs.shape, blocks, list(model.branches),
                              threads=rt.threads)
    pred = predict(records, profile, rt)
    final_block = len(model.backbone.blocks) - 1
    return [{
        "backbone": case.backbone, "input_size": inputs.input_size,
        "exits": len(blocks), "placement": case.placement, "branch": case.branch,
        "exit": k, "block": blocks[k] if k < len(blocks) else final_block,
        "cum_macs": exit_macs[k], "predicted_ms": round(pred.exit_ms[k], 5),
    } for k in range(len(blocks) + 1)]


def check_forced(case: Case, wanted: int, got: int) -> None:
    """The forcing thresholds really send the sample out at exit ``wanted``."""
    if got != wanted:
        raise AssertionError(f"{case}: forced exit {wanted} but the sample left at {got}")


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where the platform has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return []
