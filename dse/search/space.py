"""Search spaces: ``search_spaces/*.yaml`` -> a validated :class:`SearchSpace` -> Optuna parameters.

A space lists, per design dimension, a fixed value, choices or a range (see :mod:`dse.search.dims`)::

    exits:       {count: {low: 1, high: 4}, placement: [pareto, golden, explicit],
                  positions: {low: 0.05, high: 0.95}}       # explicit: one MAC fraction per exit
    branch:      {type: [pool, convx], convx: {depth: {low: 1, high: 2}, width: [8, 16]}}
    loss:        {name: [ce, kd, eenet], isc: [false, true], ce: {weights: [uniform, increasing]},
                  kd: {alpha: {low: 0.2, high: 0.9}, temperature: {low: 1.0, high: 5.0}},
                  eenet: {version: [v1, v2], lam: {low: 0.001, high: 0.5, log: true}}}
    exit_policy: {criterion: [maxprob, entropy], thresholds: global,
                  threshold: {maxprob: {low: 0.5, high: 0.999}, entropy: {low: 0.01, high: 0.6}}}
    training:    {steps: [100, 200], lr: {low: 0.001, high: 0.03, log: true},
                  labels: [ground_truth, pseudo], optimizer: adam, batch_size: 128}

The loader rejects unknown keys, wrong types, empty choice lists and low > high with one line
naming the file and the key. The exit count, placement, branch, loss and criterion decide which
other parameters apply (``position_3`` needs three explicit exits, ``kd_alpha`` the kd loss), so
:meth:`SearchSpace.suggest` has two encodings. *Fixed-length*: every trial suggests every
searchable parameter and :meth:`SearchSpace.decode` ignores those that do not apply; every trial
then has the same search space, which NSGA-II's crossover needs. *Conditional*: a trial suggests
only the parameters it uses (a dynamic search space), which multivariate TPE with ``group=True``
models per group of co-occurring parameters. ``benchmarks/search_quality.py`` compares them.
"""
from __future__ import annotations

import copy
import os
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from dse.design.checks import number
from dse.design.knobs import (KnobField, branch_param, knob_fields, loss_param, position_param,
                              threshold_param)
from dse.design.losses import LOSS_KINDS, LossSpec, loss_param_names, validate_loss_params
from dse.design.types import Design, ExitDesign, ExitPolicy, TrainingSpec
from dse.errors import ConfigError
from dse.models.criteria import CRITERIA
from dse.models.exits import BRANCH_PARAMS, BRANCHES
from dse.resources import shipped_spaces
from dse.search.dims import Choice, Dim, Fixed, parse_dim
from dse.yamlio import Section, read_yaml

SPACES_DIR = shipped_spaces()
THRESHOLD_MODES = ("global", "per_exit")
#: threshold ranges used when a space names a criterion but gives no range for it
DEFAULT_THRESHOLDS = {"maxprob": {"low": 0.5, "high": 0.999}, "entropy": {"low": 0.005, "high": 0.6},
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
        return self.exit_index is None or self.exit_index <= values[_COUNT.knob.param]


#: the searchable fields of a design (declared on the dataclasses), by their design path
KNOBS: dict[str, KnobField] = {kf.path: kf for kf in knob_fields(Design)}
_COUNT, _PLACEMENT, _BRANCH = KNOBS["exits.count"], KNOBS["exits.placement"], KNOBS["exits.branch"]
_LOSS, _CRITERION = KNOBS["training.loss.name"], KNOBS["policy.criterion"]
#: search-space sections in the order their parameters are suggested (a fixed order keeps a
#: seeded study reproducible)
SECTIONS = ("exits", "branch", "loss", "exit_policy", "training")


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    thresholds: str                      # "global" or "per_exit"
    file: str
    raw: dict = field(default_factory=dict, compare=False, hash=False)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def knob(self, path: str) -> Param:
        """The parameter of design field ``path`` (e.g. ``policy.criterion``)."""
        return self.param(KNOBS[path].knob.param)

    @property
    def max_exits(self) -> int:
        return int(max(self.knob("exits.count").dim.values()))

    @property
    def searched(self) -> list[Param]:
        return [p for p in self.params if not isinstance(p.dim, Fixed)]

    def suggest(self, trial: Any, conditional: bool = False) -> Design:
        """Ask ``trial`` for every searchable parameter (fixed-length), then decode.

        ``conditional=True`` asks only for parameters that apply (a dynamic search space).
        """
        values: dict[str, Any] = {}
        for p in self.params:
            if isinstance(p.dim, Fixed):
                values[p.name] = p.dim.value
            elif not conditional or p.applies(values):
                values[p.name] = p.dim.suggest(trial, p.name)
        return self.decode(values)

    def decode(self, params: Mapping[str, Any]) -> Design:
        """The design that ``params`` (Optuna's ``trial.params``) describe."""
        v = {p.name: p.dim.value for p in self.params if isinstance(p.dim, Fixed)}
        v.update(params)
        fields_: dict[str, dict[str, Any]] = {"exits": {}, "training": {}, "policy": {},
                                             "training.loss": {}}
        for path, kf in KNOBS.items():
            owner, name = path.rsplit(".", 1)
            value = v[kf.knob.param]
            fields_[owner][name] = kf.knob.cast(value) if kf.knob.cast else value
        count, placement = fields_["exits"]["count"], fields_["exits"]["placement"]
        branch, loss = fields_["exits"]["branch"], fields_["training.loss"]["name"]
        criterion = fields_["policy"]["criterion"]
        positions = None
        if placement == "explicit":
            positions = tuple(sorted(float(v[position_param(i)]) for i in range(1, count + 1)))
        bparams = tuple((k, v[branch_param(branch, k)]) for k in BRANCH_PARAMS[branch]
                        if branch_param(branch, k) in v)
        lparams = {k: v[loss_param(loss, k)] for k in loss_param_names(loss)
                   if loss_param(loss, k) in v}
        if self.thresholds == "global":
            thresholds = (float(v[threshold_param(criterion)]),)
        else:
            thresholds = tuple(float(v[threshold_param(criterion, i)]) for i in range(1, count + 1))
        return Design(
            ExitDesign(positions=positions, branch_params=bparams, **fields_["exits"]),
            TrainingSpec(loss=LossSpec(params=lparams, **fields_["training.loss"]),
                         **fields_["training"]),
            ExitPolicy(thresholds=thresholds, **fields_["policy"]))

    def candidates(self) -> Iterator[Design]:
        """Every distinct design of a discrete space (parameters that do not apply to a
        design are not multiplied in)."""
        seen: set = set()

        def walk(i: int, values: dict[str, Any]) -> Iterator[Design]:
            if i == len(self.params):
                c = self.decode(values)
                if c not in seen:
                    seen.add(c)
                    yield c
                return
            p = self.params[i]
            if not p.applies(values):
                yield from walk(i + 1, values)
                return
            for value in p.dim.values():
                yield from walk(i + 1, {**values, p.name: value})

        yield from walk(0, {})

    def to_plain(self) -> dict:
        """The space as plain YAML data (what a study stores; :func:`parse_space` reads it)."""
        return self.raw


# ---------------------------------------------------------------- loading

def resolve_space_path(name_or_path: str | os.PathLike) -> Path:
    """``default`` -> ``search_spaces/default.yaml``; a path is taken as it is."""
    text = os.fspath(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text or "/" in text:
        return Path(text)
    path = SPACES_DIR / f"{text}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))) or "none"
        raise ConfigError(f"--space {text}: no such search space (shipped: {shipped}; or give "
                          "a path to a YAML file)")
    return path


def load_space(name_or_path: str | os.PathLike) -> SearchSpace:
    """Read and validate a search-space file (a shipped name or a path)."""
    path = resolve_space_path(name_or_path)
    return parse_space(read_yaml(path), str(path))


def unlabeled(space: SearchSpace) -> SearchSpace:
    """The same space with ``training.labels: pseudo`` (``dse search --unlabeled``): every trial
    trains on, validates against and tunes its thresholds on the frozen backbone's own
    predictions (:mod:`dse.search.objective`), so no ground-truth train or val label is read.
    The study stores this space, so workers follow it."""
    raw = copy.deepcopy(dict(space.raw))
    raw["training"] = {**dict(raw.get("training") or {}), "labels": "pseudo"}
    return parse_space(raw, space.file)


def parse_space(raw: Any, file: str) -> SearchSpace:
    """Validate a space's raw YAML data; ``file`` names it in every error message.

    Each section's knobs (see :data:`KNOBS`) become parameters in declaration order; the
    families that depend on a knob's values follow it: explicit positions after the placement,
    branch parameters after the branch type, loss parameters after the loss, thresholds after
    the criterion.
    """
    root = Section(raw, file)
    params: list[Param] = []
    mode = "global"
    max_exits = 0
    for name in SECTIONS:
        sec = root.section(name, required=name == "exits")
        if name == "exit_policy":
            mode = sec.str("thresholds", "global", THRESHOLD_MODES)
        for kf in (k for k in KNOBS.values() if k.knob.section == name):
            d = _knob_dim(sec, kf)
            params.append(Param(kf.knob.param, d))
            if kf is _COUNT:
                max_exits = int(max(d.values()))
            elif kf is _PLACEMENT:
                params += _positions(sec, d, max_exits)
            elif kf is _BRANCH:
                params += _branch_params(sec, d)
            elif kf is _LOSS:
                params += _loss_params(sec, d)
            elif kf is _CRITERION:
                params += _thresholds(sec, d, mode, max_exits)
        sec.done()
    root.done()
    return SearchSpace(tuple(params), mode, file, raw if isinstance(raw, dict) else {})


def _knob_dim(section: Section, kf: KnobField) -> Dim:
    """A knob's dimension from its section (its field default when absent)."""
    k = kf.knob
    required = kf.default is MISSING
    d = _dim(section, k.key, k.check, None if required else kf.default, required=required,
             ranges=k.ranges, real=k.real)
    return _canonical(d, k.registry) if k.registry is not None else d


def _positions(ex: Section, placement: Dim, max_exits: int) -> list[Param]:
    if "explicit" not in placement.values():
        if ex.has("positions"):
            raise ex.fail("positions", "is only used when placement includes 'explicit'")
        return []
    pos = _dim(ex, "positions", number(0, 1, low_open=True, high_open=True),
               {"low": 0.05, "high": 0.95}, real=True)
    return [Param(position_param(i), pos, (_PLACEMENT.knob.param, "explicit"), i)
            for i in range(1, max_exits + 1)]


def _branch_params(br: Section, branch: Dim) -> list[Param]:
    for name in br.raw:
        if name != _BRANCH.knob.key and name not in BRANCHES:
            raise br.fail(name, f"is not a known key (known here: {_BRANCH.knob.key}, "
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
                          (_BRANCH.knob.param, name))
                    for key in BRANCH_PARAMS[name] if sub.has(key)]
        sub._used.update(sub.raw)
    return out


def _loss_params(lo: Section, loss: Dim) -> list[Param]:
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
                out.append(Param(loss_param(name, key), d, (_LOSS.knob.param, name)))
    return out


def _thresholds(po: Section, criterion: Dim, mode: str, max_exits: int) -> list[Param]:
    th = po.section("threshold")
    for name in th.raw:
        if name not in CRITERIA:
            raise th.fail(name, f"is not a known key (known here: {', '.join(CRITERIA.names())})")
    out = []
    when = _CRITERION.knob.param
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


def space_size(space: SearchSpace) -> int:
    """Number of distinct configurations of a discrete space."""
    return sum(1 for _ in space.candidates())


