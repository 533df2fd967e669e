"""``dse run``: an exported bundle on a dse dataset, through the bundle's own runner.

The early exit itself is :class:`dse.export.runner.Bundle` (numpy + onnxruntime, the code that
ships in the bundle as ``run_bundle.py``); this module only loads the dataset split the way
training did (same seed, the bundle's input size), checks it fits the bundle, and turns the
runner's :class:`~dse.export.runner.BundleError` into a :class:`~dse.errors.DseError` so the
CLI prints one line and exits with 2.

Latency here is "measured here" (this machine, this execution provider); the manifest's
per-exit latency is "predicted on the profile" and is reported apart, never mixed.
"""
from __future__ import annotations

import os
from typing import Any

from dse.data import load_dataset, split_tensors
from dse.errors import DataError, DseError
from dse.export.runner import Bundle, BundleError, read_manifest

SPLITS = ("train", "val", "test")


class BadBundle(DseError):
    """A bundle folder that cannot be run (see :class:`dse.export.runner.BundleError`)."""


def open_bundle(folder: str | os.PathLike, provider: str = "CPUExecutionProvider",
                threads: int | None = None) -> Bundle:
    """The bundle opened on ONNX Runtime, every graph checked against the manifest."""
    try:
        return Bundle(folder, provider=provider, threads=threads)
    except BundleError as exc:
        raise BadBundle(str(exc)) from exc


def load_split(manifest: dict[str, Any], dataset: str | None, split: str, folder: str):
    """(x float32 [N, C, H, W] as numpy, y int64 [N]) of ``split``, normalised as in training."""
    spec = dataset or manifest.get("dataset")
    if not spec:
        raise DataError(f"{folder}: the manifest names no dataset; pass --dataset NAME[:PATH]")
    size = int(manifest["input"]["shape"][-1])
    splits = load_dataset(spec, seed=int(manifest.get("seed", 0)), input_size=size)
    info = splits.info
    classes = int(manifest["classes"]["count"])
    channels = int(manifest["input"]["shape"][1])
    if (info.num_classes, info.channels) != (classes, channels):
        raise DataError(f"--dataset {spec}: {info.num_classes} classes x {info.channels} channels, "
                        f"but bundle {folder} takes {classes} classes x {channels} channels")
    x, y = split_tensors(getattr(splits, split))
    return x.numpy(), y.numpy(), spec


def run_bundle(folder: str | os.PathLike, *, dataset: str | None = None, split: str = "test",
               provider: str = "CPUExecutionProvider", threads: int | None = None,
               warmup: int = 10, limit: int | None = None) -> dict[str, Any]:
    """Run every image of ``split`` (the first ``limit``) through the bundle at batch 1."""
    if split not in SPLITS:
        raise DataError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    bundle = open_bundle(folder, provider, threads)
    x, y, spec = load_split(bundle.manifest, dataset, split, str(folder))
    if limit is not None:
        x, y = x[:limit], y[:limit]
    try:
        result = bundle.run(x, y, warmup=warmup)
    except BundleError as exc:
        raise BadBundle(str(exc)) from exc
    m = bundle.manifest
    predicted = [e["predicted_latency_ms"] for e in m["exits"]]
    expected = (None if None in predicted
                else float(sum(f * t for f, t in zip(result["exit_fractions"], predicted))))
    return {"bundle": str(folder), "dataset": spec, "split": split,
            "criterion": m["criterion"]["name"], "thresholds": m["criterion"]["thresholds"],
            **result,
            "predicted_on_profile": {
                "profile": m["predicted"]["profile"], "runtime": m["predicted"]["runtime"],
                "per_exit_ms": predicted, "expected_ms": expected,
                "note": m["predicted"]["note"]}}


def manifest_of(folder: str | os.PathLike) -> dict[str, Any]:
    try:
        return read_manifest(folder)
    except BundleError as exc:
        raise BadBundle(str(exc)) from exc
