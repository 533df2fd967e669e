"""Which exit losses exist and which parameters each takes: the design's view of a loss.

The formulas live in :mod:`dse.train.losses` (torch); this module only declares, per loss
name, its user parameters with their defaults, and validates values. Search spaces, run
configurations and the training code all read these declarations, so a loss parameter is
named, bounded and defaulted in one place. A test checks that every implementation's keyword
arguments match its declaration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from dse.design.checks import boolean, one_of
from dse.design.knobs import knob
from dse.errors import ConfigError, UnknownNameError
from dse.registry import Registry


@dataclass(frozen=True)
class LossKind:
    """A loss's declaration: its user parameters and their defaults, in signature order."""

    defaults: tuple[tuple[str, Any], ...]

    @property
    def params(self) -> list[str]:
        return [k for k, _ in self.defaults]


def _plugin(name: str, loss: Any) -> LossKind:
    """An installed loss (entry point group ``dse.losses``, also read by
    :data:`dse.train.losses.LOSSES`): its optional ``PARAMS`` attribute holds ``((name,
    default), ...)``."""
    return LossKind(tuple((str(k), v) for k, v in getattr(loss, "PARAMS", ())))


LOSS_KINDS: Registry[LossKind] = Registry("loss", "dse.losses", _plugin)
LOSS_KINDS.add("ce", LossKind((("weights", "uniform"),)))
LOSS_KINDS.add("eenet", LossKind((("version", "v1"), ("lam", 1.0))))
LOSS_KINDS.add("kd", LossKind((("alpha", 0.5), ("temperature", 3.0))))
LOSS_KINDS.add("dense_kd", LossKind((("lam", 1.0), ("temperature", 3.0))))
LOSS_KINDS.add("dense_kd_mean", LossKind((("alpha", 0.5), ("temperature", 3.0))))


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _check_weights(where: str, value: Any) -> Any:
    if value in ("uniform", "increasing"):
        return value
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"{where} must be 'uniform', 'increasing' or a list of numbers, got {value!r}")
    weights = tuple(_number(where, w) for w in value)
    if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise ConfigError(f"{where} must be >= 0 and not all 0, got {list(value)!r}")
    return weights


def _check_range(low: float, high: float, low_open: bool = False) -> Callable[[str, Any], float]:
    def check(where: str, value: Any) -> float:
        v = _number(where, value)
        if v < low or v > high or (low_open and v == low):
            bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise ConfigError(f"{where} must be in {bounds}, got {value!r}")
        return v
    return check


def _check_version(where: str, value: Any) -> str:
    if value not in ("v1", "v2"):
        raise ConfigError(f"{where} must be 'v1' or 'v2', got {value!r}")
    return value


#: one rule per parameter name, shared by every loss that has that parameter
PARAM_RULES: dict[str, Callable[[str, Any], Any]] = {
    "weights": _check_weights,
    "version": _check_version,
    "lam": _check_range(0.0, math.inf),
    "alpha": _check_range(0.0, 1.0),
    "temperature": _check_range(0.0, math.inf, low_open=True),
}


def loss_param_names(name: str) -> list[str]:
    """The user parameters of loss ``name``."""
    return LOSS_KINDS.get(name).params


def validate_loss_params(name: str, params: Mapping[str, Any], where: str | None = None) -> dict[str, Any]:
    """Check names and ranges of ``params`` for loss ``name``; return the cleaned values."""
    where = where or f"loss {name}"
    allowed = loss_param_names(name)
    clean: dict[str, Any] = {}
    for key, value in params.items():
        if key not in allowed:
            raise ConfigError(f"{where}: unknown parameter {key!r} for loss {name!r}; "
                              f"expected one of: {', '.join(allowed) or '(none)'}")
        rule = PARAM_RULES.get(key)
        clean[key] = rule(f"{where}.{key}", value) if rule else value
    return clean


@dataclass(frozen=True)
class LossSpec:
    """A loss chosen by name with its parameters (validated) and the ISC option."""

    name: str = knob("ce", param="loss", section="loss", key="name",
                     check=one_of(LOSS_KINDS, "loss"), ranges=False, registry=LOSS_KINDS)
    #: parameter values as sorted (key, value) pairs; a mapping is accepted and converted
    params: Any = ()
    #: inline subnetwork collaboration (exit i also receives exit i-1's detached logits)
    isc: bool = knob(False, param="isc", section="loss", check=boolean, ranges=False, cast=bool)

    def __post_init__(self) -> None:
        canonical = LOSS_KINDS.resolve(self.name)
        raw = dict(self.params.items() if isinstance(self.params, Mapping) else self.params)
        clean = validate_loss_params(canonical, raw)
        if not isinstance(self.isc, bool):
            raise ConfigError(f"loss {canonical}.isc must be true or false, got {self.isc!r}")
        object.__setattr__(self, "name", canonical)
        object.__setattr__(self, "params", tuple(sorted(clean.items())))

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def to_plain(self) -> dict[str, Any]:
        """``{name: kd, alpha: 0.3, temperature: 4.0, isc: false}`` (the config file form)."""
        return {"name": self.name, **self.kwargs, "isc": self.isc}

    @classmethod
    def from_mapping(cls, raw: Any, where: str = "loss") -> LossSpec:
        """``{name: kd, alpha: 0.3, temperature: 4, isc: true}`` or just ``"kd"`` (from YAML)."""
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise ConfigError(f"{where} must be a loss name or a mapping with a 'name' key, got {raw!r}")
        params = {k: v for k, v in raw.items() if k not in ("name", "isc")}
        try:
            name = LOSS_KINDS.resolve(raw["name"])
        except UnknownNameError as err:
            raise ConfigError(f"{where}.name: {err}") from None
        isc = raw.get("isc", False)
        if not isinstance(isc, bool):
            raise ConfigError(f"{where}.isc must be true or false, got {isc!r}")
        return cls(name, validate_loss_params(name, params, where), isc)
