"""``dse.api.evaluate``: measure a model written by ``dse train`` on test data and on this machine."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dse.api._checks import at_least
from dse.api._config import code_guard
from dse.data import load_dataset, split_tensors
from dse.device import select_device, set_threads
from dse.evaluation.model import check_dataset_fits, evaluate_trained, predicted_latency
from dse.paths import check_writable_dir
from dse.train.model_file import collect_outputs, load_model


def evaluate(checkpoint: str | Path, *, profile: str | None = None, runtime: str | None = None,
             dataset: str | None = None, out: str | Path | None = None,
             latency_samples: int = 200, warmup: int = 20, budgets: int = 20,
             allow_code: bool = False, device: str = "auto",
             threads: int | None = None) -> dict[str, Any]:
    """Per-exit and early-exit test accuracy, exit mix, MACs, predicted and measured latency of
    a model file (``dse evaluate``).

    Args:
        checkpoint: a ``model.pt`` written by ``dse train`` / :func:`dse.api.train`.
        profile: hardware profile for the predicted latency (None: the one the search used).
        runtime: runtime within the profile (None: the profile's own).
        dataset: evaluate on this dataset (``NAME`` or ``NAME:PATH``) instead of the model's.
        out: folder of the budget curve CSV/PNG (None: ``evaluation/`` beside the checkpoint).
        latency_samples: test images timed one by one on the early-exit path.
        warmup: untimed images before the timing.
        budgets: points on the budgeted-batch curve (>= 2).
        allow_code: let the model file's backbone name Python code (``module:factory``).
        device: where torch runs: ``auto``, ``cpu`` or ``cuda``.
        threads: torch CPU threads (None: the CPUs this process may use).

    Returns:
        The ``dse evaluate --json`` dict (accuracy in percent, latency in ms, MACs as counts).

    Raises:
        dse.errors.DseError: a missing or damaged file, a bad name or value.
    """
    at_least("latency_samples", latency_samples, 1)
    at_least("warmup", warmup, 0)
    at_least("budgets", budgets, 2)
    at_least("threads", threads, 1)
    out_dir = Path(out) if out is not None else Path(checkpoint).resolve().parent / "evaluation"
    check_writable_dir(out_dir, "--out")
    torch_device = select_device(device)
    set_threads(threads)
    loaded, splits, spec = load_model_and_data(checkpoint, dataset, allow_code)
    model, config, inp = loaded.model, loaded.config, loaded.inputs
    exit_ms, predicted = predicted_latency(model, config, inp, profile, runtime)  # on the CPU
    model = model.to(torch_device)
    isc = dict(isc=config.training.loss.isc, isc_final=model.isc_final)
    x_val, y_val = split_tensors(splits.val)
    x_test, y_test = split_tensors(splits.test)
    val = collect_outputs(model, x_val, y_val, device=torch_device, **isc)
    test = collect_outputs(model, x_test, y_test, device=torch_device, **isc)
    title = f"{config.backbone} on {splits.info.name}: {model.num_exits - 1} early exits"
    result = evaluate_trained(model, config, loaded.exit_macs, val, test, x_test, exit_ms=exit_ms,
                              predicted=predicted, device=torch_device,
                              latency_samples=latency_samples, warmup=warmup, n_budgets=budgets,
                              out=out_dir, title=title)
    return {"checkpoint": str(checkpoint), "dataset": spec, **result}


def load_model_and_data(checkpoint: str | Path, dataset: str | None,
                        allow_code: bool) -> tuple[Any, Any, str]:
    """(the model file, the dataset splits it is measured on, their dataset name): ``dataset``
    or the one the model was trained on, at the model's input size; a dataset the model cannot
    take fails here."""
    with code_guard(str(checkpoint), allow_code):
        loaded = load_model(str(checkpoint))
        spec = dataset or loaded.inputs.get("dataset") or loaded.config.dataset
        splits = load_dataset(spec, seed=loaded.config.seed, input_size=loaded.inputs["input_size"])
    check_dataset_fits(splits.info, loaded.inputs, spec, str(checkpoint))
    return loaded, splits, spec
