"""A small name -> object registry for everything users choose by name.

Backbones, branches, placements, losses, exit criteria, datasets and shifts are registries, so a
new entry gets its CLI choice, its YAML check and its standard tests with no other edit.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Generic, Iterator, TypeVar

from dse.errors import UnknownNameError
from dse.plugins import entry_points

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; refuses duplicates; unknown names list the valid ones.

    With ``group``, installed plugins declaring entry points in that group (:mod:`dse.plugins`)
    are added once, the first time the registry is listed or asked for a name; ``adapt(name,
    obj)`` turns a loaded entry-point object into the registry's value (and may record side
    data, such as a branch's parameters). A plugin that fails to load, or reuses a name, is left
    out with a warning, so one broken package does not stop every command.
    """

    def __init__(self, kind: str, group: str | None = None,
                 adapt: Callable[[str, Any], T] | None = None) -> None:
        self.kind = kind
        self.group = group
        self._adapt = adapt
        self._plugins_loaded = group is None
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True  # first, so a plugin that lists the registry does not recurse
        for ep in entry_points(self.group):
            try:
                if ep.name in self._entries or ep.name in self._aliases:
                    raise ValueError(f"the name {ep.name!r} is already registered")
                obj = ep.load()
                self.add(ep.name, self._adapt(ep.name, obj) if self._adapt else obj)
            except Exception as exc:  # noqa: BLE001 - any plugin failure is reported
                warnings.warn(f"{self.kind} plugin {ep.name!r} ({ep.value}, entry point group "
                              f"{self.group}) left out: {exc}", stacklevel=3)

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """Decorator: ``@BACKBONES.register("resnet20")``."""

        def decorator(obj: T) -> T:
            self.add(name, obj, *aliases)
            return obj

        return decorator

    def add(self, name: str, obj: T, *aliases: str) -> None:
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is already registered")
        self._entries[name] = obj
        for alias in aliases:
            self._aliases[alias] = name

    def resolve(self, name: str) -> str:
        """The canonical name for ``name`` (which may be an alias)."""
        self._load_plugins()
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}"
        )

    def get(self, name: str) -> T:
        return self._entries[self.resolve(name)]

    def names(self) -> list[str]:
        """Canonical names, in registration order (feeds click.Choice and YAML checks)."""
        self._load_plugins()
        return list(self._entries)

    def aliases(self) -> dict[str, str]:
        self._load_plugins()
        return dict(self._aliases)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(self._entries)

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)
