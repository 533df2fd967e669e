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

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from dse.config import LABEL_SOURCES, OPTIMIZERS
from dse.errors import ConfigError
from dse.models.criteria import CRITERIA
from dse.models.exits import BRANCH_PARAMS, BRANCHES
from dse.models.placement import PLACEMENTS
from dse.resources import shipped_spaces
from dse.search.dims import Choice, Dim, Fixed, boolean, number, one_of, parse_dim
from dse.train.losses import LOSSES, LossSpec, loss_param_names, validate_loss_params
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
        return self.exit_index is None or self.exit_index <= values["exits"]


@dataclass(frozen=True)
class Candidate:
    """One configuration drawn from a space (before placement resolves the exit blocks)."""

    count: int
    placement: str
    positions: tuple[float, ...] | None
    branch: str
    branch_params: tuple[tuple[str, Any], ...]
    loss: LossSpec
    labels: str
    steps: int
    lr: float
    optimizer: str
    batch_size: int
    criterion: str
    thresholds: tuple[float, ...]  # one global value, or one per requested exit


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

    @property
    def max_exits(self) -> int:
        return int(max(self.param("exits").dim.values()))

    @property
    def searched(self) -> list[Param]:
        return [p for p in self.params if not isinstance(p.dim, Fixed)]

    def suggest(self, trial: Any, conditional: bool = False) -> Candidate:
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

    def decode(self, params: Mapping[str, Any]) -> Candidate:
        """The configuration that ``params`` (Optuna's ``trial.params``) describes."""
        v = {p.name: p.dim.value for p in self.params if isinstance(p.dim, Fixed)}
        v.update(params)
        count, placement, branch, loss = v["exits"], v["placement"], v["branch"], v["loss"]
        positions = None
        if placement == "explicit":
            positions = tuple(sorted(float(v[f"position_{i}"]) for i in range(1, count + 1)))
        bparams = tuple((k, v[f"{branch}_{k}"]) for k in BRANCH_PARAMS[branch]
                        if f"{branch}_{k}" in v)
        lparams = {k: v[f"{loss}_{k}"] for k in loss_param_names(loss) if f"{loss}_{k}" in v}
        crit = v["criterion"]
        if self.thresholds == "global":
            thresholds = (float(v[f"threshold_{crit}"]),)
        else:
            thresholds = tuple(float(v[f"threshold_{crit}_{i}"]) for i in range(1, count + 1))
        return Candidate(count, placement, positions, branch, bparams,
                         LossSpec(loss, lparams, bool(v["isc"])), v["labels"], int(v["steps"]),
                         float(v["lr"]), v["optimizer"], int(v["batch_size"]), crit, thresholds)

    def candidates(self) -> Iterator[Candidate]:
        """Every distinct configuration of a discrete space (parameters that do not apply to a
        configuration are not multiplied in)."""
        seen: set = set()

        def walk(i: int, values: dict[str, Any]) -> Iterator[Candidate]:
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


def parse_space(raw: Any, file: str) -> SearchSpace:
    """Validate a space's raw YAML data; ``file`` names it in every error message."""
    root = Section(raw, file)
    params: list[Param] = []
    dim = _dim

    ex = root.section("exits", required=True)
    count = dim(ex, "count", number(1, integer=True), required=True)
    params.append(Param("exits", count))
    placement = dim(ex, "placement", one_of(PLACEMENTS, "placement rule"), "pareto", ranges=False)
    params.append(Param("placement", _canonical(placement, PLACEMENTS)))
    max_exits = int(max(count.values()))
    if "explicit" in _canonical(placement, PLACEMENTS).values():
        pos = dim(ex, "positions", number(0, 1, low_open=True, high_open=True),
                  {"low": 0.05, "high": 0.95}, real=True)
        params += [Param(f"position_{i}", pos, ("placement", "explicit"), i)
                   for i in range(1, max_exits + 1)]
    elif ex.has("positions"):
        raise ex.fail("positions", "is only used when placement includes 'explicit'")
    ex.done()

    br = root.section("branch")
    branch = _canonical(dim(br, "type", one_of(BRANCHES, "branch type"), "pool", ranges=False), BRANCHES)
    params.append(Param("branch", branch))
    for name in br.raw:
        if name != "type" and name not in BRANCHES:
            raise br.fail(name, f"is not a known key (known here: type, {', '.join(BRANCHES.names())})")
    for name in BRANCHES.names():
        sub = br.section(name)
        for key in sub.raw:
            if key not in BRANCH_PARAMS[name]:
                valid = ", ".join(BRANCH_PARAMS[name]) or "none"
                raise sub.fail(key, f"is not a parameter of branch {name!r} (valid: {valid})")
        if name in branch.values():
            for key in BRANCH_PARAMS[name]:
                if sub.has(key):
                    params.append(Param(f"{name}_{key}", dim(sub, key, number(1, integer=True)),
                                        ("branch", name)))
        sub._used.update(sub.raw)
    br.done()

    lo = root.section("loss")
    loss = _canonical(dim(lo, "name", one_of(LOSSES, "loss"), "ce", ranges=False), LOSSES)
    params.append(Param("loss", loss))
    for name in lo.raw:
        if name not in ("name", "isc") and name not in LOSSES:
            raise lo.fail(name, f"is not a known key (known here: name, isc, {', '.join(LOSSES.names())})")
    for name in LOSSES.names():
        sub = lo.section(name)
        allowed = loss_param_names(name)
        for key in sub.raw:
            if key not in allowed:
                raise sub.fail(key, f"is not a parameter of loss {name!r} (valid: "
                                    f"{', '.join(allowed) or 'none'})")
            check = _loss_check(name, key)
            d = dim(sub, key, check, real=key in ("alpha", "temperature", "lam"))
            if name in loss.values():
                params.append(Param(f"{name}_{key}", d, ("loss", name)))
    params.append(Param("isc", dim(lo, "isc", boolean, False, ranges=False)))
    lo.done()

    po = root.section("exit_policy")
    criterion = _canonical(dim(po, "criterion", one_of(CRITERIA, "exit criterion"), "maxprob",
                               ranges=False), CRITERIA)
    params.append(Param("criterion", criterion))
    mode = po.str("thresholds", "global", THRESHOLD_MODES)
    th = po.section("threshold")
    for name in th.raw:
        if name not in CRITERIA:
            raise th.fail(name, f"is not a known key (known here: {', '.join(CRITERIA.names())})")
    for name in criterion.values():
        d = dim(th, name, number(0, 1), DEFAULT_THRESHOLDS[name], real=True)
        if mode == "global":
            params.append(Param(f"threshold_{name}", d, ("criterion", name)))
        else:
            params += [Param(f"threshold_{name}_{i}", d, ("criterion", name), i)
                       for i in range(1, max_exits + 1)]
    th._used.update(th.raw)
    po.done()

    tr = root.section("training")
    params += [
        Param("steps", dim(tr, "steps", number(1, integer=True), 300)),
        Param("lr", dim(tr, "lr", number(0, low_open=True), 3e-3, real=True)),
        Param("labels", dim(tr, "labels", one_of(LABEL_SOURCES, "label source"), "ground_truth",
                            ranges=False)),
        Param("optimizer", dim(tr, "optimizer", one_of(OPTIMIZERS, "optimizer"), "adam", ranges=False)),
        Param("batch_size", dim(tr, "batch_size", number(1, integer=True), 128)),
    ]
    tr.done()
    root.done()
    return SearchSpace(tuple(params), mode, file, raw if isinstance(raw, dict) else {})


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


