"""Where torch runs on this machine: device choice and CPU thread count, for every torch command.

Not to be confused with a hardware profile's *runtime* (the inference stack a latency prediction
assumes, :class:`dse.cost.profiles.Runtime`).
"""
from __future__ import annotations

import os

import torch

from dse.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for ``cuda`` without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA device is available")
    if name not in DEVICE_CHOICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
    return torch.device(name)


def available_cpus() -> int:
    """CPUs this process may run on: its CPU affinity (a container's or ``taskset``'s limit),
    not every core of the machine (``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (default: the CPUs this process may use) and return the
    number used."""
    n = threads or available_cpus()
    torch.set_num_threads(n)
    return n
