"""Time the micro-benchmarks ``dse profile calibrate`` fits a profile to, on this machine.

Holds the calibration's settings, what the timing run returns (:class:`Measurements`, the fit's
input: :func:`dse.cost.calibrate.fit_profile`) and the run itself: single ops
(:mod:`dse.cost.microbench`) and whole networks (:mod:`dse.cost.network_bench`) interleaved by
:mod:`dse.cost.harness`, in eager PyTorch at batch 1 with the thread count the profile then
records. Kept apart from the fit, which stays a pure function of numbers.

The decision and per-inference costs are measured directly on ``MultiExitNet.early_exit``.
Every sample counts in units of a reference kernel timed around it (:mod:`dse.cost.harness`),
converted back at the reference's median time over the calibration's run
(:func:`at_run_reference`), recorded as the runtime's ``reference_us`` for validation to
convert at.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import torch

from dse.cost import microbench as mb
from dse.cost.harness import DEFAULT_REFERENCE, Timing, moved, time_groups
from dse.cost.layout import DEFAULT_BLOCK
from dse.cost.network_bench import composite_benchmarks, exit_path_costs
from dse.cost.op_trace import LayerRecord
from dse.device import set_threads


@dataclass(frozen=True)
class CalibrationSettings:
    rounds: int = 24             # samples of every benchmark, interleaved (round robin)
    target_ms: float = 2.0       # time of one timed sample (inner loop of calls)
    threads: int | None = None   # torch intra-op threads (None: all cores)
    criterion: str = "maxprob"   # exit criterion whose decision cost is measured
    quick: bool = False          # a small grid (tests, smoke runs)
    power_w: float = 15.0        # not measurable here; recorded for energy
    clock: str = "auto"          # wall, cpu, or auto (cpu time when single-threaded)
    statistic: str = "median"    # of the rounds: median, trimmed (mean), q25, or min
    passes: int = 4              # the rounds are spread over this many passes (dse.cost.harness)
    reference: bool = True       # count samples in reference units (dse.cost.harness)
    reference_kernel: str = DEFAULT_REFERENCE  # which (dse.cost.harness.REFERENCES)


@dataclass(frozen=True)
class Measurements:
    """What the benchmarks measured: (kind, records, seconds) cases and the fixed costs."""

    cases: tuple[tuple[str, tuple[LayerRecord, ...], float], ...]
    peak_gflops: float            # best matrix-product throughput
    call_us: float                # nn.Identity() call in a tight loop
    decision_us: float
    inference_us: float
    threads: int
    runtime: str = "host"         # name of the fitted runtime
    description: str = ""         # what was timed (engine, dtype, threads, batch)
    fusion: bool = False          # the runtime fuses conv+bn(+add)(+relu) into one kernel
    graph_run_us: float = 0.0     # per graph run of a cut network (ONNX Runtime session run)
    engine: str = "PyTorch eager"
    reference_us: float = 0.0     # reference kernel's time the samples were converted at (0: none)
    reference: str = DEFAULT_REFERENCE  # that kernel (dse.cost.harness.REFERENCES)
    blocked_layout: bool = False  # convolutions run in a blocked layout (dse.cost.layout) ...
    reorder_us: float = 0.0       # ... whose reorders cost this each ...
    reorder_us_per_kelem: float = 0.0  # ... plus this per 1000 elements, ...
    layout_block: int = DEFAULT_BLOCK  # ... and its channel block (dse.cost.layout)


def run_benchmarks(settings: CalibrationSettings = CalibrationSettings(),
                   log: Callable[[str], None] = lambda _: None) -> Measurements:
    """Time every micro-benchmark on this machine (interleaved rounds, medians)."""
    return time_benchmarks(settings, log)[0]


def time_benchmarks(settings: CalibrationSettings = CalibrationSettings(),
                    log: Callable[[str], None] = lambda _: None,
                    co_timed: Sequence[Sequence[Callable[[], Any]]] = ()
                    ) -> tuple[Measurements, Timing | None]:
    """:func:`run_benchmarks`, timing the groups of ``co_timed`` in the same passes (after the
    benchmarks in each pass, :func:`dse.cost.harness.time_groups`): their :class:`Timing`
    (None without groups) is converted at the reference time the measurements are (see
    :func:`co_timed_share`), so the two were taken in the same machine states."""
    threads = set_threads(settings.threads)
    clock = mb.timer(settings.clock, threads)
    started = time.perf_counter()
    target_s = settings.target_ms / 1e3
    log(f"timing micro-benchmarks with {threads} thread(s) ...")
    with torch.no_grad():
        ref = mb.reference_kernel(settings.reference_kernel) if settings.reference else None
        ref_s = mb.reference_seconds(ref, clock) if ref else None
        peak = mb.peak_gflops(settings.rounds, settings.quick, clock, ref, ref_s)
        benches = mb.op_benchmarks(settings.quick) + composite_benchmarks(settings.quick,
                                                                          settings.criterion)
        timing = time_groups([[fn for _, fn, _ in benches], *co_timed], rounds=settings.rounds,
                             passes=settings.passes, target_s=target_s, clock=clock,
                             statistic=settings.statistic, reference=ref, reference_s=ref_s,
                             log=log if co_timed else lambda _: None)
        call_us, decision_us, inference_us = exit_path_costs(
            settings.criterion, settings.rounds, target_s, clock, settings.statistic, ref, ref_s)
    log(f"timed {len(benches)} micro-benchmarks in {time.perf_counter() - started:.0f} s")
    seconds = timing.items(0, len(benches)).seconds()  # the co-timed items are not the fit's
    m = Measurements(tuple((k, tuple(r), t) for (k, _, r), t in zip(benches, seconds)),
                     peak, call_us, decision_us, inference_us, threads,
                     reference_us=ref_s * 1e6 if ref_s else 0.0,
                     reference=settings.reference_kernel)
    m = at_run_reference(m, timing.reference_now_s(), log)
    return m, co_timed_share(timing, len(benches), m)


def co_timed_share(timing: Timing, first: int, m: Measurements) -> Timing | None:
    """The items from ``first`` on of a calibration run's timing (the co-timed groups), converted
    at the reference time the measurements ``m`` were converted at (:func:`at_run_reference`),
    so a model fitted to ``m`` and these items' times are in the same units; None when nothing
    was co-timed (no items from ``first`` on)."""
    if first >= len(timing.samples):
        return None
    return timing.items(first, None, reference_s=m.reference_us / 1e6 if m.reference_us else None)


def at_run_reference(m: Measurements, run_reference_s: float | None,
                     log: Callable[[str], None] = lambda _: None) -> Measurements:
    """``m`` converted at ``run_reference_s``, the median reference time over the whole run,
    instead of the snapshot taken before it (``m.reference_us``), which saw a few tens of ms.

    Every sample counts in reference units, so the conversion scales every time alike (and the
    peak inversely) and leaves the fit's relative errors as they were; what it fixes is the
    level the profile records and the ``reference_us`` validation compares its own reference
    with (:func:`dse.cost.validation_stats.speed_check`). On the 2-core VM this was built on, a
    calibration began while the reference took 142 us against 74 us in other runs: with the
    snapshot, the profile was about twice too slow and a validation in that same slow state
    saw no change of state. A snapshot off the run's median by more than
    ``dse.cost.harness.SPEED_TOLERANCE`` is logged.
    """
    if not run_reference_s or not m.reference_us:
        return m
    factor = run_reference_s * 1e6 / m.reference_us
    if moved(factor):
        log(f"the reference kernel ran at {1 / factor:.2f}x its run median just before the "
            "benchmarks: the machine changed state; converting at the run's median")
    return replace(m, cases=tuple((k, r, t * factor) for k, r, t in m.cases),
                   peak_gflops=m.peak_gflops / factor, call_us=m.call_us * factor,
                   decision_us=m.decision_us * factor, inference_us=m.inference_us * factor,
                   graph_run_us=m.graph_run_us * factor, reorder_us=m.reorder_us * factor,
                   reorder_us_per_kelem=m.reorder_us_per_kelem * factor,
                   reference_us=run_reference_s * 1e6)
