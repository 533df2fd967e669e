"""Re-tuned thresholds into an exported bundle (``dse thresholds --bundle``).

The graphs do not depend on the thresholds: only ``manifest.json`` changes (its
``criterion.thresholds`` and the source configuration's ``exit_policy.thresholds``), written
atomically. The bundle must be one ``dse export`` wrote for a model with the same criterion and
number of exits; anything else is refused before a byte is written.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from dse.export.run import BadBundle
from dse.export.runner import MANIFEST, BundleError, read_manifest


def write_bundle_thresholds(bundle: str | os.PathLike, criterion: str,
                            thresholds: Sequence[float]) -> Path:
    """Set the per-early-exit ``thresholds`` of ``criterion`` in ``bundle``'s manifest; returns
    the manifest path. Raises BadBundle for a folder that is no bundle or does not match."""
    folder = Path(bundle)
    try:
        manifest = read_manifest(folder)
    except BundleError as exc:
        raise BadBundle(f"--bundle {exc}") from None
    path = folder / MANIFEST
    name = manifest["criterion"].get("name") if isinstance(manifest["criterion"], dict) else None
    if name != criterion:
        raise BadBundle(f"--bundle {path}: exits on criterion {name!r}, the model uses "
                        f"{criterion!r}; export this model first (dse export)")
    early = len(manifest["exits"]) - 1
    if early != len(thresholds):
        raise BadBundle(f"--bundle {path}: {early} early exits, the model has {len(thresholds)}; "
                        "export this model first (dse export)")
    values = [float(t) for t in thresholds]
    manifest["criterion"]["thresholds"] = values
    source = manifest.get("source")
    config: Any = source.get("config") if isinstance(source, dict) else None
    if isinstance(config, dict) and isinstance(config.get("exit_policy"), dict):
        config["exit_policy"]["thresholds"] = values
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)
    return path
