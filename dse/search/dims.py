"""Search dimensions: a fixed value, a list of choices, or a numeric range, read from YAML.

In a search-space file every searchable key takes one of three forms::

    optimizer: adam                          # fixed: not searched
    branch: [pool, bnpool, convx]            # choices (categorical)
    lr: {low: 0.001, high: 0.03, log: true}  # range; integers when low and high are integers

A dimension knows how to ask Optuna for a value (``suggest``), how to list its values for an
exhaustive sweep (``values``) and how to write itself back as plain YAML data (``to_plain``), so
a study stores its space and ``dse worker`` rebuilds it from the storage alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

from dse.design.checks import Check, is_number
from dse.errors import ConfigError

Scalar = Union[str, int, float, bool]


@dataclass(frozen=True)
class Fixed:
    """One value, not searched (no Optuna parameter)."""

    value: Any

    def values(self) -> tuple:
        return (self.value,)

    def to_plain(self) -> Any:
        return self.value


@dataclass(frozen=True)
class Choice:
    """Categorical choice among ``options`` (strings, numbers or booleans)."""

    options: tuple

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.options))

    def values(self) -> tuple:
        return self.options

    def to_plain(self) -> Any:
        return list(self.options)


@dataclass(frozen=True)
class Range:
    """A numeric interval [low, high]; integer when both ends are integers."""

    low: float
    high: float
    integer: bool = False
    log: bool = False
    step: float | None = None

    def suggest(self, trial: Any, name: str) -> Any:
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def values(self) -> tuple:
        """Every value of a discrete range (integers, or floats with a step)."""
        if self.integer:
            return tuple(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ConfigError(f"a float range [{self.low}, {self.high}] without a step has no "
                              "finite list of values")
        n = int(math.floor((self.high - self.low) / self.step + 1e-9))
        return tuple(round(self.low + i * self.step, 12) for i in range(n + 1))

    def to_plain(self) -> Any:
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


Dim = Union[Fixed, Choice, Range]
_RANGE_KEYS = ("low", "high", "log", "step")


def parse_dim(raw: Any, where: str, check: Check, *, allow_range: bool = True,
              real: bool = False) -> Dim:
    """A dimension from its YAML form; ``check(value, where)`` validates every candidate value.

    ``real``: a range is continuous even when written with integer ends (``{low: 1, high: 5}``).

    Errors name ``where`` (``file: key``): an empty choice list, a duplicate choice, a range with
    low > high, an unknown range key, a log range that reaches 0 or below.
    """
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{where} must not be an empty list of choices")
        for v in raw:
            if isinstance(v, (list, dict)) or v is None:
                raise ConfigError(f"{where} choices must be single values, got {v!r}")
        seen: list = []
        for i, v in enumerate(raw):
            check(v, f"{where}[{i}]")
            if any(v == s and type(v) is type(s) for s in seen):
                raise ConfigError(f"{where} lists {v!r} twice")
            seen.append(v)
        return Choice(tuple(raw)) if len(raw) > 1 else Fixed(raw[0])
    if isinstance(raw, dict):
        if not allow_range:
            raise ConfigError(f"{where} must be a value or a list of choices, not a range")
        for key in raw:
            if key not in _RANGE_KEYS:
                raise ConfigError(f"{where}.{key} is not a known key (a range takes "
                                  f"{', '.join(_RANGE_KEYS)})")
        for key in ("low", "high"):
            if key not in raw:
                raise ConfigError(f"{where}.{key} is required for a range")
            if not is_number(raw[key]):
                raise ConfigError(f"{where}.{key} must be a number, got {raw[key]!r}")
        low, high = raw["low"], raw["high"]
        if low > high:
            raise ConfigError(f"{where} needs low <= high, got low={low}, high={high}")
        log, step = raw.get("log", False), raw.get("step")
        if not isinstance(log, bool):
            raise ConfigError(f"{where}.log must be true or false, got {log!r}")
        if step is not None and (not is_number(step) or step <= 0):
            raise ConfigError(f"{where}.step must be a number > 0, got {step!r}")
        if log and low <= 0:
            raise ConfigError(f"{where} is a log range and needs low > 0, got low={low}")
        if log and step is not None:
            raise ConfigError(f"{where} cannot have both log: true and a step")
        integer = not real and isinstance(low, int) and isinstance(high, int) and (
            step is None or isinstance(step, int))
        if real:
            low, high = float(low), float(high)
        check(low, f"{where}.low")
        check(high, f"{where}.high")
        if low == high:
            return Fixed(low)
        return Range(low, high, integer, log, step)
    if raw is None:
        raise ConfigError(f"{where} must be a value, a list of choices or a range, got nothing")
    check(raw, where)
    return Fixed(raw)
