"""Backbone registry: every backbone is an ordered list of blocks plus a head.

Attach points for early exits are the block boundaries (the output of every block but the last,
whose output feeds the head). Built-ins:

- CIFAR ResNets 6n+2 (He et al., "Deep Residual Learning", CVPR 2016, section 4.2): a 3x3 stem,
  three stages of n basic blocks (16/32/64 channels), option-A (zero-padding) shortcuts.
- ImageNet-style ResNet-18/34 (basic blocks) and ResNet-50 (bottlenecks), VGG-16 and
  MobileNetV2 (Sandler et al. 2018), laid out like torchvision's so MAC counts match the
  commonly cited ones.
- ``vgg11-3block``: the customised 3-block VGG-11 of the selective fine-tuning paper (Hirose et
  al., IEEE Access 2020): conv-128 x2 + pool, conv-256 x2 + pool, conv-512 x2 + pool, fc-1024,
  fc-classes.
- ``digits-resnet``: a small ResNet for 8x8 inputs (the embedded digits default).
- ``msdnet-cifar`` and ``msdnet-imagenet``: MSDNet (Huang et al., ICLR 2018), one block per
  classifier; its blocks output a list of scales and exits read the coarsest
  (:meth:`Backbone.exit_input`); its early classifiers are exits of the ``msdnet`` branch.

A user backbone is ``package.module:factory``; the factory returns a :class:`Backbone`, any
module with ``blocks`` and ``head`` attributes, or a plain ``nn.Sequential`` (each child a block).

The families live in ``_resnets``, ``_vggs``, ``_mobilenet`` and ``_msdnet`` and register
themselves in the leaf :mod:`dse.models._registry`; importing this module imports them, so :data:`BACKBONES` is
complete wherever :func:`build_backbone` is reachable.

Building one imports and calls code, so a name read from a file (a run configuration, a saved
model) is refused inside :func:`code_from_files` unless the user allowed it (``--allow-code``).
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
from typing import Iterator

from torch import nn

from dse.errors import ConfigError
# Each family registers itself on import; this order is the order BACKBONES lists them in.
from dse.models import _resnets, _vggs, _mobilenet, _msdnet  # noqa: F401,I001
from dse.models._base import Backbone, ClassifierHead, conv_bn_relu
from dse.models._registry import BACKBONES, default_input_size, is_user_backbone, register_backbone
from dse.models.checkpoint import load_state_dict
from dse.plugins import import_object

__all__ = ["BACKBONES", "Backbone", "ClassifierHead", "build_backbone", "conv_bn_relu",
           "default_input_size", "is_user_backbone", "register_backbone"]


#: The file the backbone names being built come from, while code from files is not allowed.
_CODE_SOURCE: contextvars.ContextVar[str | None] = contextvars.ContextVar("code_source",
                                                                          default=None)


@contextlib.contextmanager
def code_from_files(source: str, allow: bool) -> Iterator[None]:
    """Within the block, a user backbone (``module:factory``) is built only if ``allow``.

    ``source`` names the file the names come from, for the error line. The command line
    (``--backbone``) is the user speaking, so commands that take names from it do not use this.
    """
    token = _CODE_SOURCE.set(None if allow else source)
    try:
        yield
    finally:
        _CODE_SOURCE.reset(token)


def check_code_allowed(name: str, source: str | None = None) -> None:
    """Refuse a user backbone named by a file unless code from files is allowed."""
    source = source or _CODE_SOURCE.get()
    if source is not None and is_user_backbone(name):
        raise ConfigError(f"{source}: backbone {name!r} names Python code (module:factory), "
                          "which a file may not run; pass --allow-code if you trust it")


def build_backbone(name: str, *, num_classes: int, in_channels: int = 3,
                   checkpoint: str | None = None) -> Backbone:
    """Build a registered or user backbone, optionally loading weights from ``checkpoint``."""
    if is_user_backbone(name):
        check_code_allowed(name)
        model = _as_backbone(_call(import_object(name, "backbone"), num_classes, in_channels),
                             name)
    else:
        canonical = BACKBONES.resolve(name)
        model = _as_backbone(_call(BACKBONES.get(name), num_classes, in_channels), canonical)
        model.name = canonical
    if checkpoint is not None:
        load_state_dict(model, checkpoint)
    return model


def _call(factory, num_classes: int, in_channels: int):  # noqa: ANN001, ANN202
    """Call a backbone factory with the arguments it accepts (num_classes, in_channels)."""
    params = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in (("num_classes", num_classes), ("in_channels", in_channels))
              if k in params or any(p.kind is p.VAR_KEYWORD for p in params.values())}
    return factory(**kwargs)


def _as_backbone(model, spec: str) -> Backbone:  # noqa: ANN001
    """A factory's result as a :class:`Backbone`: itself, or built from ``blocks`` and
    ``head``, or from an ``nn.Sequential`` (each child a block)."""
    if isinstance(model, Backbone):
        return model
    if hasattr(model, "blocks") and hasattr(model, "head"):
        names = getattr(model, "block_names", None)
        return Backbone(list(model.blocks), model.head, names, name=spec)
    if isinstance(model, nn.Sequential):
        children = list(model.named_children())
        return Backbone([m for _, m in children], nn.Identity(), [n for n, _ in children], name=spec)
    raise ConfigError(
        f"backbone {spec}: the factory returned {type(model).__name__}; expected a module with "
        "'blocks' and 'head' attributes or an nn.Sequential"
    )
