"""``dse train --mode frozen --no-augment --epochs 1``: on the feature cache against the backbone
run every step, in one process, on the synthetic CIFAR-10 of ``benchmarks/feature_cache.py``.

resnet20 (seeded random weights: the timing does not depend on them), two pool exits after
blocks 2 and 5, batch 256, one epoch. Three runs, in this order, each timed by wall clock:

- ``cache_cold``: the feature cache does not exist yet and is built first (once);
- ``cache_warm``: the cache exists, as after the study that produced the configuration;
- ``backbone_per_step``: ``--no-feature-cache``, the backbone runs on every step (and for val
  and test), what frozen training always did before.

The machine's load average is recorded with each, since the machine may be shared.

    python benchmarks/feature_cache.py          # writes the dataset once
    python benchmarks/frozen_train.py --json
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/tmp/dse-bench-cifar10"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dse-bench-frozen-"))
    os.environ["DSE_CACHE"] = str(work / "cache")  # a private cache: the cold run is cold
    import torch

    from dse.design import ExitDesign, ExitPolicy, RunConfig, TrainingSpec
    from dse.data import load_dataset
    from dse.models.backbones import build_backbone
    from dse.train.backbone import save_backbone
    from dse.train.full import train_config
    from dse.train.losses import LossSpec
    from dse.train.options import TrainOptions

    torch.set_num_threads(args.threads)
    dataset = f"cifar10:{args.data}"
    splits = load_dataset(dataset, seed=0)
    torch.manual_seed(0)
    backbone = build_backbone("resnet20", num_classes=10, in_channels=3).eval()
    ckpt = save_backbone(work / "r20.pt", backbone, "resnet20", dataset, splits.info, {})
    config = RunConfig(
        backbone="resnet20", dataset=dataset,
        exits=ExitDesign(2, "pareto", None, (2, 5), "pool", ()),
        training=TrainingSpec(loss=LossSpec("ce", {}, False), labels="ground_truth", lr=0.01,
                              batch_size=256),
        policy=ExitPolicy("maxprob", (0.9,)), provenance=(("feature_dtype", "float16"),))
    result: dict = {"train_rows": len(splits.train), "cpus": os.cpu_count()}
    for name, on_cache in (("cache_cold", True), ("cache_warm", True),
                           ("backbone_per_step", False)):
        start = time.perf_counter()
        r = train_config(config, work / name, TrainOptions(mode="frozen", epochs=1, augment=False,
                                                           feature_cache=on_cache),
                         checkpoint=str(ckpt), splits=splits, log=None, progress=False)
        result[name] = {"wall_s": round(time.perf_counter() - start, 1),
                        "train_s": r.metrics["train_seconds"],
                        "loadavg": [round(v, 2) for v in os.getloadavg()]}
    result["speedup_warm"] = round(result["backbone_per_step"]["wall_s"]
                                   / result["cache_warm"]["wall_s"], 2)
    result["speedup_cold"] = round(result["backbone_per_step"]["wall_s"]
                                   / result["cache_cold"]["wall_s"], 2)
    print(json.dumps(result, indent=2) if args.json else result)
    return result


if __name__ == "__main__":
    main()
