"""Argument checks of the Python API: what click checks for the command line, as
:class:`~dse.errors.ConfigError` for a script (one line naming the argument and the value)."""
from __future__ import annotations

import math
from typing import Any, Sequence

from dse.errors import ConfigError


def at_least(name: str, value: Any, low: int) -> None:
    """An integer argument ``>= low`` (``None`` passes: "the default")."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """A finite number ``> 0`` (or ``>= 0``); ``None`` passes."""
    if value is None:
        return
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value >= 0 if allow_zero else value > 0))
    if not ok:
        raise ConfigError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, "
                          f"got {value!r}")


def one_of(name: str, value: Any, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
