"""One split's feature-cache file: written batch by batch, read back memory-mapped.

Why not ``torch.save``: it needs every tensor whole in memory, so building a cache held all of
it in RAM (CIFAR-10 with resnet56 at every attach point: 30 GiB). This file is written as the
backbone produces each batch (``os.pwrite`` of the batch's rows into their place), so a build
holds one batch in memory, and it is read back with ``numpy.memmap`` so loading costs nothing
until rows are touched (the kernel pages them in and can drop them again).

Layout (our choice; little-endian, every tensor C-contiguous):

    bytes 0..7    magic ``DSEFEAT1``
    bytes 8..15   header length L (uint64)
    bytes 16..    header: UTF-8 JSON {"version", "rows", "tensors": [{"name", "dtype",
                  "shape", "offset"}]}
    offset_t..    tensor t's bytes, each offset a multiple of ALIGN

A file is written under a temporary name in the same folder and renamed into place when its
last batch is in, so a reader sees a whole file or none.
"""
from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

MAGIC = b"DSEFEAT1"
ALIGN = 4096
SUFFIX = ".feat"

#: dtype name <-> torch dtype (stored as raw bytes; numpy has no bfloat16, so reads go through
#: an integer view of the same width)
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
           "int64": torch.int64}
_RAW = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def layout(specs: Sequence[tuple[str, torch.dtype, tuple[int, ...]]], rows: int
           ) -> tuple[bytes, list[dict], int]:
    """(header bytes, tensor entries with offsets, total file size) for ``specs`` of ``rows``
    rows each: ``(name, dtype, per-row shape)``."""
    entries = [{"name": n, "dtype": dtype_name(d), "shape": [rows, *s], "offset": 0}
               for n, d, s in specs]
    # the header's length depends on the offsets' digits: size it with wide placeholders
    for e in entries:
        e["offset"] = 10**15
    head_len = len(json.dumps({"version": 1, "rows": rows, "tensors": entries}).encode())
    offset = _align(16 + head_len)
    for e, (_, d, s) in zip(entries, specs):
        e["offset"] = offset
        offset = _align(offset + rows * int(np.prod(s, dtype=np.int64)) * _itemsize(d))
    header = json.dumps({"version": 1, "rows": rows, "tensors": entries}).encode()
    return MAGIC + struct.pack("<Q", len(header)) + header, entries, offset


def file_bytes(specs: Sequence[tuple[str, torch.dtype, tuple[int, ...]]], rows: int) -> int:
    """Size on disk of a file holding ``rows`` rows of ``specs`` (what a build will need)."""
    return layout(specs, rows)[2]


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


class FeatureWriter:
    """Writes one split's tensors row block by row block into a temporary file; :meth:`commit`
    renames it to ``path``. Use as a context manager: an exception removes the temporary file."""

    def __init__(self, path: Path, specs: Sequence[tuple[str, torch.dtype, tuple[int, ...]]],
                 rows: int) -> None:
        self.path = Path(path)
        header, entries, size = layout(specs, rows)
        self._entries = {e["name"]: e for e in entries}
        self._row_bytes = {n: int(np.prod(s, dtype=np.int64)) * _itemsize(d) for n, d, s in specs}
        self._dtypes = {n: d for n, d, _ in specs}
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                         dir=self.path.parent)
        self._fd = fd
        os.ftruncate(fd, size)  # sparse until written; the disk check ran before
        os.pwrite(fd, header, 0)

    def write(self, name: str, start: int, t: torch.Tensor) -> None:
        """Rows ``start .. start + len(t)`` of tensor ``name`` (already in its dtype, on CPU)."""
        if t.dtype != self._dtypes[name]:
            raise TypeError(f"{name}: expected {self._dtypes[name]}, got {t.dtype}")
        raw = t.contiguous().view(-1).view(torch.uint8).numpy()
        offset = self._entries[name]["offset"] + start * self._row_bytes[name]
        view = memoryview(raw)
        while view:  # pwrite may write less than asked
            done = os.pwrite(self._fd, view, offset)
            view, offset = view[done:], offset + done

    def commit(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self._fd >= 0:
            self.abort()


def read_feature_file(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a feature file, memory-mapped copy-on-write (writes stay in memory).

    Raises ValueError when the file is not a whole feature file.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        start = f.read(16)
        if len(start) < 16 or start[:8] != MAGIC:
            raise ValueError(f"{path}: not a dse feature file")
        (head_len,) = struct.unpack("<Q", start[8:])
        header = json.loads(f.read(head_len).decode())
    mm = np.memmap(path, dtype=np.uint8, mode="c")
    out: dict[str, torch.Tensor] = {}
    for e in header["tensors"]:
        dtype = _DTYPES[e["dtype"]]
        nbytes = int(np.prod(e["shape"], dtype=np.int64)) * _itemsize(dtype)
        if e["offset"] + nbytes > size:
            raise ValueError(f"{path}: truncated")
        raw = mm[e["offset"]:e["offset"] + nbytes].view(_RAW[_itemsize(dtype)])
        out[e["name"]] = torch.from_numpy(raw).view(dtype).view(e["shape"])
    return out
