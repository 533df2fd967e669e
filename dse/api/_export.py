"""``export`` and ``run``: a trained model to an ONNX early-exit bundle, and the bundle on data."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dse.export import export_bundle, run_bundle


def default_bundle_dir(checkpoint: str | os.PathLike) -> Path:
    """``bundle/`` beside the model file."""
    return Path(checkpoint).resolve().parent / "bundle"


def export(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, *,
           profile: str | None = None, runtime: str | None = None,
           all_exits: bool = False) -> dict[str, Any]:
    """Cut a model trained by ``dse train`` into an ONNX early-exit bundle (``dse export``).

    Args:
        checkpoint: a ``model.pt`` written by ``dse train``.
        out: the bundle folder (None: ``bundle/`` beside the checkpoint).
        profile: profile of the predicted per-exit latency in the manifest (None: the one the
            search used, when the config names it).
        runtime: runtime within that profile (None: the profile's own).
        all_exits: also write ``all_exits.onnx`` (input -> every exit's logits, one graph).

    Returns:
        ``{"bundle": folder, "manifest": the manifest.json contents}``.

    Raises:
        dse.errors.DseError: a missing or foreign model file, an unknown profile or runtime.
    """
    folder = Path(out) if out is not None else default_bundle_dir(checkpoint)
    manifest = export_bundle(checkpoint, folder, profile=profile, runtime=runtime,
                             all_exits=all_exits)
    return {"bundle": str(folder), "manifest": manifest}


def run(bundle: str | os.PathLike, *, dataset: str | None = None, split: str = "test",
        provider: str = "CPUExecutionProvider", limit: int | None = None, warmup: int = 10,
        threads: int | None = None) -> dict[str, Any]:
    """Early exit on ONNX Runtime at batch 1 over a dataset split (``dse run``).

    Args:
        bundle: a bundle folder written by :func:`export`.
        dataset: ``NAME`` or ``NAME:PATH`` (None: the dataset the model was trained on).
        split: ``train``, ``val`` or ``test``.
        provider: ONNX Runtime execution provider (``CUDAExecutionProvider`` or
            ``TensorrtExecutionProvider`` where installed).
        limit: run only the first ``limit`` images of the split (None: all).
        warmup: untimed inputs run first.
        threads: ONNX Runtime intra-op threads (None: ONNX Runtime's choice).

    Returns:
        accuracy (percent), exit mix, expected MACs, latency ``measured_here`` per exit and per
        input, and the manifest's latency ``predicted_on_profile``, kept apart.

    Raises:
        dse.errors.DseError: a bundle whose graphs are missing or do not match its manifest,
            inputs of the wrong size, an unknown provider or split.
    """
    return run_bundle(bundle, dataset=dataset, split=split, provider=provider, threads=threads,
                      warmup=warmup, limit=limit)
