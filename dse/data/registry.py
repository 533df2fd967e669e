"""The dataset registry and the one entry point, :func:`load_dataset`.

A dataset is addressed as ``NAME`` or ``NAME:PATH``, e.g.
``--dataset cifar10:/data/cifar-10-batches-py``.
Each registered loader has the signature ``loader(path, *, seed, input_size) -> DataSplits``
with ``path`` a :class:`~pathlib.Path` or ``None``. Nothing is ever downloaded: real datasets
need a PATH to files already on disk; ``digits`` ships inside scikit-learn.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from dse.data.base import DataSplits
from dse.errors import ConfigError, DataError
from dse.registry import Registry

Loader = Callable[..., DataSplits]

#: name -> loader; ``DATASETS.names()`` feeds the CLI choices.
DATASETS: Registry[Loader] = Registry("dataset")

#: The embedded default: needs no files and trains in seconds.
DEFAULT_DATASET = "digits"

#: canonical name -> version of a generated dataset's content (bumped when its rendering
#: changes), so caches built from an older rendering, such as a trained backbone, are not reused
DATA_VERSIONS: dict[str, int] = {}


def data_version(spec: str) -> int | None:
    """The content version of dataset ``NAME[:PATH]`` (None: not versioned)."""
    return DATA_VERSIONS.get(parse_spec(spec)[0])


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """``"cifar10:/data/c10"`` -> ``("cifar10", Path("/data/c10"))``; the name is canonical.

    Unknown names raise :class:`~dse.errors.UnknownNameError` listing the valid ones.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"dataset must be NAME or NAME:PATH, got {spec!r}")
    name, sep, raw_path = spec.strip().partition(":")
    canonical = DATASETS.resolve(name.strip().lower())
    path = Path(raw_path).expanduser() if sep and raw_path.strip() else None
    return canonical, path


def load_dataset(spec: str, *, seed: int = 0, input_size: int | None = None) -> DataSplits:
    """Load ``NAME`` or ``NAME:PATH`` as deterministic train / val / test splits.

    ``seed`` fixes the splits (same seed -> same indices). ``input_size`` resizes every image
    to ``input_size`` x ``input_size`` (bilinear); by default the data's own size is kept.
    """
    if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, int)
                                   or input_size < 1):
        raise ConfigError(f"input_size must be a positive integer, got {input_size!r}")
    name, path = parse_spec(spec)
    return DATASETS.get(name)(path, seed=int(seed), input_size=input_size)


def require_folder(name: str, path: Path | None, expected: str) -> Path:
    """The dataset folder, or a DataError saying what to pass (nothing is downloaded)."""
    if path is None:
        raise DataError(f"dataset '{name}' needs a path: use '{name}:/path/to/{expected}' "
                        f"(nothing is downloaded)")
    if not path.exists():
        raise DataError(f"{path}: no such folder; expected {expected} for dataset '{name}'")
    if not path.is_dir():
        kind = "an archive; extract it and pass the folder" if _is_archive(path) else "a file"
        raise DataError(f"{path}: is {kind}; expected {expected} for dataset '{name}'")
    return path


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar", ".zip"))
