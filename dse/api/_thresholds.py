"""``dse.api.thresholds``: re-tune a trained model's exit thresholds on val and write them into
its config, model file and bundle (``dse thresholds``)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from dse.api._checks import at_least
from dse.api._config import code_guard
from dse.api._evaluate import load_model_and_data
from dse.data import split_tensors
from dse.design import load_config, save_config
from dse.device import select_device, set_threads
from dse.errors import ConfigError
from dse.export.thresholds import write_bundle_thresholds
from dse.train.model_file import collect_outputs, rewrite_config
from dse.train.retune import make_objective, retune_model

#: the config ``dse train`` writes beside its model file
TRAINED_CONFIG = "config.yaml"


def thresholds(checkpoint: str | Path, *, objective: str | None = None,
               budget_ms: float | None = None, max_drop: float | None = None,
               profile: str | None = None, runtime: str | None = None,
               config: str | Path | None = None, bundle: str | Path | None = None,
               dataset: str | None = None, dry_run: bool = False, allow_code: bool = False,
               device: str = "auto", threads: int | None = None) -> dict[str, Any]:
    """Re-tune the exit thresholds of a trained model on its val split (``dse thresholds``).

    Objectives (one; :mod:`dse.train.retune`): ``objective="search"`` (default) the highest
    val accuracy whose expected latency stays within what the search predicted for this
    configuration on its profile; ``budget_ms`` the highest val accuracy within that expected
    latency on ``profile``; ``max_drop`` the cheapest point within that many percentage points
    of the final exit's val accuracy.

    Args:
        checkpoint: a ``model.pt`` written by ``dse train``; rewritten with the new thresholds.
        objective: ``search`` (None: ``search`` unless ``budget_ms`` or ``max_drop`` is given).
        budget_ms: expected-latency limit in ms on the profile.
        max_drop: accuracy drop allowed below the final exit, in percentage points.
        profile: hardware profile of the latency (None: the one the search used).
        runtime: runtime within the profile (None: the search's, else the profile's own).
        config: a run configuration file to update too (None: ``config.yaml`` beside the model
            file when it exists). Its criterion and exits must be the model's.
        bundle: a bundle folder exported from this model (``dse export``) to update too.
        dataset: tune on this dataset's val split (None: the one the model was trained on).
        dry_run: compute and report only; write nothing.
        allow_code: let the model file's backbone name Python code (``module:factory``).
        device: where torch runs: ``auto``, ``cpu`` or ``cuda``.
        threads: torch CPU threads (None: the CPUs this process may use).

    Returns:
        The ``dse thresholds --json`` dict: ``before`` and ``after`` (thresholds, val and test
        sections: accuracy in percent, latency in ms), the objective and its limit, and the
        files ``written``.

    Raises:
        dse.errors.DseError: a bad file, name or value, or a limit no thresholds meet.
    """
    at_least("threads", threads, 1)
    goal = make_objective(objective, budget_ms, max_drop)  # fail before any work
    checkpoint = Path(checkpoint)
    config_path = _config_path(checkpoint, config)
    torch_device = select_device(device)
    set_threads(threads)
    loaded, splits, spec = load_model_and_data(checkpoint, dataset, allow_code)
    model, cfg, inp = loaded.model, loaded.config, loaded.inputs
    with code_guard(str(checkpoint), allow_code):
        target = load_config(str(config_path)) if config_path is not None else None
    if target is not None:
        _check_same_model(target, cfg, config_path)
    isc = dict(isc=cfg.training.loss.isc, isc_final=model.isc_final)
    val = collect_outputs(model.to(torch_device), *split_tensors(splits.val), device=torch_device, **isc)
    test = collect_outputs(model, *split_tensors(splits.test), device=torch_device, **isc)
    tuned = retune_model(model.cpu(), cfg, inp, loaded.exit_macs, val, test, goal,
                         profile=profile, runtime=runtime)
    written: dict[str, str | None] = {"model": None, "config": None, "bundle": None}
    if not dry_run:
        new = tuned.config.policy.thresholds
        if bundle is not None:  # first: the one most likely refused
            per_exit = tuned.config.policy.per_exit(model.num_exits - 1)
            written["bundle"] = str(write_bundle_thresholds(bundle, cfg.policy.criterion, per_exit))
        if target is not None:
            save_config(replace(target, policy=replace(target.policy, thresholds=new)),
                        str(config_path), header=f"thresholds re-tuned on val by dse thresholds "
                                                 f"({goal.describe()})")
            written["config"] = str(config_path)
        written["model"] = str(rewrite_config(checkpoint, loaded, tuned.config, tuned.report))
    return {"checkpoint": str(checkpoint), "dataset": spec, "criterion": cfg.policy.criterion,
            **tuned.report, "dry_run": dry_run, "written": written}


def _config_path(checkpoint: Path, config: str | Path | None) -> Path | None:
    if config is not None:
        if not Path(config).is_file():
            raise ConfigError(f"--config {config}: no such file")
        return Path(config)
    beside = checkpoint.parent / TRAINED_CONFIG
    return beside if beside.is_file() else None


def _check_same_model(target: Any, model_config: Any, path: Path) -> None:
    """The config file must describe the model's criterion and exits (blocks, when it names
    them; else their count)."""
    blocks = tuple(model_config.exits.blocks or ())
    same_exits = (tuple(target.exits.blocks) == blocks if target.exits.blocks is not None
                  else target.exits.count == len(blocks))
    if target.policy.criterion != model_config.policy.criterion or not same_exits \
            or target.exits.branch != model_config.exits.branch:
        raise ConfigError(f"--config {path}: its criterion or exits ({target.policy.criterion}, "
                          f"{target.exits.branch} exits at {target.exits.blocks}) are not the "
                          f"model's ({model_config.policy.criterion}, {model_config.exits.branch} "
                          f"exits at {list(blocks)}); pass the config the model was trained from")
