"""Latency-model accuracy on this machine: calibrate, then validate, for PyTorch and ONNX Runtime.

For each runtime (``--runtimes``, default both):

1. calibrate: ``dse profile calibrate --runtime pytorch`` (eager micro-benchmarks, runtime
   ``host``) or ``--runtime onnxruntime`` (the same micro-benchmarks exported to ONNX and timed
   through ONNX Runtime, composites run by the bundle runner; runtime ``onnxruntime-cpu-fp32``,
   fusion on), written to a temporary folder and read back;
2. validate: ``dse profile validate`` on 7 backbones x 3 exit configurations (seeded random
   weights), every exit forced in turn at batch 1: PyTorch through
   ``MultiExitNet.early_exit``, ONNX Runtime through bundles exported by ``dse export``'s code
   and run by the bundle runner (``dse run``'s early-exit path);
3. report: the share of exits within +-10 %, Spearman's rho, MAPE, the MACs-only baseline
   (latency = s x MACs with s fitted to the same measurements, as nn-Meter compares against),
   and ``repeatability``: the share of exits whose two halves of the samples (first and second
   half of the passes) agree within +-10 %, the ceiling of ``within_10pct`` on this machine now.

Both use the shared timing harness (dse/cost/harness.py): round robin, many short samples, a
robust statistic (``--statistic``, median by default), one pinned thread by default (timed as
that thread's CPU time, which other processes' time slices do not inflate), and samples counted
in units of a reference convolution timed around each (``--no-reference``: plain seconds),
converted back at the reference time the calibration recorded (``reference_us``), so that
calibration and validation report at one speed of a machine whose speed swings. Each result
has ``repeatability`` (in reference units) and ``repeatability_raw`` (plain seconds).
Each result also has ``speed_ratio``: the reference's median time in this validation over its
calibration time, with a ``warning`` beyond 1.2x either way (the machine is in another state,
and errors mix model and machine), and ``by_backbone``, each network's median error and share
within +-10 % (``median_error_by_backbone`` gathers the medians of both runtimes at the top).
``--profiles DIR`` validates the profiles an earlier run wrote to ``--out DIR`` without
calibrating again: two such runs are two validations of the same profiles, whose
``measured_ms`` can be compared exit by exit. The load average
(``os.getloadavg``) at the start and end is reported with ``machine_busy`` (1-minute load above
half the cores): on a shared machine timings drift with other processes' load (they contend
for the shared caches and memory), and the targets below are for a machine at rest.

``--co-timed`` times the validation exits in the calibration's own passes instead (one run of
the harness, round robin with the micro-benchmarks; the exits get the calibration's samples and
passes), then fits the profile and compares: calibration and validation see the same machine
states, so what remains is the model's error and the drift of the machine within one run, not
its drift between a calibration and a later validation.

Targets (issue 13): within +-10 % on >= 90 % of exits, Spearman >= 0.98, repeatability >= 0.95.
``--quick`` (tiny grid, two cases) is a smoke test for the test suite, not a measurement.

    python benchmarks/latency_model.py --json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from dse.cost.harness import DEFAULT_REFERENCE, REFERENCES

ENGINES = ("pytorch", "onnxruntime")


def run_engine(engine: str, args: argparse.Namespace, folder: str,
               log) -> dict:
    """Calibrate then validate one runtime here; the summary and the checks."""
    from dse.cost.calibrate import CalibrationSettings, calibrate, write_profile
    from dse.cost.profiles import read_profile
    from dse.cost.validate import ValidationSettings, validate
    from dse.export.ort_calibrate import calibrate_ort
    from dse.export.ort_validate import validate_ort

    settings = CalibrationSettings(threads=args.threads, quick=args.quick,
                                   statistic=args.statistic, reference=args.reference,
                                   reference_kernel=args.reference_kernel)
    check = ValidationSettings(threads=args.threads, quick=args.quick, statistic=args.statistic,
                               reference=args.reference)
    if args.co_timed:
        return _checked(co_timed_run(engine, settings, check, folder, log))
    started = time.perf_counter()
    name = f"host-{engine}"
    path = os.path.join(args.profiles or folder, f"{name}.yaml")
    if not args.profiles:
        profile = (calibrate_ort(name, settings, log=log) if engine == "onnxruntime"
                   else calibrate(name, settings, log=log))
        path = str(write_profile(profile, path, header="Fitted by benchmarks/latency_model.py"))
    calibrate_s = time.perf_counter() - started
    profile = read_profile(path)  # validate what was written
    started = time.perf_counter()
    result = (validate_ort(profile, settings=check, log=log) if engine == "onnxruntime"
              else validate(profile, settings=check, log=log))
    validate_s = time.perf_counter() - started
    return _checked({"profile_path": path, "calibrate_s": round(calibrate_s, 1),
                     "validate_s": round(validate_s, 1), **result})


def co_timed_run(engine: str, settings, check, folder: str, log) -> dict:
    """``--co-timed``: the validation exits timed in the calibration's own passes, round robin
    with its micro-benchmarks (one run of the harness), then the profile fitted to the
    micro-benchmarks and compared with the exits' times. Calibration and validation see the
    same machine states, so the error is the model's and the machine's drift within one run,
    without its drift between a calibration and a later validation (which a separate
    validation adds)."""
    import dataclasses

    import torch

    from dse.cost.calibrate import fit_profile, time_benchmarks, write_profile
    from dse.cost.microbench import clock_name, timer
    from dse.cost.profiles import read_profile
    from dse.cost.validate import compare, load_average, pytorch_exits
    from dse.device import set_threads
    from dse.export.ort_bench import DEFAULT_PROVIDER
    from dse.export.ort_calibrate import time_ort_benchmarks
    from dse.export.ort_validate import ort_exits

    check = dataclasses.replace(check, rounds=settings.rounds, passes=settings.passes)
    threads = set_threads(settings.threads)
    load_before, started = load_average(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dse-co-timed-") as tmp, torch.no_grad():
        if engine == "onnxruntime":
            exits = ort_exits(check, Path(tmp), DEFAULT_PROVIDER, threads, log=log)
            m, timing = time_ort_benchmarks(settings, log=log, co_timed=exits.groups)
        else:
            exits = pytorch_exits(check)
            m, timing = time_benchmarks(settings, log, co_timed=exits.groups)
    name = f"host-{engine}"
    path = str(write_profile(fit_profile(name, m, settings), os.path.join(folder, f"{name}.yaml"),
                             header="Fitted by benchmarks/latency_model.py --co-timed"))
    profile = read_profile(path)
    rt = profile.runtime(None)
    result = compare(profile, rt, exits, timing, check, threads=threads,
                     clock=clock_name(timer(settings.clock, threads)),
                     load_before=load_before, engine=engine, co_timed=True,
                     **({"provider": DEFAULT_PROVIDER} if engine == "onnxruntime" else {}))
    return {"profile_path": path, "calibrate_s": round(time.perf_counter() - started, 1),
            "validate_s": 0.0, **result}  # the exits were timed within calibrate_s


def _checked(result: dict) -> dict:
    """``result`` with the issue's checks and whether all passed."""
    base = result["baseline"]
    checks = {
        "within_10pct_ge_0.9": result["within_10pct"] >= 0.9,
        "spearman_ge_0.98": result["spearman"] >= 0.98,
        "repeatability_ge_0.95": result["repeatability"] >= 0.95,
        "beats_macs_baseline": (result["mape"] < base["mape"]
                                and result["within_10pct"] > base["within_10pct"]),
    }
    return {**result, "checks": checks, "passed": all(checks.values())}


def run(args: argparse.Namespace) -> dict:
    log = (lambda m: print(m, file=sys.stderr)) if args.verbose else (lambda m: None)
    folder = args.out or tempfile.mkdtemp(prefix="dse-latency-")
    load_start, started = _load(), time.perf_counter()
    results = {engine: run_engine(engine, args, folder, log) for engine in args.runtimes}
    load_end = _load()
    cores = os.cpu_count() or 1
    return {"cores": cores, "threads": args.threads, "statistic": args.statistic,
            "quick": args.quick, "load_avg_start": load_start, "load_avg_end": load_end,
            "machine_busy": max(load_start[:1] + load_end[:1] or [0.0]) > 0.5 * cores,
            "total_s": round(time.perf_counter() - started, 1),
            "reference": args.reference,
            "summary": {e: {k: r.get(k) for k in ("n", "within_10pct", "spearman", "mape",
                                                  "repeatability", "repeatability_raw",
                                                  "reference_us", "speed_ratio", "calibrate_s",
                                                  "validate_s")}
                        for e, r in results.items()},
            "median_error_by_backbone": {e: {b: v["median_error"]
                                             for b, v in r["by_backbone"].items()}
                                         for e, r in results.items()},
            **results, "passed": all(r["passed"] for r in results.values())}


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtimes", type=lambda s: s.split(","), default=list(ENGINES),
                        help="comma-separated: pytorch, onnxruntime (default both)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for calibration and validation (default 1)")
    parser.add_argument("--out", default=None, help="folder for the calibrated profile YAMLs")
    parser.add_argument("--quick", action="store_true", help="tiny grid and two cases (smoke test)")
    parser.add_argument("--statistic", choices=["median", "trimmed", "q25", "min"],
                        default="median",
                        help="statistic of the timed samples, for calibration and validation "
                             "alike (default median; min on a loaded machine)")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="time in plain seconds, not in units of the reference kernel")
    parser.add_argument("--reference-kernel", choices=sorted(REFERENCES),
                        default=DEFAULT_REFERENCE,
                        help=f"reference kernel of the calibration (default {DEFAULT_REFERENCE}; "
                             "validation uses the profile's own)")
    parser.add_argument("--profiles", default=None,
                        help="validate the host-<runtime>.yaml profiles of an earlier run's --out "
                             "folder instead of calibrating (a repeatability check)")
    parser.add_argument("--co-timed", action="store_true",
                        help="time the validation exits in the calibration's own passes (one "
                             "harness run): the model's error with the machine's state held "
                             "alike for both")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    bad = [e for e in args.runtimes if e not in ENGINES]
    if bad:
        parser.error(f"--runtimes: unknown {', '.join(bad)}; expected {', '.join(ENGINES)}")
    if args.co_timed and args.profiles:
        parser.error("--co-timed calibrates in the same run; it cannot validate --profiles")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['cores']} cores, {result['threads']} thread(s), {result['statistic']} of "
              f"samples, load average {result['load_avg_start']} -> {result['load_avg_end']}"
              f"{' (busy machine)' if result['machine_busy'] else ''}, {result['total_s']} s")
        for engine in args.runtimes:
            r = result[engine]
            b = r["baseline"]
            print(f"{engine:12s} n={r['n']} within 10% {100 * r['within_10pct']:.0f}%  Spearman "
                  f"{r['spearman']:.3f}  MAPE {r['mape']:.1f}%  repeatability "
                  f"{100 * r['repeatability']:.0f}%  (MACs-only: within 10% "
                  f"{100 * b['within_10pct']:.0f}%, Spearman {b['spearman']:.3f}); calibrate "
                  f"{r['calibrate_s']} s, validate {r['validate_s']} s")
            if r.get("warning"):
                print(f"  warning: {r['warning']}")
            print("  checks:", ", ".join(f"{k}={'ok' if v else 'FAIL'}"
                                         for k, v in r["checks"].items()))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
