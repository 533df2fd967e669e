"""The Python API: every ``dse`` command as a function, for notebooks and pipelines.

Each function takes the options of its command as keyword arguments (same names, Python types,
the same defaults) and accepts the typed design objects of :mod:`dse.design` where the command
takes a config file. Nothing is printed unless a ``log`` callback (or ``progress=True``) is
given; user errors raise :class:`dse.errors.DseError` subclasses (``dse.DSEError``), never
``SystemExit``. The command line (:mod:`dse.cli`) is a thin layer over these functions.

Usage::

    from dse.api import search, train
    result = search(trials=20, budget_ms=1.0)
    result.front                        # pandas DataFrame of the Pareto front
    trained = train(result.config_files[0], epochs=5)
    bundle = export(trained.model_path)      # ONNX graphs + manifest (see dse.api.export)
    run(bundle["bundle"])["accuracy"]         # early exit on ONNX Runtime, percent

Why ``dse.api.search`` and not ``dse.search``: ``dse.search`` is the subpackage that holds the
search machinery (``import dse.search.pareto`` must keep working and stay free of torch), so a
function cannot take that name. ``dse`` itself re-exports these functions lazily as
``dse.run_search``, ``dse.run_finetune``, ``dse.run_train``, ``dse.evaluate``,
``dse.latency``, ``dse.run_export`` and ``dse.run_bundle`` (``dse.export`` is the subpackage).
"""
from __future__ import annotations

from dse.api._evaluate import evaluate
from dse.api._export import default_bundle_dir, export, run
from dse.api._latency import latency
from dse.api._report import DEFAULT_SHIFT, render_study_report
from dse.api._search import SearchInterrupted, SearchResult, quiet_optuna, search
from dse.api._thresholds import thresholds
from dse.api._train import default_train_dir, finetune, train
from dse.api._trial_config import trial_config
from dse.errors import DseError

DSEError = DseError

__all__ = ["DEFAULT_SHIFT", "DSEError", "DseError", "SearchInterrupted", "SearchResult", "default_bundle_dir",
           "default_train_dir", "evaluate", "export", "finetune", "latency", "quiet_optuna",
           "render_study_report", "run", "search", "thresholds", "train",
           "trial_config"]
