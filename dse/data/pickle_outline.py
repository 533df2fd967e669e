"""A pickle's outline: its containers and small values, with large payloads left unread.

Sizing a request (``dse search`` refusing a feature cache that does not fit) needs the number of
images in each CIFAR batch file, not the images. Unpickling a 10,000-image batch decodes its
30 MB pixel string (about 0.3 s per file here, 2 s for CIFAR-10); this walks the opcodes instead
(:mod:`pickletools`' table), keeps the dicts, lists, tuples, numbers and short strings, and
seeks past every length-prefixed payload longer than :data:`SMALL` bytes, which stands in the
outline as a :class:`Payload` of its length. A global (``numpy.core.multiarray._reconstruct``)
and what is built from it become an :class:`Opaque` (but for ``_codecs.encode(text, "latin1")``,
protocol 2's spelling of ``bytes``, applied here): nothing named in the file is imported or run,
so reading an outline is also safe on a file from elsewhere. Any opcode outside the plain
set below raises ``ValueError`` (the caller then reads the file the ordinary way).
"""
from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

#: payloads longer than this many bytes are skipped, not read
SMALL = 4096
#: pickletools' markers of an argument whose length precedes it: length bytes, signed
_PREFIXED = {pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
             pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
             pickletools.TAKEN_FROM_ARGUMENT8U: (8, False)}


@dataclass(frozen=True)
class Payload:
    """A skipped string or bytes value of ``length`` bytes."""

    length: int


@dataclass(frozen=True)
class Opaque:
    """An object the pickle builds from a global (not constructed)."""

    name: str


_MARK = object()


def _argument(f: BinaryIO, op: pickletools.OpcodeInfo) -> Any:
    """The opcode's argument; a long length-prefixed one as a :class:`Payload` (skipped)."""
    if op.arg is None:
        return None
    prefixed = _PREFIXED.get(op.arg.n)
    if prefixed is None:
        return op.arg.reader(f)
    size, signed = prefixed
    start = f.tell()
    length = int.from_bytes(f.read(size), "little", signed=signed)
    if length > SMALL:
        f.seek(length, io.SEEK_CUR)
        return Payload(length)
    f.seek(start)
    return op.arg.reader(f)


def _pop_mark(stack: list) -> list:
    items = []
    while stack:
        item = stack.pop()
        if item is _MARK:
            return items[::-1]
        items.append(item)
    raise ValueError("pickle outline: MARK missing")


def _step(name: str, arg: Any, stack: list, memo: dict) -> None:
    """Apply one opcode to ``stack``/``memo`` (the plain-container subset of the pickle VM)."""
    if name in ("PROTO", "FRAME"):
        return
    if name == "MARK":
        stack.append(_MARK)
    elif name in ("EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE"):
        stack.append({} if name == "EMPTY_DICT" else [] if name == "EMPTY_LIST" else ())
    elif name in ("DICT", "LIST", "TUPLE"):
        items = _pop_mark(stack)
        stack.append(dict(zip(items[::2], items[1::2])) if name == "DICT"
                     else items if name == "LIST" else tuple(items))
    elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
        n = int(name[-1])
        items = tuple(stack[-n:])
        del stack[-n:]
        stack.append(items)
    elif name in ("APPEND", "APPENDS"):
        items = [stack.pop()] if name == "APPEND" else _pop_mark(stack)
        stack[-1].extend(items)
    elif name in ("SETITEM", "SETITEMS"):
        items = stack[-2:] if name == "SETITEM" else _pop_mark(stack)
        if name == "SETITEM":
            del stack[-2:]
        stack[-1].update(zip(items[::2], items[1::2]))
    elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
        memo[arg] = stack[-1]
    elif name == "MEMOIZE":
        memo[len(memo)] = stack[-1]
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        stack.append(memo[arg])
    elif name in ("GLOBAL", "STACK_GLOBAL"):
        if name == "STACK_GLOBAL":
            del stack[-2:]
        stack.append(Opaque(str(arg).replace(" ", ".") if arg else "global"))
    elif name in ("REDUCE", "NEWOBJ", "BUILD"):
        args = stack.pop()  # the arguments or state
        if name == "REDUCE" and _is_encode(stack[-1], args):  # protocol 2's bytes
            stack[-1] = args[0] if isinstance(args[0], Payload) else args[0].encode("latin-1")
        elif name != "BUILD":
            stack[-1] = Opaque(getattr(stack[-1], "name", "object"))
    elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
        stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
    elif name in _VALUES:
        stack.append(arg)
    else:
        raise ValueError(f"pickle outline: opcode {name} not supported")


def _is_encode(fn: Any, args: Any) -> bool:
    """``_codecs.encode(text, "latin1")``: how protocol 2 writes a ``bytes`` value."""
    return (isinstance(fn, Opaque) and fn.name == "_codecs.encode" and isinstance(args, tuple)
            and len(args) == 2 and isinstance(args[0], (str, Payload))
            and args[1] in ("latin1", "latin-1"))


#: opcodes that push their argument
_VALUES = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
           "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
           "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}


def pickle_outline(path: str | Path) -> Any:
    """The outline of the pickle in ``path`` (see the module docstring); ``ValueError`` when
    the file is not a plain-container pickle, ``OSError`` when it cannot be read."""
    stack: list = []
    memo: dict = {}
    with open(path, "rb") as f:
        while True:
            code = f.read(1)
            if not code:
                raise ValueError("pickle outline: the file ends before STOP")
            op = pickletools.code2op.get(code.decode("latin-1"))
            if op is None:
                raise ValueError(f"pickle outline: unknown opcode {code!r}")
            arg = _argument(f, op)
            if op.name == "STOP":
                if len(stack) != 1:
                    raise ValueError("pickle outline: malformed stack at STOP")
                return stack[0]
            try:
                _step(op.name, arg, stack, memo)
            except (IndexError, KeyError, AttributeError, TypeError) as exc:
                raise ValueError(f"pickle outline: malformed at {op.name} ({exc})") from None
