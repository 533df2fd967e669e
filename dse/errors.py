"""One exception root for every user-facing failure.

The CLI catches :class:`DseError` only, prints its message as one line on stderr and exits
with status 2. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class DseError(Exception):
    """Root of every error caused by user input (files, options, names, data)."""


class ConfigError(DseError):
    """A YAML file, option or value breaks a rule; the message names file, key and value."""


class UnknownNameError(DseError, KeyError):
    """A name looked up in a registry does not exist; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class DataError(DseError):
    """A dataset path is missing, malformed or not the format it claims to be."""


class CheckpointError(DseError):
    """A checkpoint file is missing, corrupt or does not fit the model."""


class TrialFailed(DseError):
    """A search trial cannot produce a result (diverging loss, invalid combination).

    The search records the message as the trial's failure reason and goes on.
    """
