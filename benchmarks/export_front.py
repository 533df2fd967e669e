"""Every front configuration of a demo study, exported and run: the bundle equals PyTorch.

1. ``dse search`` on digits (``--trials``, the demo's defaults otherwise, no PDF);
2. for every ``configs/trial_N.yaml`` of the front: ``dse train`` (frozen exits, ``--epochs``),
   ``dse export``, then on every test image the bundle's runner (:class:`dse.export.runner.Bundle`,
   ``dse run``'s code) against PyTorch's early-exit path
   (:meth:`dse.models.multiexit.MultiExitNet.early_exit`, batch 1): same exit, same prediction,
   largest logit difference; and ``dse run``'s accuracy against ``dse evaluate``'s.

    python benchmarks/export_front.py --json
    -> {"configs": N, "all_same_predictions": true, "max_logit_abs_diff": ..., "rows": [...]}
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from click.testing import CliRunner

    from dse.cli import cli
    from dse.api import evaluate
    from dse.data import load_dataset, split_tensors
    from dse.design import load_config
    from dse.device import set_threads
    from dse.export import export_bundle, open_bundle
    from dse.train.full import train_config
    from dse.train.model_file import load_model
    from dse.train.options import TrainOptions

    set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(args.out or tmp) / "study"
        r = CliRunner().invoke(cli, ["search", "--trials", str(args.trials), "--out", str(study),
                                     "--no-report", "--threads", str(args.threads),
                                     "--seed", str(args.seed), "--json"])
        if r.exit_code != 0:
            raise SystemExit(f"dse search failed: {r.output}")
        configs = sorted((study / "configs").glob("trial_*.yaml"),
                         key=lambda p: int(p.stem.split("_")[1]))
        rows = []
        x = y = None
        for path in configs:
            config = load_config(str(path))
            res = train_config(config, study / "train" / path.stem,
                               TrainOptions(epochs=args.epochs, seed=args.seed), log=None,
                               progress=False)
            bundle_dir = study / "bundles" / path.stem
            export_bundle(res.model_path, bundle_dir)
            loaded = load_model(res.model_path)
            if x is None:
                splits = load_dataset(config.dataset, seed=config.seed,
                                      input_size=loaded.inputs["input_size"])
                x, y = split_tensors(splits.test)
            model, policy = loaded.model, loaded.config.policy
            thresholds = policy.per_exit(model.num_exits - 1)
            bundle = open_bundle(bundle_dir, threads=args.threads)
            ref_z, ref_k, got_z, got_k = [], [], [], []
            with torch.inference_mode():
                for i in range(x.shape[0]):
                    z, k = model.early_exit(x[i:i + 1], policy.criterion, thresholds)
                    ref_z.append(z[0].numpy())
                    ref_k.append(int(k[0]))
                    gz, gk = bundle.infer(x[i:i + 1].numpy())
                    got_z.append(gz)
                    got_k.append(gk)
            ref_z, got_z = np.stack(ref_z), np.stack(got_z)
            run_acc = 100 * float(np.mean(got_z.argmax(1) == y.numpy()))
            ev = evaluate(str(res.model_path), latency_samples=5, warmup=0, budgets=2,
                          out=study / "eval" / path.stem, device="cpu")
            rows.append({
                "config": path.name, "exits": model.num_exits - 1, "branch": config.exits.branch,
                "criterion": policy.criterion, "isc": bool(model.isc), "images": int(x.shape[0]),
                "same_exits": ref_k == got_k,
                "same_predictions": bool((ref_z.argmax(1) == got_z.argmax(1)).all()),
                "max_logit_abs_diff": float(np.abs(ref_z - got_z).max()),
                "run_accuracy": run_acc, "evaluate_accuracy": ev["test_accuracy"],
                "exit_fractions": (np.bincount(got_k, minlength=model.num_exits)
                                   / len(got_k)).tolist(),
            })
    return {"trials": args.trials, "epochs": args.epochs, "configs": len(rows),
            "all_same_exits": all(r["same_exits"] for r in rows),
            "all_same_predictions": all(r["same_predictions"] for r in rows),
            "max_logit_abs_diff": max((r["max_logit_abs_diff"] for r in rows), default=None),
            "all_accuracy_equal": all(abs(r["run_accuracy"] - r["evaluate_accuracy"]) < 1e-9
                                      for r in rows),
            "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--epochs", type=int, default=5, help="dse train epochs (frozen) per config")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="keep the study here (default: a temporary folder)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = run(args)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        for row in r["rows"]:
            print(f"{row['config']}: {row['exits']} exits {row['branch']} {row['criterion']}"
                  f"{' isc' if row['isc'] else ''}: same exits {row['same_exits']}, same "
                  f"predictions {row['same_predictions']}, max |dlogit| "
                  f"{row['max_logit_abs_diff']:.2e}, accuracy run {row['run_accuracy']:.2f}% / "
                  f"evaluate {row['evaluate_accuracy']:.2f}%")
        print(f"{r['configs']} front configs: all same exits {r['all_same_exits']}, all same "
              f"predictions {r['all_same_predictions']}, max |dlogit| {r['max_logit_abs_diff']}")
    return r


if __name__ == "__main__":
    main(sys.argv[1:])
