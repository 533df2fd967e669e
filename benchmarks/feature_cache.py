"""Feature-cache build at CIFAR-10 size: the streamed cache against the old in-memory build.

A synthetic dataset in CIFAR-10's real pickle format (``data_batch_1..5``, ``test_batch``,
``batches.meta``; random uint8 pixels, balanced labels, nothing downloaded) is written to
``--data`` (default ``/tmp/dse-bench-cifar10``) once. For each ``--samples`` cap (per split,
``max_samples``) and each path, a fresh Python process loads it, builds the feature cache of
every attach point of ``--backbone`` (seeded random weights: the numbers do not depend on them)
in float16 and reports:

- ``build_s``: wall seconds of the build (data already loaded);
- ``peak_rss_gib``: the process's peak resident set (``resource.getrusage``, whole process, so
  the interpreter, torch and the dataset are in it: ``base_rss_gib`` is that before the build);
- ``cache_gib``: bytes on disk of the three split files.

``old``: every split computed into one in-memory tensor per block, then ``torch.save`` (what
dse did before the streamed cache). ``new``: :func:`dse.train.features.build_feature_cache`,
which streams each batch into its file. One line of JSON (``--json``) or a table; the machine's
load average comes with it, since the machine may be shared. Also ``refuse_s``: how long an
over-budget request (free disk faked to 1 GiB) takes to fail once the data are loaded.

    python benchmarks/feature_cache.py --json
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_cifar10(root: Path, n_train: int, n_test: int) -> Path:
    """CIFAR-10's python pickles with random images (skipped when already there)."""
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    stamp = root / f".made-{n_train}-{n_test}"
    if stamp.exists():
        return root
    rng = np.random.default_rng(0)
    for b, rows in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        data = rng.integers(0, 256, size=(len(rows), 3072), dtype=np.uint8)
        (root / f"data_batch_{b}").write_bytes(pickle.dumps(
            {"batch_label": f"training batch {b} of 5", "labels": (rows % 10).tolist(),
             "data": data}, protocol=2))
    (root / "test_batch").write_bytes(pickle.dumps(
        {"labels": (np.arange(n_test) % 10).tolist(),
         "data": rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)}, protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    stamp.touch()
    return root


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux: KiB


def one(args: argparse.Namespace) -> dict:
    """One build in this process (the ``--one`` worker mode)."""
    import torch

    from dse.cache import atomic_torch_save
    from dse.data import load_dataset
    from dse.models.backbones import build_backbone
    from dse.train import features as tf

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_dataset(f"cifar10:{args.data}", seed=0)
    backbone = build_backbone(args.backbone, num_classes=10, in_channels=3).eval()
    cap = None if args.samples == "full" else int(args.samples)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = _rss_gib()
    start = time.perf_counter()
    rows = {}
    if args.one == "new":
        cache = tf.build_feature_cache(backbone, data, max_samples=cap, cache_dir=out,
                                       batch_size=args.batch_size, progress=False)
        rows = {s: cache.num_samples(s) for s in tf.SPLITS}
    elif args.one == "old":
        blocks = tf.attach_points(backbone)
        for name in tf.SPLITS:
            ds = data.split(name)
            r = tf.subset_indices(len(ds), cap, 0)
            s = tf.compute_split_features(backbone, ds, blocks, r, dtype=torch.float16,
                                          batch_size=args.batch_size)
            atomic_torch_save({"features": {str(b): f for b, f in s.features.items()},
                               "logits": s.logits, "labels": s.labels, "indices": s.indices},
                              out / f"{name}.pt")
            rows[name] = len(s)
            del s
    else:  # refuse: how fast an over-budget request fails (free disk faked to 1 GiB)
        tf.free_disk = lambda folder: 2**30
        try:
            tf.build_feature_cache(backbone, data, max_samples=cap, cache_dir=out,
                                   progress=False)
            message = None
        except Exception as exc:  # the DseError under test
            message = str(exc)
        return {"refuse_s": round(time.perf_counter() - start, 3), "message": message}
    build_s = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return {"path": args.one, "backbone": args.backbone, "samples": args.samples, "rows": rows,
            "build_s": round(build_s, 2), "cache_gib": round(size / 2**30, 3),
            "base_rss_gib": round(base, 3), "peak_rss_gib": round(_rss_gib(), 3)}


def _spawn(args: argparse.Namespace, mode: str, samples: str, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--one", mode, "--samples", samples, "--data", str(args.data),
           "--backbone", args.backbone, "--threads", str(args.threads), "--out", str(out),
           "--batch-size", str(args.batch_size)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/tmp/dse-bench-cifar10"))
    p.add_argument("--train", type=int, default=12_500, help="official train images (val: 10%%)")
    p.add_argument("--test", type=int, default=10_000)
    p.add_argument("--samples", default="2000,10000", help="max_samples caps, comma-separated "
                                                           "('full' for no cap)")
    p.add_argument("--backbone", default="resnet20")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--one", choices=["old", "new", "refuse"], help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        result = one(args)
        print(json.dumps(result))
        return result
    import shutil
    import tempfile

    make_cifar10(args.data, args.train, args.test)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="dse-bench-cache-"))
    try:
        for samples in args.samples.split(","):
            for mode in ("old", "new"):
                out = work / f"{mode}-{samples}"
                rows.append(_spawn(args, mode, samples, out))
                shutil.rmtree(out, ignore_errors=True)
        refuse = _spawn(args, "refuse", "full", work / "refuse")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"rows": rows, "refuse": refuse, "loadavg": [round(v, 2) for v in os.getloadavg()],
              "cpus": os.cpu_count(), "threads": args.threads}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for r in rows:
            print(f"{r['path']:>3} {r['backbone']} samples {r['samples']:>6} rows {r['rows']}: "
                  f"build {r['build_s']:.1f} s, cache {r['cache_gib']:.3f} GiB, peak RSS "
                  f"{r['peak_rss_gib']:.2f} GiB (before build {r['base_rss_gib']:.2f})")
        print(f"over budget refused in {refuse['refuse_s']:.2f} s: {refuse['message']}")
        print(f"load average {result['loadavg']} on {result['cpus']} CPUs")
    return result


if __name__ == "__main__":
    main()
