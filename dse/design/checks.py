"""Value checks shared by search-space files and run-configuration files.

A check takes ``(value, where)``, returns the value when it is acceptable and otherwise raises
:class:`~dse.errors.ConfigError` naming ``where`` (``file: key``), the rule and the value. The
same check validates a fixed value in a config file and every candidate value of a search space,
so the two file kinds cannot disagree on what is allowed.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from dse.errors import ConfigError

#: checks one candidate value; raises ConfigError naming ``where``
Check = Callable[[Any, str], Any]


def is_number(value: Any) -> bool:
    """A real number (int or float), not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def one_of(names: Any, what: str) -> Check:
    """Value must be one of ``names`` (a list or a Registry; aliases allowed)."""
    def check(value: Any, where: str) -> Any:
        if not isinstance(value, str) or value not in names:
            valid = ", ".join(names.names() if hasattr(names, "names") else names)
            article = "an" if what[:1] in "aeiou" else "a"
            raise ConfigError(f"{where} must be {article} {what} ({valid}), got {value!r}")
        return value
    return check


def number(low: float | None = None, high: float | None = None, *, integer: bool = False,
           low_open: bool = False, high_open: bool = False) -> Check:
    """Value must be a finite number (an integer if ``integer``) in the given bounds."""
    def check(value: Any, where: str) -> Any:
        kind = "an integer" if integer else "a number"
        if not is_number(value) or (integer and not isinstance(value, int)) \
                or not math.isfinite(value):
            raise ConfigError(f"{where} must be {kind}, got {value!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise ConfigError(f"{where} must be {'>' if low_open else '>='} {low}, got {value}")
        if high is not None and (value >= high if high_open else value > high):
            raise ConfigError(f"{where} must be {'<' if high_open else '<='} {high}, got {value}")
        return value
    return check


def boolean(value: Any, where: str) -> Any:
    """Value must be true or false."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value
