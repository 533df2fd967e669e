"""``dse search`` at CIFAR-10 size: cache build time, cache size, peak RSS and seconds per trial.

A synthetic dataset in CIFAR-10's real pickle format (``data_batch_1..5``, ``test_batch``,
``batches.meta``; random uint8 pixels, balanced labels; written once by
``benchmarks/feature_cache.py``'s ``make_cifar10``, nothing downloaded) of full size: 50,000
official train images (45,000 train + 5,000 val after dse's 10 % split) and 10,000 test. For
each row ``BACKBONE:SAMPLES`` (``SAMPLES``: the per-split ``--max-samples``, or ``full``) a
fresh Python process, with a private ``DSE_CACHE`` that is removed afterwards:

1. writes a checkpoint of ``BACKBONE`` with seeded random weights (the timings and sizes do not
   depend on the weights);
2. builds the study's feature cache (every attach point, float16) and times it: ``build_s``;
3. runs ``dse.api.search`` (profile ``jetson-agx-orin``, ``--trials``, no report), which finds
   that cache on disk: ``s_per_trial`` is the mean duration of its complete trials.

``peak_rss_gib`` is the child's peak resident set as the kernel reports it to the parent
(``os.wait4``'s ``ru_maxrss``), so the interpreter, torch, the dataset, the build and the trials
are all in it. ``cache_gib``: bytes of the cache's feature files. Rows run one after another;
``--rows`` picks some (e.g. ``--rows resnet20:full,resnet56:full``) so it can run in parts.
The machine's load average is recorded with each row, since the machine may be shared.

    python benchmarks/scale.py --json --rows resnet20:2000 --trials 3
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = ("resnet20:2000", "resnet20:10000", "resnet20:full", "resnet56:2000", "resnet56:10000",
        "resnet56:full")
PROFILE = "jetson-agx-orin"


def _make_data(root: Path, n_train: int, n_test: int) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from feature_cache import make_cifar10

    return make_cifar10(root, n_train, n_test)


def one(args: argparse.Namespace) -> dict:
    """One row in this process (the ``--one`` worker mode; DSE_CACHE set by the parent)."""
    import torch

    from dse.api import search
    from dse.cache import cache_dir
    from dse.data import load_dataset
    from dse.models.backbones import build_backbone
    from dse.train.backbone import save_backbone
    from dse.train.features import build_feature_cache

    name, samples = args.one.split(":")
    cap = None if samples == "full" else int(samples)
    work = Path(args.out)
    torch.set_num_threads(args.threads)
    dataset = f"cifar10:{args.data}"
    splits = load_dataset(dataset, seed=0)
    torch.manual_seed(0)
    backbone = build_backbone(name, num_classes=10, in_channels=3).eval()
    ckpt = save_backbone(work / f"{name}.pt", backbone, name, dataset, splits.info, {})
    start = time.perf_counter()
    cache = build_feature_cache(backbone, splits, dtype="float16", max_samples=cap, seed=0,
                                dataset_key=dataset, progress=False)
    build_s = time.perf_counter() - start
    rows = {s: cache.num_samples(s) for s in cache.splits}
    del cache, backbone, splits
    cache_bytes = sum(p.stat().st_size for p in cache_dir("features").glob("*.feat"))
    start = time.perf_counter()
    result = search(backbone=name, checkpoint=str(ckpt), dataset=dataset, profile=PROFILE,
                    trials=args.trials, out=work / "study", report=False, max_samples=cap,
                    seed=0, threads=args.threads, log=None, progress=False)
    search_s = time.perf_counter() - start
    done = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    per_trial = sum(t.duration.total_seconds() for t in done) / max(1, len(done))
    return {"backbone": name, "samples": samples if samples == "full" else cap, "rows": rows,
            "build_s": round(build_s, 1), "cache_gib": round(cache_bytes / 2**30, 2),
            "search_s": round(search_s, 1), "trials": len(done),
            "s_per_trial": round(per_trial, 2)}


def _spawn(args: argparse.Namespace, row: str) -> dict:
    """Run one row in a child; its peak RSS from the kernel's accounting of that child."""
    work = Path(tempfile.mkdtemp(prefix="dse-scale-", dir=args.work))
    env = {**os.environ, "DSE_CACHE": str(work / "cache"),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, __file__, "--one", row, "--data", str(args.data), "--out", str(work),
           "--trials", str(args.trials), "--threads", str(args.threads)]
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            child = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, text=True)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            if child.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.read()[-3000:]}")
            r = json.loads(out.read().strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    r["peak_rss_gib"] = round(usage.ru_maxrss * 1024 / 2**30, 2)  # Linux: KiB
    r["loadavg_before"] = [round(v, 2) for v in load_before]
    r["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    return r


def _parse_rows(text: str) -> list[str]:
    rows = [r.strip() for r in text.split(",") if r.strip()]
    for r in rows:
        name, _, samples = r.partition(":")
        if not name or not (samples == "full" or samples.isdigit()):
            raise SystemExit(f"--rows: expected BACKBONE:SAMPLES (SAMPLES a count or 'full'), "
                             f"got {r!r}")
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/tmp/dse-bench-cifar10-full"))
    p.add_argument("--train", type=int, default=50_000, help="official train images (val: 10%%)")
    p.add_argument("--test", type=int, default=10_000)
    p.add_argument("--rows", default=",".join(ROWS), help="BACKBONE:SAMPLES, comma-separated")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=None,
                   help="folder for each row's private cache (removed after the row)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        result = one(args)
        print(json.dumps(result))
        return result
    rows = _parse_rows(args.rows)
    _make_data(args.data, args.train, args.test)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    out = []
    for row in rows:
        out.append(_spawn(args, row))
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)  # a partial run keeps its rows
        if not args.json:
            r = out[-1]
            print(f"{r['backbone']} samples {r['samples']}: build {r['build_s']} s, cache "
                  f"{r['cache_gib']} GiB, peak RSS {r['peak_rss_gib']} GiB, {r['s_per_trial']} s "
                  f"per trial (load {r['loadavg_before']})", flush=True)
    result = {"rows": out, "trials": args.trials, "threads": args.threads,
              "cpus": os.cpu_count(), "profile": PROFILE}
    if args.json:
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
