"""Design fields that a search space may search: each is declared once, on its dataclass field.

A field declared with :func:`knob` carries its Optuna parameter name, where a search-space file
writes it (section and key), the check every value must pass (the same check a run-config file
applies), whether a range is allowed, and a cast applied to decoded values. The search space
reads these declarations (:mod:`dse.search.space_params`), so making a field searchable is one
``knob(...)`` on the field plus the code that uses its value.

Parameters that come in families (one per exit, per branch type, per loss) are named by the
builders at the end of this module, the only place those names are spelled.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Callable, get_type_hints

from dse.design.checks import Check


@dataclass(frozen=True)
class Knob:
    """How a design field is searched (see the module docstring)."""

    param: str                   #: Optuna parameter name
    section: str                 #: search-space YAML section
    key: str                     #: key inside that section
    check: Check                 #: validates one value, naming ``where`` on failure
    ranges: bool = True          #: a ``{low, high}`` range is allowed (else values or choices)
    real: bool = False           #: a range is continuous even with integer ends
    registry: Any = None         #: names are canonicalised through this registry (aliases)
    cast: Callable[[Any], Any] | None = None  #: applied to a decoded value


def knob(default: Any = MISSING, *, param: str, section: str, key: str | None = None,
         check: Check, ranges: bool = True, real: bool = False, registry: Any = None,
         cast: Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field that a search space may search (``key`` defaults to the field's
    ``param``)."""
    meta = {"knob": Knob(param, section, key or param, check, ranges, real, registry, cast)}
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class KnobField:
    """A knob with where it lands in the design (``path``, e.g. ``training.lr``) and its default."""

    path: str
    knob: Knob
    default: Any

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]


def knob_fields(cls: type, prefix: str = "") -> list[KnobField]:
    """Every knob of dataclass ``cls`` and of its nested dataclass fields, in field order."""
    out: list[KnobField] = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        path = f"{prefix}{f.name}"
        if "knob" in f.metadata:
            out.append(KnobField(path, f.metadata["knob"], f.default))
        elif isinstance(hints.get(f.name), type) and is_dataclass(hints[f.name]):
            out += knob_fields(hints[f.name], f"{path}.")
    return out


# ---------------------------------------------------------------- family parameter names

def position_param(exit_index: int) -> str:
    """Explicit placement: the MAC fraction of early exit ``exit_index`` (1-based)."""
    return f"position_{exit_index}"


def branch_param(branch: str, key: str) -> str:
    """A branch type's own parameter, e.g. ``convx_depth``."""
    return f"{branch}_{key}"


def loss_param(loss: str, key: str) -> str:
    """A loss's own parameter, e.g. ``kd_alpha``."""
    return f"{loss}_{key}"


def threshold_param(criterion: str, exit_index: int | None = None) -> str:
    """The exit threshold of ``criterion``: global, or of early exit ``exit_index`` (1-based)."""
    return f"threshold_{criterion}" if exit_index is None else f"threshold_{criterion}_{exit_index}"
