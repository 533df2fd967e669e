"""One trial: configuration -> proxy-trained exits -> metrics on cached outputs -> costs -> attrs.

1. The space decodes the trial's parameters into a :class:`~dse.design.Design`; the
   placement rule lands its exits on backbone blocks.
2. The branches are trained for the design's step budget on cached features with the
   backbone frozen (:func:`dse.train.proxy.train_design`); every exit's outputs on val and test
   are computed once (:class:`~dse.evaluation.ExitOutputs`). Training depends only on the
   *structure* (blocks, branch, loss, labels, steps, lr, ...), not on the criterion or thresholds,
   so its outputs are memoised per structure and its seed is ``hash(study seed, structure)``:
   the same structure gives the same exits in any trial, worker or re-run.
   ``training.labels: pseudo`` trains the branches on the frozen backbone's own predictions.
   Which labels *score* a trial is the study's choice, not the trial's (:func:`scoring_labels`):
   the ground truth for every trial, pseudo-label-trained or not, so the trials of a space that
   mixes label sources compare like with like (scored on its own pseudo labels a trial that
   sends every input to the final exit would read 100 %). Only a study whose every trial trains
   on pseudo labels (``dse search --unlabeled``, ``ptee.yaml``) scores on them
   (:meth:`~dse.evaluation.ExitOutputs.pseudo_labelled`): training, the val objectives, the
   accuracy-drop constraint (against the backbone's 100 % agreement with itself) and threshold
   tuning then never read a val label; test accuracy stays on the ground truth and is only
   reported (PTEEnet, Lahiany et al. 2022: pseudo labels for training and validation).
3. The design's criterion and thresholds are applied to the cached outputs
   (:func:`dse.evaluation.evaluate`): accuracy, exit fractions p_n, anytime accuracy, and
   expected cost sum_n p_n cost_n for MACs, latency and energy; plus a compact threshold sweep.

Objective values: [val accuracy (%), expected latency (ms), (expected MACs), (energy, mJ)] in
the study's ``objectives`` order. Constraints (<= 0 is feasible): expected latency - budget_ms,
and (backbone val accuracy - val accuracy) - max_drop, in accuracy points.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dse.errors import ConfigError, TrialFailed
from dse.cache import digest
from dse.design import Design, RunConfig
from dse.evaluation import evaluate, sweep
from dse.models.criteria import CRITERIA
from dse.models.placement import place as place_rule
from dse.train.proxy import result_outputs
from dse.train.saved_exits import trained_exits

#: threshold values in a trial's stored sweep
SWEEP_POINTS = 25
#: threshold values a trial considers for refinement (not stored)
REFINE_POINTS = 101
#: structures whose exit outputs stay in memory per process
MEMO_SIZE = 64


class InvalidDesign(Exception):
    """A combination that cannot work (recorded as a pruned trial with its reason)."""


@dataclass(frozen=True)
class Outcome:
    """What a trial reports: objective values, trial user_attrs and named constraints."""

    values: list[float]
    attrs: dict[str, Any]
    constraints: dict[str, float]
    #: thresholds -> (objective values, feasible) of the same exits with those global thresholds
    variants: Callable[[list[float]], tuple[list[list[float]], list[bool]]] | None = field(
        default=None, compare=False, repr=False)
    #: () -> a fine grid of thresholds worth trying for refinement
    refine_grid: Callable[[], Any] | None = field(default=None, compare=False, repr=False)


def invalid_reason(d: Design) -> str | None:
    """Why a design is not worth training, or None."""
    if d.policy.criterion == "learned" and d.training.loss.name != "eenet":
        return (f"criterion 'learned' reads the confidence head, which only loss 'eenet' trains "
                f"(loss is {d.training.loss.name!r})")
    return None


def check_space(space: Any) -> None:
    """Refuse a space none of whose configurations can work."""
    crit = set(space.knob("policy.criterion").dim.values())
    losses = set(space.knob("training.loss.name").dim.values())
    if crit == {"learned"} and "eenet" not in losses:
        raise ConfigError(f"{space.file}: exit_policy.criterion 'learned' reads the confidence "
                          "head, which only loss 'eenet' trains; add eenet to loss.name or "
                          "another criterion")


def structure_key(d: Design, blocks: tuple[int, ...]) -> tuple:
    """Everything proxy training depends on (not the criterion or thresholds)."""
    e, t = d.exits, d.training
    key = (blocks, e.branch, e.branch_params, t.loss.name, t.loss.params, t.loss.isc, t.labels,
           t.steps, repr(float(t.lr)), t.optimizer, t.batch_size)
    # a field added later joins the key only when it differs from its default, so studies made
    # before it existed keep their proxy seeds (and replay exactly)
    return key + ((("weight_decay", t.weight_decay),) if t.weight_decay else ())


def proxy_seed(seed: int, key: tuple) -> int:
    return int(digest(seed, key), 16) % (2 ** 31)


class OutputsMemo:
    """A small LRU of (val, test) ExitOutputs per structure key."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self.size, self._items = size, OrderedDict()

    def get(self, key: tuple):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        return None

    def put(self, key: tuple, value: Any) -> None:
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def place(ctx: Any, d: Design) -> tuple[int, ...]:
    e = d.exits
    try:
        total = ctx.backbone_macs or 1

        def branch(block: int) -> float:
            return ctx.branch_cost(e.branch, e.branch_params, block)[1] / total

        where = place_rule(e.placement, e.count, ctx.macs.cum_fractions, e.positions,
                           branch_cost=branch, first_attach=ctx.backbone.first_attach)
    except ConfigError as err:
        raise InvalidDesign(str(err)) from None
    if not where.blocks:
        raise InvalidDesign(f"placement {e.placement!r} put no exit on the backbone")
    return tuple(where.blocks)


def train_outputs(ctx: Any, d: Design, blocks: tuple[int, ...], costs: Any, memo: OutputsMemo | None):
    """(val, test, training info) of the design's structure, trained once per process.

    The trained exits are kept in the dse cache (:mod:`dse.train.saved_exits`), so the report's
    fine-tuning subsets, ``dse train --init proxy`` and a resumed study load them instead of
    training them again."""
    key = structure_key(d, blocks)
    hit = memo.get(key) if memo is not None else None
    if hit is not None:
        return hit
    seed = proxy_seed(ctx.settings.seed, key)
    final = costs.macs[-1] or 1
    result, _ = trained_exits(ctx.features, d, blocks, ctx.info.num_classes, seed=seed,
                              exit_costs=[m / final for m in costs.macs], device=ctx.device)
    val = result_outputs(ctx.features, result, "val", device=ctx.device)
    test = result_outputs(ctx.features, result, "test", device=ctx.device)
    info = {"proxy_seed": seed, "train_seconds": round(result.seconds, 3),
            "train_loss": float(np.mean(result.losses[-10:]))}
    if memo is not None:
        memo.put(key, (val, test, info))
    return val, test, info


def sweep_grid(outputs: Any, criterion: str, n: int = SWEEP_POINTS) -> np.ndarray:
    """About ``n`` thresholds from 'every input leaves at the first exit' to 'none leaves
    early': score quantiles of the early exits, denser in the tails (where the last few
    uncertain inputs are routed), plus one value past the last score."""
    scores = outputs.scores(criterion)[:-1].ravel()
    tails = max(1, (n - 1) // 4)
    q = np.unique(np.concatenate([np.linspace(0.0, 1.0, n - 1 - 2 * tails),
                                  np.geomspace(0.002, 0.05, tails),
                                  1.0 - np.geomspace(0.002, 0.05, tails)]))
    grid = np.unique(np.quantile(scores, q))
    beyond = grid[-1] + 1e-6 if CRITERIA.get(criterion).higher_is_confident else grid[0] - 1e-6
    return np.sort(np.append(grid, beyond))


def scoring_labels(space: Any) -> str:
    """The val labels a study scores its trials on: ``"pseudo"`` when every trial of ``space``
    trains on pseudo labels (no ground-truth val label is then read), else ``"ground_truth"``
    for every trial."""
    return "pseudo" if set(space.knob("training.labels").dim.values()) == {"pseudo"} \
        else "ground_truth"


def evaluate_design(ctx: Any, d: Design, memo: OutputsMemo | None = None, *,
                    val_labels: str = "ground_truth") -> Outcome:
    """Train (or reuse) the design's exits and measure everything a report needs, scoring val
    on ``val_labels`` (:func:`scoring_labels`; ``"pseudo"`` needs a pseudo-label design)."""
    reason = invalid_reason(d)
    if reason:
        raise InvalidDesign(reason)
    start = time.perf_counter()
    blocks = place(ctx, d)
    costs = ctx.exit_costs(blocks, d.exits.branch, d.exits.branch_params)
    val_out, test_out, train_info = train_outputs(ctx, d, blocks, costs, memo)
    pseudo = val_labels == "pseudo"
    if pseudo:
        if d.training.labels != "pseudo":
            raise ValueError("val_labels 'pseudo' scores only designs trained on pseudo labels")
        val_out = val_out.pseudo_labelled()
    criterion = d.policy.criterion
    # per-exit thresholds beyond the exits the placement found are dropped
    policy = d.with_thresholds(d.policy.thresholds[: len(blocks)]).policy \
        if len(d.policy.thresholds) > 1 else d.policy
    kw = dict(exit_macs=costs.macs, exit_latency_ms=costs.latency_ms, exit_energy_mj=costs.energy_mj)
    val = evaluate(val_out, criterion, policy.threshold_arg, **kw)
    test = evaluate(test_out, criterion, policy.threshold_arg, **kw)
    if not math.isfinite(val.accuracy) or not math.isfinite(val.expected_latency_ms):
        raise TrialFailed("the evaluation produced no finite accuracy or latency")
    metric = _metrics(val)
    reference = 100.0 if pseudo else ctx.backbone_val_accuracy
    constraints = _constraints(ctx, metric["accuracy"], metric["latency_ms"], reference)
    objectives = ctx.settings.objectives

    def variants(ts: list[float]) -> tuple[list[list[float]], list[bool]]:
        m = _metrics(sweep(val_out, criterion, ts, **kw))
        vals = [[float(m[o][i]) for o in objectives] for i in range(len(ts))]
        feas = [all(v <= 0 for v in _constraints(ctx, m["accuracy"][i], m["latency_ms"][i],
                                                 reference).values())
                for i in range(len(ts))]
        return vals, feas

    attrs = {"blocks": list(blocks), "thresholds": list(policy.thresholds),
             **_result_attrs(val, test, costs),
             "sweep": _sweep_attr(val_out, criterion, kw), **train_info,
             "duration_s": round(time.perf_counter() - start, 3),
             "constraint": [constraints[k] for k in ("budget_ms", "max_drop") if k in constraints]}
    return Outcome([float(metric[o]) for o in objectives], attrs, constraints,
                   variants if len(policy.thresholds) == 1 else None,
                   lambda: sweep_grid(val_out, criterion, REFINE_POINTS))


def _metrics(result: Any) -> dict[str, Any]:
    """Objective name -> value(s) of an evaluation or sweep result (accuracy in %)."""
    acc = result.accuracy
    return {"accuracy": 100.0 * (np.asarray(acc) if np.ndim(acc) else acc),
            "latency_ms": result.expected_latency_ms, "macs": result.expected_macs,
            "energy_mj": result.expected_energy_mj}


def _pct(values: Any) -> list[float]:
    return [round(100.0 * float(x), 4) for x in values]


def _result_attrs(val: Any, test: Any, costs: Any) -> dict[str, Any]:
    """Trial attributes of the val and test evaluations and the per-exit costs."""
    return {
        "val_accuracy": 100.0 * val.accuracy, "test_accuracy": 100.0 * test.accuracy,
        "exit_fractions": [float(x) for x in val.exit_fractions],
        "test_exit_fractions": [float(x) for x in test.exit_fractions],
        "per_exit_accuracy": _pct(val.per_exit_accuracy),
        "test_per_exit_accuracy": _pct(test.per_exit_accuracy),
        "expected_latency_ms": val.expected_latency_ms,
        "test_expected_latency_ms": test.expected_latency_ms,
        "expected_macs": val.expected_macs, "test_expected_macs": test.expected_macs,
        "expected_energy_mj": val.expected_energy_mj,
        "test_expected_energy_mj": test.expected_energy_mj,
        "exit_latency_ms": list(costs.latency_ms), "exit_macs": list(costs.macs),
        "exit_energy_mj": list(costs.energy_mj),
    }


def _sweep_attr(val_out: Any, criterion: str, kw: dict[str, Any]) -> dict[str, Any]:
    """The compact threshold sweep a report draws its trade-off curves from."""
    grid = sweep_grid(val_out, criterion)
    sw = sweep(val_out, criterion, grid, **kw)
    return {"criterion": criterion, "thresholds": [float(t) for t in grid],
            "accuracy": _pct(sw.accuracy), "latency_ms": [float(x) for x in sw.expected_latency_ms],
            "macs": [float(x) for x in sw.expected_macs]}


def _constraints(ctx: Any, accuracy: float, latency_ms: float,
                 reference: float) -> dict[str, float]:
    """Constraint values (<= 0 feasible): latency over budget, accuracy drop below
    ``reference`` (the backbone's val accuracy, in %) over max_drop."""
    s, out = ctx.settings, {}
    if s.budget_ms is not None:
        out["budget_ms"] = float(latency_ms) - s.budget_ms
    if s.max_drop is not None:
        out["max_drop"] = (reference - float(accuracy)) - s.max_drop
    return out


def run_config(ctx: Any, d: Design, blocks: list[int], thresholds: list[float],
               provenance: dict[str, Any]) -> RunConfig:
    """The :class:`~dse.design.RunConfig` of a trial (blocks resolved, thresholds chosen)."""
    s = ctx.settings
    return RunConfig.from_design(
        d.with_blocks(tuple(blocks)).with_thresholds(tuple(thresholds)), backbone=s.backbone,
        dataset=s.dataset, checkpoint=ctx.checkpoint, input_size=ctx.info.input_size, seed=s.seed,
        provenance=tuple(provenance.items()))
