"""One split's feature-cache file: written batch by batch, read back memory-mapped.

Why not ``torch.save``: it needs every tensor whole in memory, so building a cache held all of
it in RAM (CIFAR-10 with resnet56 at every attach point: 30 GiB). This file is written as the
backbone produces each batch (``os.pwrite`` of the batch's rows into their place), so a build
holds one batch in memory, and it is read back with ``numpy.memmap`` so loading costs nothing
until rows are touched.

Reading: a mapped page a process has touched counts in its resident set until the kernel needs
the memory back, so a search whose trials sweep the mapped features ends with the whole cache
resident (30 GiB of resnet56 features: a peak RSS of 15 GiB on a 24 GiB machine, measured). The
search therefore reads rows with :class:`RowFile` (``os.preadv`` of the rows asked for into
fresh memory): the file's pages stay in the kernel's page cache, shared and dropped under
pressure, and the process holds one batch. The memory-mapped tensors remain for code that wants
a whole block as one tensor.

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
import weakref
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


def read_header(path: Path) -> list[dict]:
    """The tensor entries of a feature file (name, dtype, shape, offset), checked against its
    size. Raises ValueError when the file is not a whole feature file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        start = f.read(16)
        if len(start) < 16 or start[:8] != MAGIC:
            raise ValueError(f"{path}: not a dse feature file")
        (head_len,) = struct.unpack("<Q", start[8:])
        header = json.loads(f.read(head_len).decode())
    for e in header["tensors"]:
        nbytes = int(np.prod(e["shape"], dtype=np.int64)) * _itemsize(_DTYPES[e["dtype"]])
        if e["offset"] + nbytes > size:
            raise ValueError(f"{path}: truncated")
    return header["tensors"]


def read_feature_file(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a feature file, memory-mapped copy-on-write (writes stay in memory).

    Raises ValueError when the file is not a whole feature file.
    """
    entries = read_header(path)
    mm = np.memmap(path, dtype=np.uint8, mode="c")
    out: dict[str, torch.Tensor] = {}
    for e in entries:
        dtype = _DTYPES[e["dtype"]]
        nbytes = int(np.prod(e["shape"], dtype=np.int64)) * _itemsize(dtype)
        raw = mm[e["offset"]:e["offset"] + nbytes].view(_RAW[_itemsize(dtype)])
        out[e["name"]] = torch.from_numpy(raw).view(dtype).view(e["shape"])
    return out


class RowFile:
    """One tensor of a feature file, read by rows into fresh memory (``os.preadv``), never
    mapped: the process's resident set holds the rows asked for, not the pages ever read.

    A run of consecutive rows (evaluation batches) is one read; scattered rows (a shuffled
    minibatch) one read each. The file stays open until the object is collected, so a pruned
    file keeps its data for this reader, as a mapping would.
    """

    def __init__(self, path: Path, entry: dict) -> None:
        self.path = Path(path)
        self.dtype = _DTYPES[entry["dtype"]]
        self.shape = tuple(int(v) for v in entry["shape"])
        self._offset = int(entry["offset"])
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * _itemsize(self.dtype)
        self._fd = os.open(self.path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: int | slice | torch.Tensor) -> torch.Tensor:
        """``reader[idx]`` (an index tensor or list), ``reader[i:j]`` or ``reader[i]``: the rows,
        read, as a tensor would give them (so code written for tensors reads a file)."""
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            return self.rows(torch.arange(start, stop, step))
        if isinstance(key, int):
            return self.rows(torch.tensor([key + self.shape[0] if key < 0 else key]))[0]
        return self.rows(key)

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``idx`` (any order, repeats allowed) as a new CPU tensor [len(idx), ...]."""
        idx = torch.as_tensor(idx, dtype=torch.int64).reshape(-1)
        n = int(idx.numel())
        if n and (int(idx.min()) < 0 or int(idx.max()) >= self.shape[0]):
            raise IndexError(f"{self.path.name}: rows outside 0..{self.shape[0] - 1}")
        out = torch.empty((n, *self.shape[1:]), dtype=self.dtype)
        buf = out.view(-1).view(torch.uint8).numpy().reshape(n, self._row_bytes)
        if n and int(idx[-1]) - int(idx[0]) == n - 1 and bool((idx.diff() == 1).all()):
            self._read(buf.reshape(-1), int(idx[0]))
        else:
            for i, row in enumerate(idx.tolist()):
                self._read(buf[i], row)
        return out

    def slice(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start .. stop - 1`` (clipped to the tensor) in one read."""
        stop = min(stop, self.shape[0])
        return self.rows(torch.arange(start, max(start, stop)))

    def _read(self, buf: np.ndarray, row: int) -> None:
        view, offset = memoryview(buf).cast("B"), self._offset + row * self._row_bytes
        while view:  # a read may return less than asked
            done = os.preadv(self._fd, [view], offset)
            if done <= 0:
                raise ValueError(f"{self.path}: truncated")
            view, offset = view[done:], offset + done


def open_rows(path: Path, names: Sequence[str]) -> dict[str, RowFile]:
    """:class:`RowFile` readers of tensors ``names`` of a feature file."""
    entries = {e["name"]: e for e in read_header(path)}
    return {n: RowFile(path, entries[n]) for n in names}
