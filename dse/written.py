"""A record of the files dse wrote in a folder, so that cleaning up removes only those.

``dse search`` and ``dse report`` rewrite ``configs/trial_<n>.yaml`` for the current Pareto front
and remove the configurations that left it. A file the user put in the same folder, even one
named like ours, must survive: the folder's manifest (``.dse-written.json``) lists what dse wrote
there, and :func:`replace_written` removes only files it lists.

A file a user asked for by name (``dse config --study S --trial N`` writes
``configs/trial_<n>.yaml`` for any trial) is dse's to write but not to clean up:
:func:`keep_written` lists it as *kept*, and :func:`replace_written` never deletes a kept file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

MANIFEST = ".dse-written.json"


def written_files(folder: str | os.PathLike, key: str = "files") -> set[str]:
    """Names (not paths) that dse recorded as written in ``folder`` (``key="kept"``: those it
    wrote on request and keeps); empty when unreadable."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    names = data.get(key) if isinstance(data, dict) else None
    if not isinstance(names, list):
        return set()
    return {n for n in names if isinstance(n, str) and _plain(n)}


def keep_written(folder: str | os.PathLike, name: str) -> None:
    """Record ``name`` in ``folder`` as written by dse on request: never removed by cleanup."""
    if not _plain(name):
        raise ValueError(f"not a plain file name: {name!r}")
    folder = Path(folder)
    _write_json(folder / MANIFEST, {"written_by": "dse", "files": sorted(written_files(folder)),
                                    "kept": sorted(written_files(folder, "kept") | {name})})


def replace_written(folder: str | os.PathLike, current: Iterable[str]) -> list[str]:
    """Record ``current`` as what dse wrote in ``folder``; delete files it wrote before that are
    not in ``current``. Returns the names deleted. Names must be plain file names."""
    folder = Path(folder)
    keep = set(current)
    bad = [n for n in keep if not _plain(n)]
    if bad:
        raise ValueError(f"not a plain file name: {bad[0]!r}")
    kept = written_files(folder, "kept")
    removed = []
    for name in sorted(written_files(folder) - keep - kept):
        try:
            (folder / name).unlink()
            removed.append(name)
        except FileNotFoundError:
            pass
    _write_json(folder / MANIFEST, {"written_by": "dse", "files": sorted(keep),
                                    "kept": sorted(kept)})
    return removed


def _plain(name: str) -> bool:
    return bool(name) and name not in (".", "..", MANIFEST) and "/" not in name \
        and "\\" not in name and "\0" not in name


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
