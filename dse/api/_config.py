"""A run configuration given as a file path or as a typed :class:`~dse.design.RunConfig`."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Union

from dse.design import RunConfig, load_config
from dse.models.backbones import check_code_allowed, code_from_files

ConfigLike = Union[str, Path, RunConfig]


def resolve_config(config: ConfigLike, allow_code: bool) -> tuple[RunConfig, str | None]:
    """(RunConfig, the file it came from or None).

    A file may name Python code as its backbone only with ``allow_code``; a ``RunConfig`` built
    by the calling script is the user speaking (like ``--backbone`` on the command line).
    """
    if isinstance(config, RunConfig):
        return config, None
    path = str(config)
    cfg = load_config(path)
    check_code_allowed(cfg.backbone, None if allow_code else path)
    return cfg, path


@contextlib.contextmanager
def code_guard(source: str | None, allow_code: bool) -> Iterator[None]:
    """Within the block, user backbones named by ``source`` are built only if ``allow_code``."""
    if source is None:
        yield
        return
    with code_from_files(source, allow_code):
        yield
