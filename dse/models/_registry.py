"""The backbone registry: a leaf that imports no model family.

Each family module (``_resnets``, ``_vggs``, ``_mobilenet``) registers its factories here with
:func:`register_backbone`; :mod:`dse.models.backbones` imports the families, so importing it
fills the registry (the layout of timm's ``_registry.py``). Registering from the families and
collecting them in one importer keeps the import graph free of circles.
"""
from __future__ import annotations

from typing import Callable

from dse.registry import Registry

_DEFAULT_INPUT_SIZE: dict[str, int | None] = {}


def _plugin(name: str, factory: Callable) -> Callable:
    """An installed plugin's factory (entry point group ``dse.backbones``); its optional
    ``input_size`` attribute is its usual input resolution."""
    _DEFAULT_INPUT_SIZE[name] = getattr(factory, "input_size", None)
    return factory


#: name -> factory ``f(num_classes, in_channels) -> Backbone``; installed plugins join from
#: the entry point group ``dse.backbones`` (:mod:`dse.plugins`)
BACKBONES: Registry[Callable] = Registry("backbone", "dse.backbones", _plugin)


def register_backbone(name: str, input_size: int) -> Callable[[Callable], Callable]:
    """Register a factory ``f(num_classes, in_channels) -> Backbone`` with its usual input size."""

    def decorator(factory: Callable) -> Callable:
        BACKBONES.add(name, factory)
        _DEFAULT_INPUT_SIZE[name] = input_size
        return factory

    return decorator


def is_user_backbone(name: str) -> bool:
    """A user backbone is named ``package.module:factory``; built-ins have no colon."""
    return ":" in name


def default_input_size(name: str) -> int | None:
    """The input resolution a built-in backbone is usually run at (None for user backbones)."""
    if is_user_backbone(name):
        return None
    return _DEFAULT_INPUT_SIZE.get(BACKBONES.resolve(name))
