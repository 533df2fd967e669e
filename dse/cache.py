"""The dse cache folder: trained default backbones and feature caches live here.

``DSE_CACHE`` names the folder; otherwise it is the user's cache directory (platformdirs, e.g.
``~/.cache/dse`` on Linux). Files are written atomically (a temporary file in the same folder,
then ``os.replace``), so a second worker process never reads a half-written file, and the
expensive step that produces a file can be serialised with :func:`file_lock`.

A foundation module: the search's study and storage code names its files with :func:`slug` and
:func:`digest`, so torch is imported only by the two functions that need it.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from filelock import FileLock

from dse.errors import ConfigError

if TYPE_CHECKING:
    import torch

ENV_VAR = "DSE_CACHE"


def cache_dir(sub: str | None = None) -> Path:
    """The cache folder (``$DSE_CACHE`` or the user cache dir + ``/dse``), created if missing."""
    root = os.environ.get(ENV_VAR)
    if root:
        path = Path(root).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("dse", appauthor=False))
    if sub:
        path = path / sub
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cache folder {path} cannot be created ({exc.strerror}); "
                          f"set {ENV_VAR} to a writable folder") from exc
    if path not in _WRITABLE:  # a read-only cache fails here, not after minutes of work
        try:
            fd, probe = tempfile.mkstemp(prefix=".dse-write-test.", dir=path)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ConfigError(f"cache folder {path} is not writable ({exc.strerror}); "
                              f"set {ENV_VAR} to a writable folder") from None
        _WRITABLE.add(path)
    return path


#: Cache folders already shown to be writable in this process.
_WRITABLE: set[Path] = set()


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (``cifar10:/data/x`` -> ``cifar10-data-x``)."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-")[:60] or "x"


def digest(*parts: Any, length: int = 16) -> str:
    """sha256 of the ``repr`` of ``parts`` (hex, first ``length`` characters)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:length]


def state_digest(module_or_state: torch.nn.Module | dict) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes: identifies a set of weights."""
    import torch  # here, not at the top: see the module docstring

    state = module_or_state.state_dict() if isinstance(module_or_state, torch.nn.Module) \
        else module_or_state
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename it into place."""
    import torch  # here, not at the top: see the module docstring

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive lock on ``path`` + ``.lock`` between processes (the filelock package: flock
    on POSIX, msvcrt on Windows).

    Two workers that both miss the cache then train once: the second waits and finds the file.
    """
    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        yield
