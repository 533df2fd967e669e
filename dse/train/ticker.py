"""Progress of a long step when stderr is not a terminal: plain periodic lines.

A tqdm bar (:func:`dse.train.engine.progress_bar`) is hidden when stderr is a file or a pipe
(a batch job, ``2> log``), so a two-minute step printed nothing until it ended. :func:`progress`
gives the bar on a terminal and, elsewhere, a :class:`LineTicker`: one line each time another
``every_percent`` of the work is done or ``every_s`` seconds have passed, whichever comes first,
plus one at the end; a step done within ``quiet_s`` seconds prints nothing (our choice: a
log of a small run stays short).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

from dse.train.engine import progress_bar

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class LineTicker:
    """``desc: 4,608/45,000 img (10%), 12.3 s, 374 img/s`` lines; the same API as a tqdm bar
    (``update``, context manager)."""

    def __init__(self, total: int, desc: str, *, unit: str = "img", every_percent: float = 10.0,
                 every_s: float = 10.0, quiet_s: float = 3.0, log: Log = _stderr,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit, self.log, self.clock = total, desc, unit, log, clock
        self.every_n = max(1, int(total * every_percent / 100))
        self.every_s, self.quiet_s = every_s, quiet_s
        self.n = 0
        self._start = clock()
        self._last_n, self._last_t = 0, self._start

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self._start < self.quiet_s:
            return
        if self.n - self._last_n >= self.every_n or now - self._last_t >= self.every_s:
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self._start
        pct = 100.0 * self.n / self.total if self.total else 100.0
        rate = f", {self.n / elapsed:,.0f} {self.unit}/s" if elapsed > 0 else ""
        self.log(f"{self.desc}: {self.n:,}/{self.total:,} {self.unit} ({pct:.0f}%), "
                 f"{elapsed:.1f} s{rate}")
        self._last_n, self._last_t = self.n, now

    def close(self) -> None:
        now = self.clock()
        if self.n != self._last_n and now - self._start >= self.quiet_s:
            self._line(now)

    def __enter__(self) -> LineTicker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress(total: int, desc: str, *, enabled: bool | None, unit: str = "img",
             log: Log | None = None) -> Any:
    """A tqdm bar (``enabled`` True, or None on a terminal), plain lines (None elsewhere, to
    ``log`` or stderr) or nothing (``enabled`` False)."""
    if enabled is False:
        return _Silent()
    if enabled or sys.stderr.isatty():
        return progress_bar(total, desc, enabled=True, leave=False, unit=unit)
    return LineTicker(total, desc, unit=unit, log=log or _stderr)
