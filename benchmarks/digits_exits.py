"""Digits result: early exits trained by the proxy against the backbone alone.

The default digits-resnet backbone (trained once, cached) gets ``--exits`` exits placed by
``--placement``; the proxy trains only the branches from the feature cache; the threshold of
``--criterion`` is chosen on the val split as the cheapest one (lowest expected MACs) whose
val accuracy is at least the backbone's val accuracy minus ``--tolerance``. Test accuracy and
expected MACs (exit MACs from :mod:`dse.cost.assemble`, expected over the test exit mix) are
then reported against the backbone alone. As a check, the test numbers are also computed by the
real early-exit path (:meth:`MultiExitNet.early_exit`).

    python benchmarks/digits_exits.py --json
"""
from __future__ import annotations

import argparse
import json
import sys


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from dse.data import load_dataset, split_tensors
    from dse.evaluation import ExitOutputs, evaluate, sweep
    from dse.cost.assemble import InputSpec, assemble
    from dse.models.multiexit import MultiExitNet
    from dse.device import set_threads
    from dse.train.backbone import ensure_backbone
    from dse.train.features import build_feature_cache
    from dse.train.proxy import result_outputs, train_branches

    set_threads(args.threads)
    splits = load_dataset("digits", seed=args.seed)
    info = splits.info
    backbone, binfo = ensure_backbone("digits-resnet", "digits", seed=args.seed, splits=splits,
                                      progress=False, log=None)
    inputs = InputSpec(info.channels, info.input_size, info.num_classes)
    a = assemble(backbone, inputs, args.exits, args.placement, args.branch)
    blocks = list(a.placement.blocks)
    cache = build_feature_cache(backbone, splits, blocks, dtype=args.dtype, cache_dir=False)
    result = train_branches(cache, blocks, args.branch, loss=args.loss, labels=args.labels,
                            steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    val, test = result_outputs(cache, result, "val"), result_outputs(cache, result, "test")

    thresholds = np.linspace(0.0, 1.0, 1001)
    swept = sweep(val, args.criterion, thresholds, a.exit_macs)
    base_val = float(val.correct()[-1].mean())
    if args.select == "accuracy":
        feasible = swept.accuracy >= base_val - args.tolerance - 1e-12
    else:  # agreement: accuracy against the backbone's own predictions (labels = final argmax)
        agree = ExitOutputs(val.logits, val.conf, val.logits[-1].argmax(-1))
        feasible = sweep(agree, args.criterion, thresholds).accuracy >= 1 - args.tolerance - 1e-12
    best = int(np.argmin(np.where(feasible, swept.expected_macs, np.inf)))
    threshold = float(thresholds[best])
    ev = evaluate(test, args.criterion, threshold, a.exit_macs)

    # the same numbers through the deployment path (batch early exit with real stopping)
    model = MultiExitNet(backbone, blocks, result.branches).eval()
    x, y = split_tensors(splits.test)
    logits, exit_index = model.early_exit(x, args.criterion, threshold)
    real_acc = float((logits.argmax(1) == y).numpy().mean())
    real_fractions = np.bincount(exit_index.numpy(), minlength=len(blocks) + 1) / len(y)
    backbone_macs = a.macs.total_macs
    base_test = float(test.correct()[-1].mean())
    return {
        "backbone_val_accuracy": base_val, "backbone_test_accuracy": base_test,
        "early_exit_val_accuracy": float(swept.accuracy[best]),
        "early_exit_test_accuracy": ev.accuracy,
        "accuracy_drop_points": round(100 * (base_test - ev.accuracy), 3),
        "backbone_macs": backbone_macs, "expected_macs": ev.expected_macs,
        "macs_saving": 1 - ev.expected_macs / backbone_macs,
        "exit_fractions": ev.exit_fractions.tolist(),
        "per_exit_test_accuracy": ev.per_exit_accuracy.tolist(),
        "exit_macs": a.exit_macs, "exit_blocks": blocks, "threshold": threshold,
        "real_early_exit_test_accuracy": real_acc,
        "real_early_exit_fractions": real_fractions.tolist(),
        "config": {"exits": args.exits, "placement": args.placement, "branch": args.branch,
                   "criterion": args.criterion, "loss": args.loss, "labels": args.labels,
                   "steps": args.steps, "lr": args.lr, "select": args.select,
                   "tolerance": args.tolerance,
                   "dtype": args.dtype, "seed": args.seed},
        "proxy_train_s": round(result.seconds, 3), "torch": torch.__version__,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exits", type=int, default=3)
    p.add_argument("--placement", default="pareto")
    p.add_argument("--branch", default="pool")
    p.add_argument("--criterion", default="maxprob")
    p.add_argument("--loss", default="kd", help="proxy loss (kd: distillation from the backbone)")
    p.add_argument("--labels", default="ground_truth", choices=["ground_truth", "pseudo"])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=3e-2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--select", default="agreement", choices=["agreement", "accuracy"],
                   help="threshold rule on val: agreement with the backbone's predictions, or "
                        "accuracy against the labels")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="fraction of val agreement (or accuracy) the chosen threshold may lose")
    p.add_argument("--dtype", default="float32", choices=["float16", "float32"])
    p.add_argument("--seed", type=int, default=0, help="data split, backbone and proxy seed")
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds: run each and summarise (overrides --seed)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def _print(r: dict) -> None:
    c = r["config"]
    print(f"seed {c['seed']}: {c['exits']} {c['branch']} exits ({c['placement']}, blocks "
          f"{r['exit_blocks']}), {c['loss']} loss, {c['criterion']} threshold {r['threshold']:.3f} "
          f"chosen on val ({c['select']})")
    print(f"  backbone:   test accuracy {100 * r['backbone_test_accuracy']:.2f}%, "
          f"{r['backbone_macs'] / 1e6:.3f} M MACs")
    print(f"  early exit: test accuracy {100 * r['early_exit_test_accuracy']:.2f}%, "
          f"{r['expected_macs'] / 1e6:.3f} M MACs expected ({100 * r['macs_saving']:.1f}% fewer), "
          f"exit mix {[round(f, 3) for f in r['exit_fractions']]}")
    print(f"  real early-exit path: test accuracy {100 * r['real_early_exit_test_accuracy']:.2f}%")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    runs = []
    for seed in seeds:
        args.seed = seed
        runs.append(run(args))
        if not args.json:
            _print(runs[-1])
    if len(runs) == 1:
        result = runs[0]
    else:
        drops = [r["accuracy_drop_points"] for r in runs]
        savings = [r["macs_saving"] for r in runs]
        result = {"runs": runs, "seeds": seeds, "mean_accuracy_drop_points": sum(drops) / len(drops),
                  "max_accuracy_drop_points": max(drops), "mean_macs_saving": sum(savings) / len(savings),
                  "min_macs_saving": min(savings)}
        if not args.json:
            print(f"over seeds {seeds}: accuracy drop mean {result['mean_accuracy_drop_points']:.2f} "
                  f"max {result['max_accuracy_drop_points']:.2f} points; MACs saving mean "
                  f"{100 * result['mean_macs_saving']:.1f}% min {100 * result['min_macs_saving']:.1f}%")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
