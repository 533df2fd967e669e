"""Search-space parameters: the Optuna parameters each section of a search-space file yields.

:class:`Param` is one parameter (a dimension from :mod:`dse.search.dims`, and when it applies);
:data:`KNOBS` are the design fields a space may search. Each builder reads one section
(:class:`dse.yamlio.Section`), checks its keys and values, and returns its parameters: a knob's
dimension, explicit exit positions, branch and loss parameters, thresholds per criterion.
:func:`dse.search.space.parse_space` calls them section by section, so the space module keeps to
the space itself (loading, suggesting, decoding).
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass
from typing import Any, Mapping

from dse.design.checks import number
from dse.design.knobs import (KnobField, branch_param, knob_fields, loss_param, position_param,
                              threshold_param)
from dse.design.losses import LOSS_KINDS, loss_param_names, validate_loss_params
from dse.design.types import Design
from dse.errors import ConfigError
from dse.models.criteria import CRITERIA
from dse.models.exits import BRANCH_PARAMS, BRANCHES
from dse.search.dims import Choice, Dim, Fixed, parse_dim
from dse.yamlio import Section

#: threshold ranges used when a space names a criterion but gives no range for it
DEFAULT_THRESHOLDS = {"maxprob": {"low": 0.5, "high": 0.999},
                      "entropy": {"low": 0.005, "high": 0.6},
                      "learned": {"low": 0.2, "high": 0.99}}


@dataclass(frozen=True)
class Param:
    """One design dimension with its Optuna name, and when it applies."""

    name: str
    dim: Dim
    when: tuple[str, Any] | None = None   # applies only when params[when[0]] == when[1]
    exit_index: int | None = None         # applies only to trials with >= exit_index exits

    def applies(self, values: Mapping[str, Any]) -> bool:
        if self.when is not None and values.get(self.when[0]) != self.when[1]:
            return False
        return self.exit_index is None or self.exit_index <= values[COUNT.knob.param]


#: the searchable fields of a design (declared on the dataclasses), by their design path
KNOBS: dict[str, KnobField] = {kf.path: kf for kf in knob_fields(Design)}
#: the knobs whose values decide which other parameters apply
COUNT, PLACEMENT, BRANCH = KNOBS["exits.count"], KNOBS["exits.placement"], KNOBS["exits.branch"]
LOSS, CRITERION = KNOBS["training.loss.name"], KNOBS["policy.criterion"]


def knob_dim(section: Section, kf: KnobField) -> Dim:
    """A knob's dimension from its section (its field default when absent)."""
    k = kf.knob
    required = kf.default is MISSING
    d = _dim(section, k.key, k.check, None if required else kf.default, required=required,
             ranges=k.ranges, real=k.real)
    return _canonical(d, k.registry) if k.registry is not None else d


def position_params(ex: Section, placement: Dim, max_exits: int) -> list[Param]:
    if "explicit" not in placement.values():
        if ex.has("positions"):
            raise ex.fail("positions", "is only used when placement includes 'explicit'")
        return []
    pos = _dim(ex, "positions", number(0, 1, low_open=True, high_open=True),
               {"low": 0.05, "high": 0.95}, real=True)
    return [Param(position_param(i), pos, (PLACEMENT.knob.param, "explicit"), i)
            for i in range(1, max_exits + 1)]


def branch_params(br: Section, branch: Dim) -> list[Param]:
    for name in br.raw:
        if name != BRANCH.knob.key and name not in BRANCHES:
            raise br.fail(name, f"is not a known key (known here: {BRANCH.knob.key}, "
                                f"{', '.join(BRANCHES.names())})")
    out = []
    for name in BRANCHES.names():
        sub = br.section(name)
        for key in sub.raw:
            if key not in BRANCH_PARAMS[name]:
                valid = ", ".join(BRANCH_PARAMS[name]) or "none"
                raise sub.fail(key, f"is not a parameter of branch {name!r} (valid: {valid})")
        if name in branch.values():
            out += [Param(branch_param(name, key), _dim(sub, key, number(1, integer=True)),
                          (BRANCH.knob.param, name))
                    for key in BRANCH_PARAMS[name] if sub.has(key)]
        sub._used.update(sub.raw)
    return out


def loss_params(lo: Section, loss: Dim) -> list[Param]:
    own = [k.knob.key for k in KNOBS.values() if k.knob.section == "loss"]
    for name in lo.raw:
        if name not in own and name not in LOSS_KINDS:
            raise lo.fail(name, f"is not a known key (known here: {', '.join(own)}, "
                                f"{', '.join(LOSS_KINDS.names())})")
    out = []
    for name in LOSS_KINDS.names():
        sub = lo.section(name)
        allowed = loss_param_names(name)
        for key in sub.raw:
            if key not in allowed:
                raise sub.fail(key, f"is not a parameter of loss {name!r} (valid: "
                                    f"{', '.join(allowed) or 'none'})")
            d = _dim(sub, key, _loss_check(name, key), real=key in ("alpha", "temperature", "lam"))
            if name in loss.values():
                out.append(Param(loss_param(name, key), d, (LOSS.knob.param, name)))
    return out


def threshold_params(po: Section, criterion: Dim, mode: str, max_exits: int) -> list[Param]:
    th = po.section("threshold")
    for name in th.raw:
        if name not in CRITERIA:
            raise th.fail(name, f"is not a known key (known here: {', '.join(CRITERIA.names())})")
    out = []
    when = CRITERION.knob.param
    for name in criterion.values():
        d = _dim(th, name, number(0, 1), DEFAULT_THRESHOLDS[name], real=True)
        if mode == "global":
            out.append(Param(threshold_param(name), d, (when, name)))
        else:
            out += [Param(threshold_param(name, i), d, (when, name), i)
                    for i in range(1, max_exits + 1)]
    th._used.update(th.raw)
    return out


def _dim(section: Section, key: str, check, default: Any = None, *, required: bool = False,
         ranges: bool = True, real: bool = False) -> Dim:
    """Read ``section[key]`` as a dimension (``default`` when absent)."""
    if required and not section.has(key):
        raise section.fail(key, "is required")
    raw = section.get(key, default)
    return parse_dim(raw, section._where(key), check, allow_range=ranges, real=real)


def _canonical(d: Dim, registry: Any) -> Dim:
    """Aliases -> canonical names (so params and configs use one spelling)."""
    if isinstance(d, Fixed):
        return Fixed(registry.resolve(d.value))
    names = tuple(registry.resolve(v) for v in d.values())
    return Choice(names) if len(set(names)) == len(names) else Choice(tuple(dict.fromkeys(names)))


def _loss_check(loss: str, key: str):
    def check(value: Any, where: str) -> Any:
        if key == "weights" and value not in ("uniform", "increasing"):
            raise ConfigError(f"{where} must be 'uniform' or 'increasing' in a search space "
                              f"(a list of weights depends on the exit count), got {value!r}")
        try:
            validate_loss_params(loss, {key: value}, where="x")
        except ConfigError as err:  # "x.alpha must be in [0, 1], got 2" -> name the YAML key
            raise ConfigError(f"{where} {str(err).split(' ', 1)[1]}") from None
        return value
    return check
