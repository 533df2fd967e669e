"""Search quality: hypervolume a sampler reaches in 40 trials, against the exhaustive front.

A small discrete space (``benchmarks/search_quality_space.yaml``, <= 300 configurations) on the
embedded default (digits, ``digits-resnet``, profile ``jetson``) is evaluated exhaustively with
the real trial code (:func:`dse.search.objective.evaluate_design`: proxy training, cached
outputs, latency model); the table of (val accuracy %, expected latency ms) per configuration is
cached in ``$DSE_CACHE/search_quality/``. Each sampler then runs ``--trials`` trials against a
lookup of that table (same space, same fixed-length encoding as ``dse search``), for ``--seeds``
seeds. Score: hypervolume of the trials found / hypervolume of the exhaustive front, both with
objectives scaled so the space spans [0, 1] (the best accuracy and the lowest latency of any
configuration at 0, the worst at 1) and the reference point at 1.1; the median over seeds is
reported.

    python benchmarks/search_quality.py --json
    -> {"hv_default": ..., "hv_random": ..., "n_space": ..., "hv_by_sampler": {...}, ...}

Set-ups compared (``hv_by_sampler``): TPE and NSGA-II, each with the *fixed-length* encoding
(every parameter suggested in every trial; those a configuration does not use are ignored) and
the *conditional* one (only the parameters a configuration uses: a dynamic search space), and
random search. ``hv_default`` is ``dse search``'s default set-up.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPACE = HERE / "search_quality_space.yaml"


def exhaustive_table(space, ctx, log) -> tuple[dict[str, list[float]], float]:
    """{candidate key: [val accuracy %, expected latency ms]} for every configuration (cached)."""
    from dse.cache import cache_dir, digest
    from dse.search.objective import InvalidDesign, OutputsMemo, evaluate_design

    key = digest(space.to_plain(), ctx.checkpoint, ctx.profile.name, ctx.runtime.name,
                 ctx.settings.seed, ctx.backbone_val_accuracy, 2)
    path = cache_dir("search_quality") / f"table_{key}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return data["table"], data["seconds"]
    start, memo, table = time.perf_counter(), OutputsMemo(size=10_000), {}
    candidates = list(space.candidates())
    for i, c in enumerate(candidates):
        try:
            table[repr(c)] = evaluate_design(ctx, c, memo).values[:2]
        except InvalidDesign:
            table[repr(c)] = None
        if log and (i + 1) % 50 == 0:
            log(f"evaluated {i + 1}/{len(candidates)} configurations")
    seconds = time.perf_counter() - start
    path.write_text(json.dumps({"table": table, "seconds": seconds}))
    return table, seconds


#: sampler set-ups compared: (sampler, encoding, threshold refinement)
SETUPS = {f"{s}+{e}{'+refine' if r else ''}": (s, e, r)
          for s in ("tpe", "nsga2") for e in ("conditional", "fixed") for r in (True, False)}
SETUPS["random"] = ("random", "fixed", False)


def setup_name(sampler: str, encoding: str, refine: bool) -> str:
    return f"{sampler}+{encoding}{'+refine' if refine else ''}" if sampler != "random" else "random"


def replay(space, table, setup: str, seed: int, trials: int) -> list[list[float]]:
    """Run one sampler set-up against the table; the objective values of its complete trials.

    With refinement, the objective enqueues threshold variants exactly as ``dse search`` does
    (:func:`dse.search.refine.enqueue_variants`), reading their values from the table where
    ``dse search`` reads them from a sweep of the trial's cached outputs.
    """
    import optuna

    from dse.search.refine import candidate_values, enqueue_variants, threshold_param
    from dse.search.study import make_sampler

    name, encoding, refine = SETUPS[setup]
    conditional = encoding == "conditional"
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=make_sampler(name, seed))
    study.set_user_attr("objectives", ["accuracy", "latency_ms"])

    def objective(trial):
        values = table[repr(space.suggest(trial, conditional=conditional))]
        if values is None:
            raise optuna.TrialPruned()
        found = threshold_param(space, trial.params) if refine else None
        if found is not None:
            ts = candidate_values(found[1], [])
            variants = [table[repr(space.decode({**trial.params, found[0]: t}))] for t in ts]
            ok = [v is not None for v in variants]
            enqueue_variants(study, space, dict(trial.params), values, ts,
                             [v or values for v in variants], ok, trials, source=trial.number)
        return values

    study.optimize(objective, n_trials=trials)
    return [t.values for t in study.trials if t.values]


def run(args: argparse.Namespace) -> dict:
    import warnings

    import optuna
    import torch

    from dse.search.context import StudySettings, build_context
    from dse.search.pareto import normalised_hypervolume, pareto_front
    from dse.search.space import load_space
    from dse.search.study import DEFAULT_SAMPLER, ENCODING, REFINE

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    log = None if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    space = load_space(args.space)
    ctx = build_context(StudySettings(profile=args.profile, space_file=str(args.space)),
                        max_exits=space.max_exits, progress=False, log=log)
    table, table_s = exhaustive_table(space, ctx, log)
    points = [v for v in table.values() if v is not None]
    directions = ["maximize", "minimize"]
    front = [points[i] for i in pareto_front(points, directions)]
    ideal = [max(p[0] for p in points), min(p[1] for p in points)]
    nadir = [min(p[0] for p in points), max(p[1] for p in points)]

    def hv(values: list[list[float]]) -> float:
        return normalised_hypervolume(values, directions, ideal, nadir)

    best = hv(front)
    start = time.perf_counter()
    default = setup_name(DEFAULT_SAMPLER, ENCODING[DEFAULT_SAMPLER], REFINE[DEFAULT_SAMPLER])
    ratios = {}
    for name in [default] + [s for s in SETUPS if s != default]:
        per_seed = [hv(replay(space, table, name, seed, args.trials)) / best
                    for seed in range(args.seeds)]
        ratios[name] = {"median": statistics.median(per_seed),
                        "per_seed": [round(r, 4) for r in per_seed]}
    return {
        "hv_default": round(ratios[default]["median"], 4),
        "hv_random": round(ratios["random"]["median"], 4),
        "n_space": len(table),
        "default_sampler": default,
        "hv_by_sampler": {k: round(v["median"], 4) for k, v in ratios.items()},
        "hv_per_seed": {k: v["per_seed"] for k, v in ratios.items()},
        "trials": args.trials, "seeds": args.seeds,
        "exhaustive_front_size": len(front),
        "exhaustive_front": sorted(front, key=lambda p: p[1]),
        "table_seconds": round(table_s, 1), "replay_seconds": round(time.perf_counter() - start, 1),
        "profile": ctx.profile.name, "runtime": ctx.runtime.name,
        "backbone_val_accuracy": ctx.backbone_val_accuracy,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--profile", default="jetson")
    parser.add_argument("--space", default=str(SPACE))
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key in ("n_space", "hv_default", "hv_random", "hv_by_sampler", "exhaustive_front_size",
                    "table_seconds", "replay_seconds"):
            print(f"{key}: {result[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
