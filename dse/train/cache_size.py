"""Will a feature cache fit? Its size from shapes x samples x dtype, checked before any work.

A cache build that runs out of disk (or, in memory, of RAM) part-way wastes minutes and ends
in an allocator traceback. The size is known before the first batch:

    bytes = sum_splits n_s x (sum_b C_b H_b W_b x dtype bytes + K x 4 + 8 + 8) + headers

with ``n_s = min(split size, max_samples)`` (the logits are float32 [K], labels and row indices
int64). :func:`check_fits` compares it with the free space (less a margin) and, when it does not
fit, raises one line naming the need, what is free and the largest ``--max-samples`` that fits.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

from dse.errors import ConfigError

#: our choice: leave 10% of the free space (and at least 256 MiB) to everything else
MARGIN_FRACTION = 0.10
MARGIN_MIN_BYTES = 256 * 2**20


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def available_memory() -> int | None:
    """Bytes of RAM available to a new allocation (Linux ``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_disk(folder: Path) -> int:
    """Free bytes on the file system holding ``folder``."""
    return shutil.disk_usage(folder).free


def usable(free: int) -> int:
    return max(0, free - max(MARGIN_MIN_BYTES, int(free * MARGIN_FRACTION)))


def total_bytes(per_sample: int, overhead: int, sizes: Sequence[int], max_samples: int | None
                ) -> int:
    """Bytes of splits of ``sizes`` rows each, capped at ``max_samples``, ``overhead`` per split."""
    cap = max(sizes, default=0) if max_samples is None else max_samples
    return sum(min(n, cap) * per_sample + overhead for n in sizes)


def fitting_max_samples(per_sample: int, overhead: int, sizes: Sequence[int], room: int
                        ) -> int:
    """The largest ``max_samples`` whose splits fit in ``room`` bytes (0 when none does)."""
    lo, hi = 0, max(sizes, default=0)
    while lo < hi:  # total_bytes grows with the cap: binary search
        mid = (lo + hi + 1) // 2
        if total_bytes(per_sample, overhead, sizes, mid) <= room:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_fits(need: int, free: int | None, where: str, *, per_sample: int, overhead: int,
               sizes: Sequence[int]) -> None:
    """Raise a one-line ConfigError when ``need`` bytes do not fit in ``free`` (None: unknown,
    not checked). ``sizes``: the rows of each split still to build, before any cap."""
    if free is None or need <= usable(free):
        return
    fit = fitting_max_samples(per_sample, overhead, sizes, usable(free))
    hint = (f"use --max-samples {fit} (or fewer)" if fit >= 1
            else "free some space (see `dse cache list` / `dse cache prune`)")
    raise ConfigError(f"the feature cache needs {gib(need)} of {where} but {gib(free)} is free "
                      f"({gib(usable(free))} usable after a safety margin); {hint}")
