"""Proxy-training speed: one trial with the feature cache against the same trial without it.

The trial: the frozen backbone (trained once, cached), ``--exits`` exits of type ``--branch``
placed by ``--placement``, trained ``--steps`` steps (Adam, batch ``--batch-size``), then
evaluated once on the val split; each is timed ``--repeats`` times, interleaved, and the
fastest run is reported (medians too). *Uncached*, every step runs the backbone forward on the
minibatch (:class:`dse.train.proxy.OnlineFeatures`); *cached*, every step reads stored feature
maps (:class:`dse.train.features.FeatureCache`, built once per study; its build time is
reported separately as ``cache_build_s``). Both runs use the same seed and data.

Also: one sweep of 1,000 global thresholds over 10,000 samples x 6 exits on cached outputs
(:func:`dse.evaluation.sweep_benchmark`, median of 5).

    python benchmarks/proxy_speed.py --json
    -> {"cached_trial_s": ..., "uncached_trial_s": ..., "speedup": ..., "sweep_ms": ..., ...}
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def _trial(source, blocks, args) -> float:
    from dse.train.proxy import result_outputs, train_branches

    start = time.perf_counter()
    result = train_branches(source, blocks, args.branch, steps=args.steps, lr=args.lr,
                            batch_size=args.batch_size, seed=args.seed)
    result_outputs(source, result, "val")
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict:
    import torch

    from dse.data import load_dataset
    from dse.evaluation import sweep_benchmark
    from dse.cost.assemble import InputSpec, assemble
    from dse.device import set_threads
    from dse.train.backbone import ensure_backbone
    from dse.train.features import build_feature_cache
    from dse.train.proxy import OnlineFeatures

    threads = set_threads(args.threads)
    splits = load_dataset(args.dataset, seed=args.seed)
    info = splits.info
    backbone, binfo = ensure_backbone(args.backbone, args.dataset, seed=args.seed, splits=splits,
                                      progress=False, log=None)
    inputs = InputSpec(info.channels, info.input_size, info.num_classes)
    blocks = list(assemble(backbone, inputs, args.exits, args.placement, args.branch).placement.blocks)

    start = time.perf_counter()
    cache = build_feature_cache(backbone, splits, blocks, splits=("train", "val"),
                                dtype=args.dtype, cache_dir=False)
    build_s = time.perf_counter() - start
    online = OnlineFeatures(backbone, splits, ("train", "val"))

    cached, uncached = [], []
    for _ in range(args.repeats):  # interleaved, so machine load hits both alike
        cached.append(_trial(cache, blocks, args))
        uncached.append(_trial(online, blocks, args))
    # min over interleaved repeats: the cost of the work itself, least disturbed by other load
    cached_s, uncached_s = min(cached), min(uncached)
    sweep_ms = sweep_benchmark(n_samples=10_000, n_exits=6, n_thresholds=1000, repeats=5)
    return {
        "cached_trial_s": round(cached_s, 4),
        "uncached_trial_s": round(uncached_s, 4),
        "speedup": round(uncached_s / cached_s, 2),
        "sweep_ms": round(sweep_ms, 2),
        "cached_trial_median_s": round(statistics.median(cached), 4),
        "uncached_trial_median_s": round(statistics.median(uncached), 4),
        "cache_build_s": round(build_s, 4),
        "cache_mib": round(cache.nbytes / 2**20, 2),
        "trial": {"backbone": args.backbone, "dataset": args.dataset, "branch": args.branch,
                  "exit_blocks": blocks, "steps": args.steps, "batch_size": args.batch_size,
                  "train_samples": cache.num_samples("train"), "val_samples": cache.num_samples("val"),
                  "dtype": args.dtype, "repeats": args.repeats},
        "sweep": {"thresholds": 1000, "samples": 10_000, "exits": 6},
        "backbone_test_accuracy": binfo.metrics.get("test_accuracy"),
        "threads": threads, "cpu_count": os.cpu_count(), "torch": torch.__version__,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="digits-resnet")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--branch", default="pool")
    p.add_argument("--placement", default="pareto")
    p.add_argument("--exits", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"trial ({args.branch} x{args.exits}, {args.steps} steps): cached "
              f"{result['cached_trial_s']:.3f} s, uncached {result['uncached_trial_s']:.3f} s, "
              f"speedup {result['speedup']:.1f}x (cache built once in {result['cache_build_s']:.2f} s, "
              f"{result['cache_mib']} MiB)")
        print(f"sweep of 1,000 thresholds over 10,000 samples x 6 exits: {result['sweep_ms']:.1f} ms")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
