"""What the dse cache folder holds, and pruning its feature files (``dse cache``).

Feature caches are the big files (GiB per study at CIFAR size) and are never needed again once
a study is over: re-running a study rebuilds them. Trained default backbones are small and
slow to remake, so pruning removes feature files only (our choice). A feature file's time is
its last use: loading a cached split touches its modification time, so "the newest N" are the
N most recently used.

Pruning a file another process has open is safe on POSIX (its mapping keeps the data until it
closes); that process's next run rebuilds the file.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from dse.errors import ConfigError

DAY_S = 86_400.0
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
          "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40,
          "tib": 2**40}


@dataclass(frozen=True)
class CacheFile:
    """One file of the cache folder (``kind``: its subfolder, e.g. ``features``)."""

    kind: str
    path: Path
    bytes: int
    mtime: float  # seconds since the epoch

    def age_days(self, now: float) -> float:
        return max(0.0, (now - self.mtime) / DAY_S)


def parse_size(text: str) -> int:
    """``"500M"``, ``"2GiB"``, ``"1.5g"``, ``"1024"`` -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if m is None or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"size must be a number with an optional unit (K, M, G, T; binary), "
                          f"e.g. 20G, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def list_files(root: Path) -> list[CacheFile]:
    """Every data file under ``root`` (lock files and temporary files left out), newest first."""
    out = []
    for path in root.rglob("*") if root.is_dir() else ():
        if not path.is_file() or path.name.endswith((".lock", ".tmp")):
            continue
        st = path.stat()
        kind = path.relative_to(root).parts[0] if path.parent != root else "."
        out.append(CacheFile(kind, path, st.st_size, st.st_mtime))
    return sorted(out, key=lambda f: (-f.mtime, str(f.path)))


def select_prune(files: list[CacheFile], *, keep: int | None, older_than_days: float | None,
                 max_bytes: int | None, now: float) -> list[CacheFile]:
    """The feature files to remove: beyond the ``keep`` newest, older than ``older_than_days``,
    or past ``max_bytes`` in total counting from the newest. Other kinds are never chosen."""
    if keep is None and older_than_days is None and max_bytes is None:
        raise ConfigError("dse cache prune needs --keep, --older-than or --max-size")
    chosen, kept, total = [], 0, 0
    for f in files:  # newest first
        if f.kind != "features":
            continue
        drop = (keep is not None and kept >= keep) or \
            (older_than_days is not None and f.age_days(now) > older_than_days) or \
            (max_bytes is not None and total + f.bytes > max_bytes)
        if drop:
            chosen.append(f)
        else:
            kept, total = kept + 1, total + f.bytes
    return chosen


def remove(files: list[CacheFile]) -> int:
    """Delete ``files`` and their lock files; the bytes freed."""
    freed = 0
    for f in files:
        try:
            f.path.unlink()
            freed += f.bytes
        except FileNotFoundError:
            continue
        lock = Path(f"{f.path}.lock")
        if lock.exists():
            lock.unlink(missing_ok=True)
    return freed


def stale_temporaries(root: Path, now: float | None = None, min_age_s: float = DAY_S
                      ) -> list[Path]:
    """Temporary files of writes that never finished (a killed build), older than a day."""
    now = time.time() if now is None else now
    return [p for p in root.rglob(".*.tmp") if p.is_file() and now - p.stat().st_mtime > min_age_s]


def touch(path: Path) -> None:
    """Mark ``path`` as just used (its modification time), best effort."""
    try:
        os.utime(path)
    except OSError:
        pass
