"""Evaluate a trained multi-exit model (``dse evaluate``): accuracy, exit mix, cost, latency.

Given the model rebuilt from ``model.pt`` (written by ``dse train``, see
:mod:`dse.train.model_file`) and its per-exit outputs (``dse evaluate`` loads both with the
training layer's helpers and calls :func:`evaluate_trained`):

- from the per-exit outputs of the val and test splits (:class:`~dse.evaluation.ExitOutputs`):
  anytime accuracy per exit, and at the configuration's criterion and thresholds the early-exit
  accuracy, exit fractions and expected MACs (:func:`~dse.evaluation.evaluate`);
- predicted per-exit latency on a hardware profile (:func:`dse.cost.latency.predict` on the
  traced layer records) and the expected latency sum_n p_n latency_n;
- measured latency of the real early-exit path (:meth:`MultiExitNet.early_exit`) on this
  machine: batch 1, test images one at a time after a warm-up, median (and per-exit medians);
- the budgeted-batch curve (MSDNet protocol, :func:`~dse.evaluation.budget_curve`): for each
  budget between the cheapest and the final exit's MACs, thresholds calibrated on val, accuracy
  and average MACs measured on test; written as CSV and PNG.

This module touches torch and files; the metrics themselves are the numpy functions of
:mod:`dse.evaluation`.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from dse.cost.latency import predict
from dse.cost.op_trace import trace_multiexit
from dse.cost.profiles import load_profile
from dse.errors import ConfigError, DataError, DseError
from dse.evaluation.budget import budget_curve
from dse.evaluation.metrics import evaluate, exit_assignment
from dse.evaluation.outputs import ExitOutputs

if TYPE_CHECKING:
    from dse.data import DatasetInfo

#: budgets on the curve (evenly spaced from the first exit's MACs to the final exit's)
DEFAULT_BUDGETS = 20


def measure_latency(model, x, criterion: str, thresholds: Sequence[float], *, samples: int = 200,
                    warmup: int = 20, device=None) -> dict[str, Any]:
    """Batch-1 wall time (ms) of ``model.early_exit`` over the first ``samples`` images of ``x``.

    Each image is timed on its own (``perf_counter`` around one call, CUDA synchronised); the
    first ``warmup`` calls are not recorded. Returns the median, mean and 90th percentile over
    all images, the median per exit taken, and each image's exit index.
    """
    device = torch.device(device or "cpu")
    n = min(samples, int(x.shape[0]))
    if n < 1:
        raise DataError("no test images to time the early-exit path on")
    model = model.to(device).eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times, exits = [], []
    with torch.inference_mode():
        for i in range(warmup):
            model.early_exit(x[i % n:i % n + 1].to(device), criterion, thresholds)
        for i in range(n):
            xi = x[i:i + 1].to(device)
            sync()
            start = time.perf_counter()
            _, exit_index = model.early_exit(xi, criterion, thresholds)
            sync()
            times.append((time.perf_counter() - start) * 1e3)
            exits.append(int(exit_index[0]))
    per_exit = []
    for e in range(model.num_exits):
        mine = [t for t, k in zip(times, exits) if k == e]
        per_exit.append(statistics.median(mine) if mine else None)
    return {"median_ms": statistics.median(times), "mean_ms": float(np.mean(times)),
            "p90_ms": float(np.percentile(times, 90)), "per_exit_median_ms": per_exit,
            "samples": n, "warmup": warmup, "exit_index": exits, "device": str(device)}


def predict_latency(model, input_shape: Sequence[int], profile: str, runtime: str | None = None):
    """Per-exit latency (ms) of ``model`` on ``profile``: (LatencyPrediction, profile, runtime)."""
    prof = load_profile(profile)
    rt = prof.runtime(runtime)
    net = trace_multiexit(model.backbone, tuple(input_shape), model.exit_blocks, list(model.branches),
                          threads=rt.threads)
    return predict(net, prof, rt), prof, rt


def budget_curve_table(val, test, criterion: str, exit_macs: Sequence[float],
                       n_budgets: int = DEFAULT_BUDGETS):
    """The budgeted-batch curve on evenly spaced MAC budgets (a pandas DataFrame)."""
    budgets = np.linspace(float(exit_macs[0]), float(exit_macs[-1]), max(2, n_budgets))
    return budget_curve(val, test, criterion, exit_macs, budgets, kind="macs")


def plot_budget_curve(curve, per_exit_accuracy: Sequence[float], exit_macs: Sequence[float],
                      point: tuple[float, float] | None = None, title: str = ""):
    """Test accuracy vs average MACs per budget, each exit alone, and the configured point."""
    import matplotlib  # here: only dse evaluate draws, and it must choose Agg before pyplot loads

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["test_expected_macs"] / 1e6, 100 * curve["test_accuracy"], "o-", ms=3,
            label="early exit, thresholds calibrated on val per budget")
    ax.plot(np.asarray(exit_macs) / 1e6, 100 * np.asarray(per_exit_accuracy), "s--", ms=4,
            color="gray", label="each exit alone (anytime)")
    if point is not None:
        ax.plot(point[0] / 1e6, 100 * point[1], "r*", ms=12, label="configured thresholds")
    ax.set_xlabel("average MACs per input (millions)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "budgeted-batch accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def check_dataset_fits(info: DatasetInfo, inputs: dict[str, Any], spec: str, checkpoint: str) -> None:
    """The dataset must have the classes and channels the model was trained on."""
    if (info.num_classes, info.channels) != (inputs["num_classes"], inputs["in_channels"]):
        raise DataError(f"--dataset {spec}: {info.num_classes} classes x {info.channels} channels, "
                        f"but {checkpoint} was trained on {inputs['num_classes']} classes x "
                        f"{inputs['in_channels']} channels")


def evaluate_trained(model, config, exit_macs: Sequence[float], val: ExitOutputs,
                     test: ExitOutputs, x_test, *, exit_ms: list[float] | None,
                     predicted: dict[str, Any], device, latency_samples: int = 200,
                     warmup: int = 20, n_budgets: int = DEFAULT_BUDGETS, out: Path,
                     title: str) -> dict[str, Any]:
    """Everything ``dse evaluate`` reports for one trained model; writes the curve to ``out``.

    ``model`` is on ``device``; ``val`` and ``test`` are its per-exit outputs; ``exit_ms`` and
    ``predicted`` come from :func:`predicted_latency`. ``measured_exit_agreement`` shows how often
    the timed early-exit path took the same exit as the evaluation on cached outputs (1.0
    expected; with ISC both paths combine logits the same way).
    """
    criterion = config.policy.criterion
    thresholds = config.policy.per_exit(model.num_exits - 1)
    res_test = evaluate(test, criterion, thresholds, exit_macs=exit_macs, exit_latency_ms=exit_ms)
    res_val = evaluate(val, criterion, thresholds, exit_macs=exit_macs, exit_latency_ms=exit_ms)

    measured = measure_latency(model, x_test, criterion, thresholds, samples=latency_samples,
                               warmup=warmup, device=device)
    taken = np.asarray(measured.pop("exit_index"))
    agreement = float(np.mean(taken == exit_assignment(test, criterion, thresholds)[:taken.size]))

    curve = budget_curve_table(val, test, criterion, exit_macs, n_budgets)
    test_section = res_test.section()
    files = write_budget_curve(curve, out, res_test.per_exit_accuracy, exit_macs,
                               (res_test.expected_macs, res_test.accuracy), title)
    return {
        "backbone": config.backbone,
        "exit_blocks": list(model.exit_blocks), "exit_macs": exit_macs,
        "criterion": criterion, "thresholds": thresholds,
        "test_accuracy": test_section["accuracy"],
        "per_exit_accuracy": test_section["per_exit_accuracy"],
        "mean_anytime_accuracy": test_section["mean_anytime_accuracy"],
        "exit_fractions": test_section["exit_fractions"],
        "exit_accuracy": test_section["exit_accuracy"],
        "expected_macs": res_test.expected_macs,
        "predicted_latency_ms": res_test.expected_latency_ms, **predicted,
        "measured_latency_ms": measured["median_ms"], "measured": measured,
        "measured_exit_agreement": agreement,
        "val": res_val.section(), "test": test_section,
        "budget_curve": {**files, "rows": _percent_columns(curve).drop(
            columns=["thresholds", "test_exit_fractions"]).to_dict("records")},
        "isc": config.training.loss.isc,
    }


def _percent_columns(curve):
    """The budget curve with its accuracy columns in percent (as written and reported)."""
    out = curve.copy()
    for col in out.columns:
        if col.endswith("accuracy"):
            out[col] = 100.0 * out[col]
    return out


def predicted_latency(model, config, inp: dict, profile: str | None,
                      runtime: str | None) -> tuple[list[float] | None, dict[str, Any]]:
    """(per-exit ms or None, what to report about it), traced on the CPU.

    ``profile`` None falls back on the profile and runtime the search used (``search.profile``,
    ``search.runtime`` in the config); when none is known or it cannot be loaded, predicted
    latency is None with a note.
    """
    searched = dict(config.provenance)
    asked = profile is not None or runtime is not None  # --profile / --runtime given
    name = profile or searched.get("profile")
    if profile is None and runtime is None:
        runtime = searched.get("runtime")  # the search's runtime goes with the search's profile
    if name is None and runtime is not None:
        raise ConfigError(f"--runtime {runtime} needs --profile (the config names no search "
                          "profile to take it from)")
    if name is None:
        return None, {"predicted_latency_note": "no --profile given and the config names none "
                                                "(search.profile)"}
    shape = (inp["in_channels"], inp["input_size"], inp["input_size"])
    try:
        pred, prof, rt = predict_latency(model, shape, name, runtime)
    except DseError as exc:
        if asked:  # asked for explicitly: a user error
            raise
        return None, {"predicted_latency_note": f"the search's profile {name!r} could not be "
                                                f"loaded ({exc})"}
    exit_ms = list(pred.exit_ms)
    return exit_ms, {"profile": prof.name, "runtime": rt.name, "exit_latency_ms": exit_ms,
                     "predicted_latency_note": None}


def write_budget_curve(curve, out: Path, per_exit_accuracy, exit_macs, point,
                       title: str) -> dict[str, str]:
    """``budget_curve.csv`` and ``budget_curve.png`` in ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / "budget_curve.csv", out / "budget_curve.png"
    _percent_columns(curve).to_csv(csv_path, index=False)
    fig = plot_budget_curve(curve, per_exit_accuracy, exit_macs, point, title)
    fig.savefig(png_path, dpi=120)
    import matplotlib.pyplot as plt  # after plot_budget_curve chose the Agg backend

    plt.close(fig)
    return {"csv": str(csv_path), "png": str(png_path)}
