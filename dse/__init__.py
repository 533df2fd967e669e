"""dse: hardware-aware design-space exploration for early-exit CNNs.

``import dse`` loads nothing heavy. The Python API (:mod:`dse.api`) is reached lazily
(PEP 562): ``dse.run_search``, ``dse.run_finetune``, ``dse.run_train``, ``dse.evaluate``,
``dse.latency``, ``dse.run_export`` and ``dse.run_bundle`` import :mod:`dse.api` (and torch) on first use. The ``run_`` prefix is because
``dse.search``, ``dse.finetune`` and ``dse.train`` are the subpackages behind those commands;
``from dse.api import search`` gives the function under its command's name.
``dse.DSEError`` (= ``dse.errors.DseError``) is the root of every user error.
"""
from __future__ import annotations

import importlib
from typing import Any

from dse.errors import DseError

__version__ = "0.1.0"

DSEError = DseError

#: lazy top-level name -> name in dse.api
_API = {"run_search": "search", "run_finetune": "finetune", "run_train": "train",
        "evaluate": "evaluate", "latency": "latency", "SearchResult": "SearchResult",
        "run_export": "export", "run_bundle": "run"}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("dse.api"), _API[name])
    raise AttributeError(f"module 'dse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
