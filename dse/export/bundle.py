"""``dse export``: a trained model file -> a deployment bundle folder.

The bundle::

    manifest.json     what the runtime needs and what the model was (below)
    segment_<n>.onnx  backbone blocks from the input / the previous exit point to exit n's
    head_<n>.onnx     exit n's head (the last one is the backbone's classifier)
    all_exits.onnx    with --all-exits: input -> every exit's logits (one engine)
    run_bundle.py     the runner (numpy + onnxruntime only): python run_bundle.py -h

``manifest.json`` holds the input (shape, dtype, layout, normalisation), the classes, the exits
in order (segment, head, attach block, cumulative MACs, predicted latency on the profile the
config names), the criterion and per-exit thresholds, whether ISC combines logits, every
graph's sha256 and input / output shapes, the opset, the dse version and the source (model file
and its configuration). Export is deterministic: the same model file gives the same bytes.

Only graphs and files named above are written or removed: re-exporting into a bundle folder
deletes the graphs its old manifest listed and the new one does not.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from dse import __version__
from dse.errors import ConfigError
from dse.evaluation.model import predicted_latency
from dse.export import runner
from dse.export.graphs import OPSET, Graph, export_graphs
from dse.train.model_file import load_model

RUNNER_NAME = "run_bundle.py"


def export_bundle(model_file: str | os.PathLike, out_dir: str | os.PathLike, *,
                  profile: str | None = None, runtime: str | None = None,
                  all_exits: bool = False) -> dict[str, Any]:
    """Export the model file written by ``dse train`` to the bundle folder ``out_dir``.

    ``profile`` / ``runtime`` choose the hardware profile of the predicted per-exit latency
    (default: the one the search used, recorded in the config; none: no prediction, with a
    note). Returns the manifest.
    """
    out = Path(out_dir)
    old = _previous_manifest(out)
    loaded = load_model(model_file)
    model, config, inp = loaded.model, loaded.config, loaded.inputs
    shape = (int(inp["in_channels"]), int(inp["input_size"]), int(inp["input_size"]))
    criterion = config.policy.criterion
    thresholds = config.policy.per_exit(model.num_exits - 1)
    learned = criterion == "learned"
    plan, segments, heads, whole = export_graphs(model, shape, confidence=learned,
                                                 all_exits=all_exits)
    exit_ms, predicted = predicted_latency(model, config, inp, profile, runtime)
    graphs = segments + heads + ([whole] if whole is not None else [])
    exits = []
    for n, (seg, head) in enumerate(zip(segments, heads)):
        final = n == len(heads) - 1
        exits.append({
            "index": n, "final": final,
            "block": None if final else plan.exit_blocks[n],
            "blocks": list(plan.segments[n]),
            "segment": seg.name, "head": head.name,
            "outputs": [o["name"] for o in head.outputs],
            "cumulative_macs": int(loaded.exit_macs[n]),
            "predicted_latency_ms": None if exit_ms is None else float(exit_ms[n]),
        })
    manifest = {
        "format": runner.BUNDLE_FORMAT, "version": runner.BUNDLE_VERSION,
        "dse_version": __version__, "opset": OPSET,
        "input": {"name": "input", "shape": [1, *shape], "dtype": "float32", "layout": "NCHW",
                  "normalisation": {
                      "formula": "x[c] = (pixel[c] - mean[c]) / std[c], pixels scaled to [0, 1] "
                                 "and resized to input_size x input_size (bilinear)",
                      "mean": list(inp.get("mean") or []), "std": list(inp.get("std") or []),
                      "input_size": shape[1]}},
        "classes": {"count": int(inp["num_classes"]), "names": list(inp.get("class_names") or [])},
        "dataset": inp.get("dataset") or config.dataset,
        "seed": config.seed,
        "criterion": {"name": criterion, "thresholds": thresholds,
                      "exit_when": "score <= threshold" if criterion == "entropy"
                      else "score >= threshold"},
        "isc": bool(model.isc),
        "exits": exits,
        "all_exits": whole.name if whole is not None else None,
        "predicted": {"profile": predicted.get("profile"), "runtime": predicted.get("runtime"),
                      "note": predicted.get("predicted_latency_note"),
                      "meaning": "predicted on the profile by dse's latency model, not measured"},
        "graphs": {g.name: {"sha256": _sha256(g), "inputs": g.inputs, "outputs": g.outputs}
                   for g in graphs},
        "runner": RUNNER_NAME,
        "source": {"model_file": str(model_file), "config": loaded.payload["config"],
                   "backbone": config.backbone},
    }
    _write(out, graphs, manifest, old)
    return manifest


def _sha256(g: Graph) -> str:
    return hashlib.sha256(g.data).hexdigest()


def _previous_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of a bundle already in ``out``; a non-empty folder that is no bundle is
    refused, so export never writes into (or cleans) a folder it did not make."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if not (out / runner.MANIFEST).is_file():
        if any(out.iterdir()):
            raise ConfigError(f"--out {out}: a non-empty folder that holds no bundle "
                              f"({runner.MANIFEST}); choose a new or empty folder")
        return None
    try:
        return json.loads((out / runner.MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _write(out: Path, graphs: list[Graph], manifest: dict[str, Any],
           old: dict[str, Any] | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for g in graphs:
        _atomic_bytes(out / g.name, g.data)
    stale = set((old or {}).get("graphs") or {}) - {g.name for g in graphs}
    for name in sorted(stale):
        if Path(name).name == name and name.endswith(".onnx"):  # our own flat graph files only
            (out / name).unlink(missing_ok=True)
    shutil.copyfile(runner.__file__, out / RUNNER_NAME)
    _atomic_bytes(out / runner.MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
