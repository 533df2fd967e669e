"""The storage schema: every study and trial attribute dse writes, with its type, unit and
default. Everything reads and writes attributes through here.

A dse study is a plain Optuna study; what makes it a dse study is what it stores in
``user_attrs``. The study's attributes hold the setting (``dse worker`` and ``dse report``
rebuild everything from them); each trial's hold its design, costs and metrics. Units are fixed:
accuracy in percent, latency in ms, energy in mJ, MACs as counts, durations in s.

Feasibility and the Pareto front are defined here too, once: a trial is feasible when every
constraint value is <= 0; the front is Optuna's own ``best_trials`` (feasible, non-dominated
COMPLETE trials), without exact duplicates of an earlier trial's values, cheapest first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dse.evaluation.metrics import SECTION_KEYS
from dse.yamlio import to_plain

#: objective name -> Optuna direction
DIRECTIONS = {"accuracy": "maximize", "latency_ms": "minimize", "macs": "minimize",
              "energy_mj": "minimize"}
DEFAULT_OBJECTIVES = ("accuracy", "latency_ms")


@dataclass(frozen=True)
class Attr:
    """One user attribute: key, type, unit and the value read when it is absent."""

    key: str
    type: str
    unit: str = ""
    default: Any = None
    doc: str = ""

    def get(self, owner: Any) -> Any:
        """The value stored on ``owner`` (a study or trial), else the default."""
        return self.read(owner.user_attrs)

    def read(self, attrs: dict[str, Any]) -> Any:
        """The value in a user_attrs mapping, else the default."""
        value = attrs.get(self.key)
        return self.default if value is None else value

    def set(self, owner: Any, value: Any) -> None:
        owner.set_user_attr(self.key, to_plain(value))


def _table(*attrs: Attr) -> dict[str, Attr]:
    return {a.key: a for a in attrs}


#: attributes of a dse study (the setting; see dse.search.study.study_attrs)
STUDY = _table(
    Attr("dse_version", "str", doc="dse version that created the study"),
    Attr("backbone", "str", doc="backbone name or module:factory"),
    Attr("checkpoint", "str", doc="weights used (path)"),
    Attr("checkpoint_source", "str", default="cache", doc="checkpoint (given), cache or trained"),
    Attr("dataset", "str", doc="NAME[:PATH]"),
    Attr("input_size", "int", "px"),
    Attr("in_channels", "int"),
    Attr("num_classes", "int"),
    Attr("seed", "int", default=0),
    Attr("profile", "str", doc="hardware profile name"),
    Attr("profile_path", "str"),
    Attr("runtime", "str", doc="the profile's runtime"),
    Attr("batch", "int", default=1),
    Attr("objectives", "list[str]", default=list(DEFAULT_OBJECTIVES)),
    Attr("budget_ms", "float", "ms", doc="latency budget (constraint)"),
    Attr("max_drop", "float", "%", doc="accuracy drop allowed below the backbone (constraint)"),
    Attr("backbone_val_accuracy", "float", "%"),
    Attr("backbone_test_accuracy", "float", "%"),
    Attr("backbone_latency_ms", "float", "ms"),
    Attr("backbone_macs", "int", "MACs"),
    Attr("backbone_energy_mj", "float", "mJ"),
    Attr("block_macs", "list[int]", "MACs"),
    Attr("space_file", "str", default="default"),
    Attr("space", "dict", doc="the search space as plain YAML data"),
    Attr("sampler", "str", default="tpe"),
    Attr("backbone_epochs", "int"),
    Attr("feature_dtype", "str", default="float16"),
    Attr("max_samples", "int"),
    Attr("feature_source", "str", default="cache",
         doc="cache, or stream: features from the backbone per batch (--cache-budget)"),
    Attr("population_size", "int"),
    Attr("n_startup_trials", "int"),
    Attr("encoding", "str", doc="fixed or conditional"),
    Attr("refine", "bool"),
    Attr("target_trials", "int"),
    Attr("created", "str", doc="ISO time, UTC"),
)

#: attributes of a dse trial (see dse.search.objective and dse.search.runner)
TRIAL = _table(
    Attr("config", "dict", doc="the RunConfig (dse.design) as plain data"),
    Attr("blocks", "list[int]", doc="attach points of the early exits"),
    Attr("thresholds", "list[float]"),
    Attr("val_accuracy", "float", "%"),
    Attr("test_accuracy", "float", "%"),
    Attr("exit_fractions", "list[float]", doc="val fraction of inputs leaving at each exit"),
    Attr("test_exit_fractions", "list[float]"),
    Attr("per_exit_accuracy", "list[float]", "%"),
    Attr("test_per_exit_accuracy", "list[float]", "%"),
    Attr("expected_latency_ms", "float", "ms"),
    Attr("test_expected_latency_ms", "float", "ms"),
    Attr("expected_macs", "float", "MACs"),
    Attr("test_expected_macs", "float", "MACs"),
    Attr("expected_energy_mj", "float", "mJ"),
    Attr("test_expected_energy_mj", "float", "mJ"),
    Attr("exit_latency_ms", "list[float]", "ms"),
    Attr("exit_macs", "list[int]", "MACs"),
    Attr("exit_energy_mj", "list[float]", "mJ"),
    Attr("sweep", "dict", doc="criterion, thresholds, accuracy (%), latency_ms, macs"),
    Attr("proxy_seed", "int", doc="seed the exits were trained with"),
    Attr("train_seconds", "float", "s"),
    Attr("train_loss", "float"),
    Attr("duration_s", "float", "s"),
    Attr("constraint", "list[float]", default=[], doc="constraint values, <= 0 feasible "
         "(budget_ms, then max_drop); read by Optuna < 5"),
    Attr("fail_reason", "str"),
    Attr("worker", "str", doc="host:pid"),
    Attr("refined_from", "int", doc="trial whose threshold variant this is"),
    Attr("retry_of", "int", doc="trial whose dead worker this one replaces"),
)


def trial_attrs(trial: Any) -> dict[str, Any]:
    """Every declared trial attribute of ``trial`` (defaults where absent)."""
    return {key: attr.get(trial) for key, attr in TRIAL.items()}


def study_attrs(study: Any) -> dict[str, Any]:
    """Every declared study attribute of ``study`` (defaults where absent)."""
    return {key: attr.get(study) for key, attr in STUDY.items()}


def objectives(study: Any) -> list[str]:
    """The study's objective names in value order."""
    return list(STUDY["objectives"].get(study))


def directions(study: Any) -> list[str]:
    return [DIRECTIONS[o] for o in objectives(study)]


def is_feasible(trial: Any) -> bool:
    """Every constraint value <= 0 (no constraint: feasible)."""
    values = list(getattr(trial, "constraints", {}).values()) or TRIAL["constraint"].get(trial)
    return all(float(v) <= 0 for v in values)


def front_trials(study: Any) -> list[Any]:
    """The feasible non-dominated COMPLETE trials, by expected latency ascending.

    Optuna's ``best_trials`` decides the front; a trial with exactly the same objective values
    as an earlier front trial (another design landing on the same point) is left out
    (:func:`same_values` lists them).
    """
    first: dict[tuple, Any] = {}
    for t in sorted(study.best_trials, key=lambda t: t.number):
        first.setdefault(tuple(t.values), t)
    return sorted(first.values(), key=lambda t: (t.values[1], -t.values[0], t.number))


def same_values(trial: Any, trials: list) -> list[int]:
    """Other COMPLETE feasible trials with exactly ``trial``'s objective values."""
    return [t.number for t in trials if t.number != trial.number and t.state.name == "COMPLETE"
            and t.values == trial.values and is_feasible(t)]


def trial_sections(trial: Any) -> dict[str, dict[str, Any]]:
    """A trial's ``val`` and ``test`` sections with the keys every command's JSON uses
    (:data:`dse.evaluation.metrics.SECTION_KEYS`; accuracy in percent, latency in ms, energy in
    mJ, MACs as counts). The study stores no per-exit accuracy of the inputs that left at each
    exit, so ``exit_accuracy`` is None here."""
    a = trial_attrs(trial)
    out = {}
    for split, pre in (("val", ""), ("test", "test_")):
        per_exit = a[f"{pre}per_exit_accuracy"]
        values = {"accuracy": a[f"{split}_accuracy"], "per_exit_accuracy": per_exit,
                  "mean_anytime_accuracy": (sum(per_exit) / len(per_exit)) if per_exit else None,
                  "exit_accuracy": None, "exit_fractions": a[f"{pre}exit_fractions"],
                  "expected_macs": a[f"{pre}expected_macs"],
                  "expected_latency_ms": a[f"{pre}expected_latency_ms"],
                  "expected_energy_mj": a[f"{pre}expected_energy_mj"]}
        out[split] = {k: values[k] for k in SECTION_KEYS}
    return out
