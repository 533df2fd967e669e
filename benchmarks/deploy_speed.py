"""Deployment speed: batch-1 early exit through the ONNX Runtime bundle against PyTorch eager.

The same model, the same inputs, one run: each input goes through the bundle's runner
(:class:`dse.export.runner.Bundle`, ``dse run``'s code: one ONNX Runtime session per backbone
segment and per exit head, the exit decision in numpy) and through
:meth:`dse.models.multiexit.MultiExitNet.early_exit` (PyTorch eager, ``torch.inference_mode``),
interleaved (the order alternates per input) so both see the same machine load. Each input is
timed on its own with ``perf_counter``; after ``--warmup`` untimed inputs each path is timed
``--repeats`` times over ``--images`` inputs. Reported: medians per input and per exit, the ratio
eager / onnxruntime (> 1: the bundle is faster), whether both took the same exit for every input,
and the machine's load average (``os.getloadavg``) before and after, since these machines are
shared.

The model (our choice: small, so the benchmark takes seconds):

- default: digits-resnet on digits with two ``pool`` exits (blocks 1 and 3), maxprob 0.8,
  exits trained 10 frozen epochs on the cached digits backbone (trained once on first use);
  the inputs are the digits test split;
- ``--checkpoint model.pt``: any ``dse train`` model file, on its dataset's test split;
- ``--backbone resnet20`` (or any built-in): seeded random weights at the backbone's usual input
  size, two pool exits placed by ``pareto``, learned criterion at each exit's median confidence
  (so every exit is taken): latency does not depend on what the weights learned.

    python benchmarks/deploy_speed.py --json
    -> {"onnxruntime_median_ms": ..., "eager_median_ms": ..., "eager_over_onnxruntime": ...}
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _digits_model(out: Path, seed: int) -> Path:
    from dse.design import ExitDesign, ExitPolicy, LossSpec, RunConfig, TrainingSpec
    from dse.train.full import train_config
    from dse.train.options import TrainOptions

    config = RunConfig(backbone="digits-resnet", dataset="digits",
                       exits=ExitDesign(2, "pareto", None, (1, 3), "pool", ()),
                       training=TrainingSpec(loss=LossSpec("ce", {}, False), lr=0.03,
                                             batch_size=256),
                       policy=ExitPolicy("maxprob", (0.8,)), seed=seed)
    return train_config(config, out, TrainOptions(epochs=10, seed=seed), log=None,
                        progress=False).model_path


def _random_model(out: Path, backbone: str, n: int, seed: int):
    """A random-weight model file on ``backbone`` and ``n`` random inputs."""
    import numpy as np
    import torch

    from dse.cost.assemble import assemble, default_input_spec
    from dse.design import ExitDesign, ExitPolicy, LossSpec, RunConfig, TrainingSpec
    from dse.train.model_file import collect_outputs, save_model

    torch.manual_seed(seed)
    spec = default_input_spec(backbone)
    a = assemble(backbone, spec, num_exits=2, placement="pareto", branch="pool")
    model = a.model.eval()
    x = torch.randn(n, *spec.shape)
    outs = collect_outputs(model, x, torch.zeros(n, dtype=torch.long))
    medians = tuple(float(np.median(outs.conf[e])) for e in range(outs.num_exits - 1))
    config = RunConfig(backbone=backbone, dataset="random",
                       exits=ExitDesign(2, "pareto", None, tuple(a.placement.blocks), "pool", ()),
                       training=TrainingSpec(loss=LossSpec("ce", {}, False)),
                       policy=ExitPolicy("learned", medians), seed=seed)
    inputs = {"dataset": None, "dataset_name": "random", "num_classes": spec.num_classes,
              "in_channels": spec.in_channels, "input_size": spec.input_size,
              "class_names": [str(i) for i in range(spec.num_classes)],
              "mean": [0.0] * spec.in_channels, "std": [1.0] * spec.in_channels}
    path = save_model(out / "model.pt", model, config, inputs, {}, {}, a.exit_macs)
    return path, x


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from dse.data import load_dataset, split_tensors
    from dse.device import set_threads
    from dse.export import export_bundle, open_bundle
    from dse.train.model_file import load_model

    threads = set_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.checkpoint:
            model_file, x = Path(args.checkpoint), None
        elif args.backbone == "digits-resnet":
            model_file, x = _digits_model(tmp / "train", args.seed), None
        else:
            model_file, x = _random_model(tmp, args.backbone, args.images, args.seed)
        loaded = load_model(model_file)
        if x is None:
            splits = load_dataset(loaded.inputs["dataset"] or loaded.config.dataset,
                                  seed=loaded.config.seed, input_size=loaded.inputs["input_size"])
            x = split_tensors(splits.test)[0]
        x = x[:args.images]
        export_bundle(model_file, tmp / "bundle", profile=args.profile)
        bundle = open_bundle(tmp / "bundle", threads=threads)
        model = loaded.model.eval()
        policy = loaded.config.policy
        thresholds = policy.per_exit(model.num_exits - 1)
        xs_np = [x[i:i + 1].numpy().copy() for i in range(x.shape[0])]
        xs_t = [x[i:i + 1].clone() for i in range(x.shape[0])]

        def eager(i: int) -> int:
            return int(model.early_exit(xs_t[i], policy.criterion, thresholds)[1][0])

        def onnx(i: int) -> int:
            return bundle.infer(xs_np[i])[1]

        n = len(xs_np)
        times = {"eager": [], "onnxruntime": []}
        exits = {"eager": [], "onnxruntime": []}
        with torch.inference_mode():
            for i in range(args.warmup):
                eager(i % n)
                onnx(i % n)
            for r in range(args.repeats):
                for i in range(n):
                    order = (("eager", eager), ("onnxruntime", onnx))
                    for name, fn in order if (i + r) % 2 == 0 else order[::-1]:
                        start = time.perf_counter()
                        k = fn(i)
                        times[name].append((time.perf_counter() - start) * 1e3)
                        if r == 0:
                            exits[name].append(k)
        manifest = bundle.manifest
    load_after = os.getloadavg()
    exit_of = exits["eager"] * args.repeats
    result = {"model": str(args.checkpoint or args.backbone), "images": n,
              "repeats": args.repeats, "warmup": args.warmup, "threads": threads,
              "cpu_count": os.cpu_count(), "criterion": policy.criterion,
              "thresholds": thresholds,
              "exit_macs": [e["cumulative_macs"] for e in manifest["exits"]],
              "same_exits": exits["eager"] == exits["onnxruntime"],
              "exit_fractions": (np.bincount(exits["eager"], minlength=model.num_exits)
                                 / n).tolist(),
              "loadavg_before": list(load_before), "loadavg_after": list(load_after),
              "onnxruntime_version": _version("onnxruntime"), "torch_version": torch.__version__}
    for name in ("onnxruntime", "eager"):
        t = times[name]
        result[f"{name}_median_ms"] = statistics.median(t)
        result[f"{name}_p90_ms"] = float(np.percentile(t, 90))
        result[f"{name}_per_exit_median_ms"] = [
            statistics.median([v for v, k in zip(t, exit_of) if k == e])
            if e in exit_of else None for e in range(model.num_exits)]
    result["eager_over_onnxruntime"] = result["eager_median_ms"] / result["onnxruntime_median_ms"]
    return result


def _version(name: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(name)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="a dse train model file (default: train one)")
    p.add_argument("--backbone", default="digits-resnet",
                   help="digits-resnet (trained on digits) or a built-in backbone (random weights)")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--profile", default="jetson")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = run(args)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"{r['model']}: {r['images']} inputs x {r['repeats']}, batch 1, {r['threads']} "
              f"thread(s), measured here")
        print(f"  onnxruntime bundle  {r['onnxruntime_median_ms']:.3f} ms median per input")
        print(f"  pytorch eager       {r['eager_median_ms']:.3f} ms median per input")
        print(f"  eager / onnxruntime {r['eager_over_onnxruntime']:.2f}x; same exits: "
              f"{r['same_exits']}; load average {r['loadavg_before'][0]:.2f} -> "
              f"{r['loadavg_after'][0]:.2f} on {r['cpu_count']} cores")
    return r


if __name__ == "__main__":
    main(sys.argv[1:])
