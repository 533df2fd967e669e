"""Evaluate a trained multi-exit model file (``dse evaluate``): accuracy, exit mix, cost, latency.

From ``model.pt`` (written by ``dse train``, see :mod:`dse.train.trained`):

- per-exit outputs of the val and test splits (:class:`~dse.evaluation.ExitOutputs`), then
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
from typing import Any, Sequence

import numpy as np

from dse.errors import ConfigError, DataError, DseError

#: budgets on the curve (evenly spaced from the first exit's MACs to the final exit's)
DEFAULT_BUDGETS = 20


def measure_latency(model, x, criterion: str, thresholds: Sequence[float], *, samples: int = 200,
                    warmup: int = 20, device=None) -> dict[str, Any]:
    """Batch-1 wall time (ms) of ``model.early_exit`` over the first ``samples`` images of ``x``.

    Each image is timed on its own (``perf_counter`` around one call, CUDA synchronised); the
    first ``warmup`` calls are not recorded. Returns the median, mean and 90th percentile over
    all images, the median per exit taken, and each image's exit index.
    """
    import torch

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
    from dse.cost.latency import predict
    from dse.cost.layers import trace_multiexit
    from dse.cost.profiles import load_profile

    prof = load_profile(profile)
    rt = prof.runtime(runtime)
    net = trace_multiexit(model.backbone, tuple(input_shape), model.exit_blocks, list(model.branches))
    return predict(net, prof, rt), prof, rt


def budget_curve_table(val, test, criterion: str, exit_macs: Sequence[float],
                       n_budgets: int = DEFAULT_BUDGETS):
    """The budgeted-batch curve on evenly spaced MAC budgets (a pandas DataFrame)."""
    from dse.evaluation import budget_curve

    budgets = np.linspace(float(exit_macs[0]), float(exit_macs[-1]), max(2, n_budgets))
    return budget_curve(val, test, criterion, exit_macs, budgets, kind="macs")


def plot_budget_curve(curve, per_exit_accuracy: Sequence[float], exit_macs: Sequence[float],
                      point: tuple[float, float] | None = None, title: str = ""):
    """Test accuracy vs average MACs per budget, each exit alone, and the configured point."""
    import matplotlib

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


def evaluate_model(checkpoint: str, *, dataset: str | None = None, profile: str | None = None,
                   runtime: str | None = None, device=None, latency_samples: int = 200,
                   warmup: int = 20, n_budgets: int = DEFAULT_BUDGETS,
                   out_dir: str | Path | None = None) -> dict[str, Any]:
    """Everything ``dse evaluate`` reports for one model file; writes the curve to ``out_dir``
    (default: ``evaluation/`` next to the checkpoint).

    ``profile`` None falls back on the profile and runtime the search used (``search.profile``,
    ``search.runtime`` in the config); when none is known or it cannot be loaded, predicted
    latency is None with a note. ``measured_exit_agreement`` shows how often the timed
    early-exit path took the same exit as the evaluation on cached outputs (1.0 expected; with
    ISC both paths combine logits the same way).
    """
    import torch

    from dse.config import thresholds_for
    from dse.data import load_dataset, split_tensors
    from dse.evaluation import evaluate, exit_assignment
    from dse.train.trained import collect_outputs, load_model

    loaded = load_model(checkpoint)
    model, config, inp = loaded.model, loaded.config, loaded.inputs
    spec = dataset or inp.get("dataset") or config.dataset
    splits = load_dataset(spec, seed=config.seed, input_size=inp["input_size"])
    info = splits.info
    if (info.num_classes, info.channels) != (inp["num_classes"], inp["in_channels"]):
        raise DataError(f"--dataset {spec}: {info.num_classes} classes x {info.channels} channels, "
                        f"but {checkpoint} was trained on {inp['num_classes']} classes x "
                        f"{inp['in_channels']} channels")
    exit_ms, predicted = _predicted_latency(model, config, inp, profile, runtime)  # on the CPU
    device = torch.device(device or "cpu")
    model = model.to(device)
    isc, exit_macs, criterion = config.training.loss.isc, loaded.exit_macs, config.policy.criterion
    thresholds = thresholds_for(config.policy, model.num_exits - 1)
    x_val, y_val = split_tensors(splits.val)
    x_test, y_test = split_tensors(splits.test)
    val = collect_outputs(model, x_val, y_val, isc=isc, device=device)
    test = collect_outputs(model, x_test, y_test, isc=isc, device=device)
    res_test = evaluate(test, criterion, thresholds, exit_macs=exit_macs, exit_latency_ms=exit_ms)
    res_val = evaluate(val, criterion, thresholds, exit_macs=exit_macs, exit_latency_ms=exit_ms)

    measured = measure_latency(model, x_test, criterion, thresholds, samples=latency_samples,
                               warmup=warmup, device=device)
    taken = np.asarray(measured.pop("exit_index"))
    agreement = float(np.mean(taken == exit_assignment(test, criterion, thresholds)[:taken.size]))

    curve = budget_curve_table(val, test, criterion, exit_macs, n_budgets)
    out = Path(out_dir) if out_dir is not None else Path(checkpoint).resolve().parent / "evaluation"
    title = f"{config.backbone} on {info.name}: {model.num_exits - 1} early exits"
    files = write_budget_curve(curve, out, res_test.per_exit_accuracy, exit_macs,
                               (res_test.expected_macs, res_test.accuracy), title)
    return {
        "checkpoint": str(checkpoint), "dataset": spec, "backbone": config.backbone,
        "exit_blocks": list(model.exit_blocks), "exit_macs": exit_macs,
        "criterion": criterion, "thresholds": thresholds,
        "test_accuracy": res_test.accuracy,
        "per_exit_accuracy": res_test.per_exit_accuracy.tolist(),
        "mean_anytime_accuracy": float(res_test.per_exit_accuracy.mean()),
        "exit_fractions": res_test.exit_fractions.tolist(),
        "exit_accuracy": res_test.to_dict()["exit_accuracy"],
        "expected_macs": res_test.expected_macs,
        "predicted_latency_ms": res_test.expected_latency_ms, **predicted,
        "measured_latency_ms": measured["median_ms"], "measured": measured,
        "measured_exit_agreement": agreement,
        "val": res_val.to_dict(),
        "budget_curve": {**files, "rows": curve.drop(
            columns=["thresholds", "test_exit_fractions"]).to_dict("records")},
        "isc": isc,
    }


def _predicted_latency(model, config, inp: dict, profile: str | None,
                       runtime: str | None) -> tuple[list[float] | None, dict[str, Any]]:
    """(per-exit ms or None, what to report about it); see :func:`evaluate_model`."""
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
    curve.to_csv(csv_path, index=False)
    fig = plot_budget_curve(curve, per_exit_accuracy, exit_macs, point, title)
    fig.savefig(png_path, dpi=120)
    import matplotlib.pyplot as plt  # after plot_budget_curve chose the Agg backend

    plt.close(fig)
    return {"csv": str(csv_path), "png": str(png_path)}
