"""Names and folders that come from the user: checked before they become paths.

A study name becomes a folder (``reports/<study>/``) and a file prefix, so it must be a name, not
a path: letters, digits, ``.``, ``_`` and ``-``, no leading dot. Output folders are checked for
writability before any long work starts, so a search or a calibration does not run for minutes
and then lose its results to a PermissionError.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from dse.errors import ConfigError

_STUDY_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def check_study_name(name: str, option: str = "--study") -> str:
    """``name`` unchanged if it is a valid study name, else a ConfigError saying the rule."""
    if not _STUDY_NAME.fullmatch(name):
        raise ConfigError(f"{option} must be a name of at most 128 letters, digits, '.', '_' or "
                          f"'-' that does not start with '.', got {name!r}")
    return name


def check_writable_dir(folder: str | os.PathLike, option: str) -> Path:
    """Prove that ``folder`` can be created (if missing) and written, leaving nothing behind.

    The nearest existing ancestor must be a folder in which a file can be created; the probe
    file is removed at once. ``option`` names where the folder came from (``--out``,
    ``DSE_CACHE``) in the error line.
    """
    path = Path(folder)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: not a writable folder ({existing} is a file)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".dse-write-test.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{option} {path}: not a writable folder ({reason})") from None
    return path


def check_writable_file(file: str | os.PathLike, option: str) -> Path:
    """The folder that will hold ``file`` is writable, and ``file`` itself is not a folder
    or a read-only file."""
    path = Path(file)
    check_writable_dir(path.parent if str(path.parent) else Path("."), option)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder, expected a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{option} {path}: the file exists and is not writable")
    return path
