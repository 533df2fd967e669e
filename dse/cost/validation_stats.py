"""What a latency validation's numbers say: error statistics, the baseline and the warnings.

Pure functions of numbers (predicted and measured times, per-exit errors, a
:class:`dse.cost.harness.Timing`), free of torch: the PyTorch validation
(:mod:`dse.cost.validate`, whose :func:`~dse.cost.validate.report` assembles the result) and the
ONNX Runtime one (:mod:`dse.export.ort_validate`) report the same statistics and checks.

Reported: mean absolute percentage error, the fraction of exits within +-10 %, and Spearman's
rank correlation, for the model and for the MACs-only baseline that nn-Meter (Zhang et al.,
MobiSys 2021) compares against: latency = s x MACs, with the one slope s fitted to these very
measurements by least relative squared error (s = sum r_i / sum r_i^2, r_i = MACs_i / t_i), which
flatters the baseline.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.stats import rankdata

from dse.cost.harness import WITHIN, Timing, moved


def _ranks(values: Sequence[float]) -> list[float]:
    return list(rankdata(values))


def summarize(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """MAPE (%), fraction within +-10 % and Spearman's rho of predictions against measurements."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    err = np.abs(p / m - 1.0)
    rho = float(np.corrcoef(_ranks(p), _ranks(m))[0, 1]) if len(p) > 1 else float("nan")
    return {"n": int(len(p)), "mape": round(float(100 * err.mean()), 3),
            "within_10pct": round(float((err <= WITHIN).mean()), 4), "spearman": round(rho, 4)}


def macs_baseline(macs: Sequence[float], measured_ms: Sequence[float]) -> tuple[float, list[float]]:
    """Fitted ms-per-MAC slope s (least relative squared error) and its predictions."""
    r = [m / t for m, t in zip(macs, measured_ms)]
    slope = sum(r) / sum(x * x for x in r)
    return slope, [slope * m for m in macs]


def by_backbone(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per backbone (in the order the rows first name it): how many exits (``n``), their median
    error, and how many (``within``) and what share are within +-10 %. One network the model
    misses shows here as one large median, where the overall share only drops (on the 2-core VM
    this was built on, digits-resnet's exits through PyTorch, 10-16 % too slow in most steady
    runs while the others were within +-10 %)."""
    errors: dict[str, list[float]] = {}
    for row in rows:
        errors.setdefault(row["backbone"], []).append(row["error"])
    within = {name: int(np.sum(np.abs(e) <= WITHIN)) for name, e in errors.items()}
    return {name: {"n": len(e), "median_error": round(float(np.median(e)), 4),
                   "within": within[name], "within_10pct": round(within[name] / len(e), 4)}
            for name, e in errors.items()}


def speed_check(timing: Timing) -> dict[str, Any]:
    """``reference_now_us`` (this run's median reference time), ``speed_ratio`` (that over the
    time the samples are converted at, the calibration's) and, beyond
    :data:`dse.cost.harness.SPEED_TOLERANCE` either way, a ``warning``.

    Reference units cancel a uniform change of the machine's speed, not a change of its state
    that slows large, memory-heavy exits unlike the small reference convolution: on the 2-core
    VM this was built on, calibrated while the reference took 139 us (75 us in most runs), two
    validations of the same profile two minutes apart agreed within +-10 % on 2 % of PyTorch
    exits. A user reading the result should know when the state moved.
    """
    now = timing.reference_now_s()
    if now is None or not timing.reference_s:
        return {}
    ratio = now / timing.reference_s
    out: dict[str, Any] = {"reference_now_us": round(now * 1e6, 3), "speed_ratio": round(ratio, 3)}
    if moved(ratio):
        out["warning"] = (f"the reference kernel ran at {ratio:.2f}x its calibration time: this "
                          "machine is in another state than when it was calibrated (load, "
                          "frequency, other guests), so errors here mix model and machine; "
                          "validate on a quiet machine or calibrate again")
    return out


#: A validation whose errors share one sign on at least this share of exits, with a median
#: beyond +-10 % and a ranking that holds (Spearman >= LEVEL_SPEARMAN), is a level shift.
LEVEL_SHARE, LEVEL_SPEARMAN = 0.9, 0.95


def level_check(errors: Sequence[float], spearman: float | None = None) -> dict[str, Any]:
    """``median_error`` of the exits (predicted / measured - 1) and, when the errors are a level
    shift (one sign on :data:`LEVEL_SHARE` of the exits, median beyond +-10 %, ranking intact), a
    ``warning`` saying so: the machine ran at another speed than the profile says, which a
    uniform change of state between calibration and validation does even when the reference
    kernel's speed ratio stays within its tolerance (on the 2-core VM this was built on, one
    calibration left every exit 6-69 % too slow at a speed ratio of 0.97). ``spearman``: the
    predictions' rank correlation with the measurements (None: not checked)."""
    if not errors:
        return {}
    median = float(np.median(errors))
    out: dict[str, Any] = {"median_error": round(median, 4)}
    same_sign = float(np.mean([(e > 0) == (median > 0) for e in errors]))
    if (abs(median) > WITHIN and same_sign >= LEVEL_SHARE
            and (spearman is None or spearman >= LEVEL_SPEARMAN)):
        side = "slow" if median > 0 else "fast"
        out["warning"] = (f"the model is {abs(median):.0%} too {side} on the median exit and "
                          f"{same_sign:.0%} of exits err the same way: a level shift, not a "
                          "wrong structure; this machine ran at another speed than the profile "
                          "records (another state than at calibration, or another machine): "
                          "calibrate and validate again at rest")
    return out


def join_warnings(*checks: dict[str, Any]) -> dict[str, Any]:
    """The checks' keys together, their ``warning`` lines joined into one."""
    out: dict[str, Any] = {}
    for check in checks:
        out.update({k: v for k, v in check.items() if k != "warning"})
    lines = [c["warning"] for c in checks if c.get("warning")]
    if lines:
        out["warning"] = "; ".join(lines)
    return out
