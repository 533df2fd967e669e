"""Per-exit outputs -> thresholds -> accuracy, exit mix and expected cost.

The implementation lives in the :mod:`dse.evaluation` package (outputs, metrics, sweeps,
budget calibration); this module is the short import path named in the design notes.
"""
from __future__ import annotations

from dse.evaluation import *  # noqa: F401,F403
from dse.evaluation import __all__  # noqa: F401
