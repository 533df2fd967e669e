"""dse: hardware-aware design-space exploration for early-exit CNNs."""
from __future__ import annotations

__version__ = "0.1.0"
