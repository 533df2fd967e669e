"""Re-tune a trained model's exit thresholds on val for an objective (``dse thresholds``, the end
of ``dse train``).

Objectives (:class:`Objective`), each a rule of :func:`dse.evaluation.retune.retune` on the val
split's cached exit outputs, with expected latency predicted on a hardware profile:

- ``search`` (the default): the highest val accuracy whose expected latency does not exceed the
  latency the search predicted for this configuration (``search.expected_latency_ms`` in the
  config, on the search's profile and runtime). The configuration keeps the cost at which the
  search put it on its Pareto front and gets back whatever accuracy full training allows there;
  a point that met the study's latency budget still meets it, and the accuracy is the best
  reachable at that cost, so a study's accuracy constraint is met whenever it can be. Our
  choice: holding the latency fixed (rather than the accuracy) keeps the configuration where
  the user picked it on the latency axis, which is what a deployment budget fixes.
- ``budget`` (``--budget-ms X``): the highest val accuracy whose expected latency is <= X ms on
  the profile (``--profile``, else the search's).
- ``max_drop`` (``--max-drop Y``): the cheapest point (expected latency on the profile; MACs
  when no profile is known) whose val accuracy is within Y percentage points of the final
  exit's own val accuracy.

Ties go to the cheaper point (most accurate rules) or the more accurate one (cheapest rule).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

from dse.design import RunConfig
from dse.errors import ConfigError, DseError
from dse.evaluation.metrics import evaluate
from dse.evaluation.model import predicted_latency
from dse.evaluation.outputs import ExitOutputs
from dse.evaluation.retune import retune

OBJECTIVES = ("search", "budget", "max_drop")


@dataclass(frozen=True)
class Objective:
    """What the thresholds are re-tuned for (see the module docstring)."""

    name: str = "search"
    budget_ms: float | None = None
    max_drop: float | None = None

    def describe(self) -> str:
        if self.name == "budget":
            return f"most accurate within {self.budget_ms:g} ms"
        if self.name == "max_drop":
            return f"cheapest within {self.max_drop:g} points of the final exit"
        return "most accurate within the search's predicted latency"


def make_objective(objective: str | None = None, budget_ms: float | None = None,
                   max_drop: float | None = None) -> Objective:
    """The one objective asked for: ``budget_ms`` or ``max_drop`` when given, else ``objective``
    (default ``search``). Raises ConfigError for two at once or a bad value."""
    given = [n for n, v in (("--budget-ms", budget_ms), ("--max-drop", max_drop),
                            ("--objective", objective)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"give one of --objective, --budget-ms and --max-drop, got {' and '.join(given)}")
    if budget_ms is not None:
        if isinstance(budget_ms, bool) or not math.isfinite(budget_ms) or budget_ms <= 0:
            raise ConfigError(f"--budget-ms must be a finite number > 0, got {budget_ms!r}")
        return Objective("budget", budget_ms=float(budget_ms))
    if max_drop is not None:
        if isinstance(max_drop, bool) or not math.isfinite(max_drop) or max_drop < 0:
            raise ConfigError(f"--max-drop must be a finite number >= 0 (percentage points), "
                              f"got {max_drop!r}")
        return Objective("max_drop", max_drop=float(max_drop))
    if objective not in (None, "search"):
        raise ConfigError(f"--objective must be 'search' (or give --budget-ms or --max-drop), "
                          f"got {objective!r}")
    return Objective()


@dataclass(frozen=True)
class Retune:
    """The configuration with re-tuned thresholds and what ``dse thresholds --json`` reports."""

    config: RunConfig
    report: dict[str, Any]


def retune_model(model: Any, config: RunConfig, inputs: dict[str, Any], exit_macs: list[int],
                 val: ExitOutputs, test: ExitOutputs | None, objective: Objective = Objective(),
                 *, profile: str | None = None, runtime: str | None = None) -> Retune:
    """Re-tune ``config``'s thresholds on ``val`` (the model's val outputs) for ``objective``.

    ``model`` is the trained multi-exit model on the CPU (its structure gives the per-exit
    latency on the profile: ``profile`` / ``runtime``, else the search's); ``inputs`` the model
    file's input record. ``test``, when given, is measured before and after (never used to
    choose). Raises ConfigError when the objective cannot be met or needs what is missing.
    """
    prov = dict(config.provenance)
    if objective.name == "search" and (
            (profile is not None and profile != prov.get("profile"))
            or (runtime is not None and runtime != prov.get("runtime"))):
        raise ConfigError(f"--objective search keeps the latency the search predicted on its "
                          f"profile ({prov.get('profile')!r}, runtime {prov.get('runtime')!r}); "
                          "on another profile or runtime give --budget-ms instead")
    if objective.name == "search" and profile is not None and runtime is None:
        runtime = prov.get("runtime")  # the search's runtime goes with its profile
    exit_ms, predicted = predicted_latency(model, config, inputs, profile, runtime)
    costs, unit, kw = _costs(objective, prov, exit_ms, exit_macs, predicted)
    criterion = config.policy.criterion
    current = [config.policy.per_exit(val.num_exits - 1)] if val.num_exits > 1 else None
    chosen = retune(val, criterion, costs, unit=unit, extra=current, **kw)
    new = replace(config, policy=replace(config.policy, thresholds=chosen.thresholds))
    limit_key, limit = ((f"max_{unit}", chosen.limit) if chosen.rule == "max_cost"
                        else ("min_val_accuracy", 100.0 * chosen.limit))
    report = {
        "retuned": True, "note": None, "objective": objective.name, "rule": objective.describe(), "cost": unit,
        limit_key: limit, "profile": predicted.get("profile"),
        "runtime": predicted.get("runtime"), "exit_latency_ms": exit_ms,
        "predicted_latency_note": predicted.get("predicted_latency_note"),
        "before": _point(config, val, test, exit_macs, exit_ms),
        "after": _point(new, val, test, exit_macs, exit_ms),
    }
    return Retune(new, report)


def _costs(objective: Objective, prov: dict[str, Any], exit_ms: list[float] | None,
           exit_macs: list[int], predicted: dict[str, Any]) -> tuple[list[float], str, dict]:
    """(per-exit costs, their unit, the rule's keyword) for ``objective``."""
    why = predicted.get("predicted_latency_note") or "no profile"
    if objective.name == "max_drop":
        if exit_ms is None:  # no profile known: MACs rank the points the same way on most hardware
            return [float(m) for m in exit_macs], "macs", {"max_drop": objective.max_drop}
        return exit_ms, "latency_ms", {"max_drop": objective.max_drop}
    if objective.name == "budget":
        if exit_ms is None:
            raise ConfigError(f"--budget-ms needs a latency on a profile: {why}; pass --profile")
        return exit_ms, "latency_ms", {"max_cost": objective.budget_ms}
    searched = prov.get("expected_latency_ms")
    if not isinstance(searched, (int, float)) or isinstance(searched, bool) or searched <= 0:
        raise ConfigError("--objective search needs a configuration written by dse search (its "
                          "search.expected_latency_ms); give --budget-ms or --max-drop instead")
    if exit_ms is None:
        raise ConfigError(f"--objective search needs the search's profile: {why}")
    return exit_ms, "latency_ms", {"max_cost": float(searched)}


def _point(config: RunConfig, val: ExitOutputs, test: ExitOutputs | None, exit_macs: list[int],
           exit_ms: list[float] | None) -> dict[str, Any]:
    """A threshold choice: its thresholds and val (and test) sections."""
    t = config.policy.per_exit(val.num_exits - 1)
    kw = dict(exit_macs=exit_macs, exit_latency_ms=exit_ms)
    out = {"thresholds": list(config.policy.thresholds),
           "val": evaluate(val, config.policy.criterion, t, **kw).section()}
    if test is not None:
        out["test"] = evaluate(test, config.policy.criterion, t, **kw).section()
    return out


def retune_or_keep(model: Any, config: RunConfig, inputs: dict[str, Any], exit_macs: list[int],
                   val: ExitOutputs, test: ExitOutputs | None,
                   objective: Objective = Objective(),
                   log: Callable[[str], None] | None = None) -> Retune:
    """:func:`retune_model`, or the thresholds kept with the reason when it cannot apply (no
    early exit, a configuration not from a search, no profile, an unreachable limit): the end
    of ``dse train`` must not fail over it. The report then holds ``retuned: False`` and
    ``note``."""
    try:
        result = retune_model(model, config, inputs, exit_macs, val, test, objective)
    except DseError as exc:
        note = " ".join(str(exc).split())
        if log:
            log(f"thresholds kept as configured ({note})")
        point = _point(config, val, test, exit_macs, None)
        return Retune(config, {"retuned": False, "note": note, "objective": objective.name,
                               "before": point, "after": point})
    if log:
        after = result.report["after"]
        log(f"thresholds re-tuned on val ({objective.describe()}): "
            f"{_fmt(config.policy.thresholds)} -> {_fmt(result.config.policy.thresholds)}, "
            f"val accuracy {result.report['before']['val']['accuracy']:.2f}% -> "
            f"{after['val']['accuracy']:.2f}%")
    return result


def _fmt(values: Any) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
