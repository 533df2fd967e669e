"""Strict YAML reading: typed getters that name the file and key, and reject unknown keys.

Raw dicts live only here and in the loaders that use :class:`Section`; everything past a loader
sees frozen dataclasses. Every failure is a :class:`ConfigError` of one line, e.g.
``search_spaces/x.yaml: exits.max must be >= 1, got 0``.
"""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

import yaml

from dse.errors import ConfigError

_MISSING = object()


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file strictly; every failure is one ConfigError line naming the file.

    Refused, beyond bad syntax: a missing or unreadable file, bytes that are not UTF-8 text, NUL
    bytes, a key given twice in one mapping (the second would silently win), and NaN or infinite
    numbers (no dse setting accepts them, and they would leak into JSON output as invalid
    tokens).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    return parse_yaml(data, path)


def parse_yaml(data: bytes | str, path: str) -> Any:
    """The strict parse behind :func:`read_yaml`, on bytes or text; ``path`` names the source."""
    if isinstance(data, bytes):
        if b"\0" in data:
            raise ConfigError(f"{path}: not a text file (NUL byte at offset {data.index(0)})")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                              f"{exc.start})") from None
    else:
        text = data
    try:
        value = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [""])[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {_one_line(problem)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    _check_finite(value, path, "")
    return value


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader that refuses a key given twice in one mapping; libyaml's C parser when
    PyYAML has it (looking up a profile name parses every shipped profile: 10x faster)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:  # before merging: a ``<<`` entry may be overridden
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key; the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_one_line(repr(key))}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _check_finite(value: Any, path: str, where: str) -> None:
    """Refuse NaN and infinities anywhere in a parsed document, naming the key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: {where or 'the document'} must be a finite number, "
                          f"got {value}")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, path, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, path, f"{where}[{i}]")


def write_yaml(path: str | os.PathLike, data: Any, header: str = "") -> None:
    """Write YAML atomically (a reader never sees a half-written file)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        if header:
            fh.write("".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()))
        yaml.safe_dump(data, fh, sort_keys=False, default_flow_style=None)
    os.replace(tmp, path)


class Section:
    """A YAML mapping being read: typed getters that remember which keys were used."""

    def __init__(self, raw: Any, file: str, path: str = "") -> None:
        self.file, self.path = file, path
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{self._where()} must be a mapping, got {type(raw).__name__}")
        self.raw = raw
        self._used: set[str] = set()

    def _where(self, key: str | None = None) -> str:
        dotted = ".".join(str(p) for p in (self.path, key) if p not in (None, ""))
        return f"{self.file}: {dotted}" if dotted else self.file

    def fail(self, key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{self._where(key)} {message}")

    def has(self, key: str) -> bool:
        return key in self.raw

    def get(self, key: str, default: Any = _MISSING) -> Any:
        self._used.add(key)
        if key not in self.raw:
            if default is _MISSING:
                raise self.fail(key, "is required")
            return default
        return self.raw[key]

    def section(self, key: str, required: bool = False) -> "Section":
        raw = self.get(key, _MISSING if required else None)
        return Section(raw, self.file, ".".join(p for p in (self.path, key) if p))

    def str(self, key: str, default: Any = _MISSING, choices: Sequence[str] | None = None) -> Any:
        value = self.get(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def number(self, key: str, default: Any = _MISSING, low: float | None = None,
               high: float | None = None, integer: bool = False, low_open: bool = False) -> Any:
        value = self.get(key, default)
        if value is None and default is None:
            return None
        return check_number(value, self._where(key), low, high, integer, low_open)

    def int(self, key: str, default: Any = _MISSING, low: int | None = None,
            high: int | None = None) -> Any:
        return self.number(key, default, low, high, integer=True)

    def list(self, key: str, default: Any = _MISSING, non_empty: bool = True) -> Any:
        value = self.get(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {value!r}")
        if non_empty and not value:
            raise self.fail(key, "must not be an empty list")
        return value

    def done(self) -> None:
        """Reject keys nobody asked for (typos are errors, not silently ignored)."""
        unknown = [k for k in self.raw if k not in self._used]
        if unknown:
            known = ", ".join(sorted(self._used)) or "none"
            raise self.fail(unknown[0], f"is not a known key (known here: {known})")


def check_number(value: Any, where: str, low: float | None = None, high: float | None = None,
                 integer: bool = False, low_open: bool = False) -> Any:
    """Type and range check for one number; ``where`` is 'file: key'."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"{where} must be {kind}, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{where} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{where} must be <= {high}, got {value}")
    return value


def to_plain(value: Any) -> Any:
    """numpy/torch scalars and arrays, tuples and nested containers -> plain python (what YAML,
    JSON and Optuna's attribute storage accept). The one converter every writer uses."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item() if getattr(value, "ndim", 0) == 0 else to_plain(value.tolist())
    return value
