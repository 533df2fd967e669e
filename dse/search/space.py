"""Search spaces: ``search_spaces/*.yaml`` -> a validated :class:`SearchSpace` -> Optuna parameters.

A space lists, per design dimension, a fixed value, choices or a range
(see :mod:`dse.search.dims`)::

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

This module holds the space itself (finding and loading a file, walking its sections, suggesting
and decoding designs); the parameters each section yields, and their checks, are built in
:mod:`dse.search.space_params`, so each module has one job.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from dse.design.knobs import branch_param, loss_param, position_param, threshold_param
from dse.design.losses import LossSpec, loss_param_names
from dse.design.types import Design, ExitDesign, ExitPolicy, TrainingSpec
from dse.errors import ConfigError
from dse.models.exits import BRANCH_PARAMS
from dse.resources import shipped_spaces
from dse.search.dims import Fixed
from dse.search.space_params import (BRANCH, COUNT, CRITERION, KNOBS, LOSS, PLACEMENT, Param,
                                     branch_params, knob_dim, loss_params, position_params,
                                     threshold_params)
from dse.yamlio import Section, read_yaml

SPACES_DIR = shipped_spaces()
THRESHOLD_MODES = ("global", "per_exit")

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
            d = knob_dim(sec, kf)
            params.append(Param(kf.knob.param, d))
            if kf is COUNT:
                max_exits = int(max(d.values()))
            elif kf is PLACEMENT:
                params += position_params(sec, d, max_exits)
            elif kf is BRANCH:
                params += branch_params(sec, d)
            elif kf is LOSS:
                params += loss_params(sec, d)
            elif kf is CRITERION:
                params += threshold_params(sec, d, mode, max_exits)
        sec.done()
    root.done()
    return SearchSpace(tuple(params), mode, file, raw if isinstance(raw, dict) else {})


def space_size(space: SearchSpace) -> int:
    """Number of distinct configurations of a discrete space."""
    return sum(1 for _ in space.candidates())
