"""User code by name: ``module:attr`` looked up from the current folder, and installed plugins
registered through entry points.

Two ways to add a backbone, branch, loss or shift without editing dse:

- ``--backbone mynets:small`` (or ``--shift myshifts:fog``) imports ``mynets`` from the current
  folder or the Python path and calls ``small``; the current folder is searched first for that
  lookup only (``sys.path`` is restored afterwards), so a script beside the data just works.
- An installed package declares entry points in one of the groups of :data:`GROUPS`; the entry
  point's name becomes the registered name (``--backbone myresnet``), its object is what
  ``@register`` would have decorated. A registry loads its group once, the first time it is
  listed or asked for a name (:class:`dse.registry.Registry`).
"""
from __future__ import annotations

import importlib
import os
import sys
from importlib import metadata
from typing import Any

from dse.errors import ConfigError

#: entry-point group -> what its entries are
GROUPS = {
    "dse.backbones": "factory f(num_classes, in_channels) -> Backbone, nn.Sequential or a module "
                     "with blocks and head; optional attribute input_size",
    "dse.branches": "branch class (like dse.models.exits.ExitBranch builders); optional attribute "
                    "PARAMS: {name: (type, minimum)}",
    "dse.losses": "loss function like dse.train.losses.ce_loss; optional attribute PARAMS: "
                  "((name, default), ...)",
    "dse.shifts": "shift f(x [N, C, H, W] in [0, 1], torch.Generator) -> shifted x",
}


def is_code_name(name: str) -> bool:
    """``module:attr`` names user code; registered names have no colon."""
    return ":" in name


def import_object(spec: str, what: str) -> Any:
    """The object ``attr`` of module ``module`` for ``spec`` = ``module:attr``, importing the
    module from the current folder first, then the Python path."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{what} {spec!r}: expected 'module:name'")
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what} {spec}: cannot import module {module_name!r} ({exc})") from exc
    finally:
        if added and here in sys.path:
            sys.path.remove(here)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise ConfigError(f"{what} {spec}: {module_name!r} has no callable {attr!r}")
    return obj


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """Installed entry points of ``group`` (Python 3.9's dict API and the newer one)."""
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=group))
    return list(eps.get(group, []))  # pragma: no cover - Python 3.9
