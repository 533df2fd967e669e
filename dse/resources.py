"""Where the shipped YAML files are: the search spaces and the hardware profiles.

In the repository they live in the top-level ``search_spaces/`` and ``hardware_profiles/``
folders, where users find and edit them. A built wheel carries the same files inside the package,
as ``dse/search_spaces/`` and ``dse/hardware_profiles/`` (setup.py maps the two folders into the
package as package data). This module is the one place that knows both layouts:

- installed from a wheel: the folder inside the package, found with :mod:`importlib.resources`;
- a source checkout (an editable install, or the repository on ``PYTHONPATH``): the package has
  no such folder, so the repository's folder next to ``dse/`` is used.

The result is a :class:`~pathlib.Path`, because callers list, read and report these files by
path. pip always unpacks a wheel into real files, so the packaged folder is a directory on disk.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

#: The repository's root when ``dse`` is imported from a source checkout.
_CHECKOUT_ROOT = Path(__file__).resolve().parents[1]


def _shipped(folder: str) -> Path:
    """The packaged ``dse/<folder>`` when installed, else the checkout's ``<folder>``."""
    packaged = files("dse") / folder
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return _CHECKOUT_ROOT / folder


def shipped_spaces() -> Path:
    """Folder of the shipped search spaces (``default.yaml``, ``eenet.yaml``, ...)."""
    return _shipped("search_spaces")


def shipped_profiles() -> Path:
    """Folder of the shipped hardware profiles (``jetson-nano.yaml``, ...)."""
    return _shipped("hardware_profiles")
