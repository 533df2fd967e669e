"""A record of the files dse wrote in a folder, so that cleaning up removes only those.

``dse search`` and ``dse report`` rewrite ``configs/trial_<n>.yaml`` for the current Pareto front
and remove the configurations that left it. A file the user put in the same folder, even one
named like ours, must survive: the folder's manifest (``.dse-written.json``) lists what dse wrote
there, and :func:`replace_written` removes only files it lists.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

MANIFEST = ".dse-written.json"


def written_files(folder: str | os.PathLike) -> set[str]:
    """Names (not paths) that dse recorded as written in ``folder``; empty when unreadable."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    names = data.get("files") if isinstance(data, dict) else None
    if not isinstance(names, list):
        return set()
    return {n for n in names if isinstance(n, str) and _plain(n)}


def replace_written(folder: str | os.PathLike, current: Iterable[str]) -> list[str]:
    """Record ``current`` as what dse wrote in ``folder``; delete files it wrote before that are
    not in ``current``. Returns the names deleted. Names must be plain file names."""
    folder = Path(folder)
    keep = set(current)
    bad = [n for n in keep if not _plain(n)]
    if bad:
        raise ValueError(f"not a plain file name: {bad[0]!r}")
    removed = []
    for name in sorted(written_files(folder) - keep):
        try:
            (folder / name).unlink()
            removed.append(name)
        except FileNotFoundError:
            pass
    _write_json(folder / MANIFEST, {"written_by": "dse", "files": sorted(keep)})
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
