"""Compatibility name for :mod:`dse.design` (the typed design and its config files).

Kept while code moves to ``dse.design``; new code imports from there.
"""
from __future__ import annotations

from dse.design import (CONFIG_VERSION, LABEL_SOURCES, OPTIMIZERS, ExitDesign, ExitPolicy,  # noqa: F401
                        RunConfig, TrainingSpec, config_from_section, load_config, save_config)
from dse.yamlio import to_plain as _plain  # noqa: F401


def thresholds_for(policy: ExitPolicy, n_early: int) -> list[float]:
    """Expand a global threshold to one per early exit."""
    return policy.per_exit(n_early)
