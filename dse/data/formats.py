"""Readers for the on-disk formats of the real datasets; each returns uint8 numpy arrays.

- CIFAR-10/100 "python version" (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html):
  pickled dicts holding ``data`` (uint8 [N, 3072], channel-major 32x32) and ``labels`` /
  ``fine_labels``.
  The files are Python 2 pickles, read with ``encoding="latin1"``. Unpickling runs code named in
  the file, so :class:`_ArrayUnpickler` only lets through what those files contain (numpy array
  reconstruction and plain containers) and refuses anything else.
- IDX (MNIST, Fashion-MNIST; LeCun et al. 1998, http://yann.lecun.com/exdb/mnist/): a big-endian
  header ``0x00 0x00 <type> <ndim>`` + ``ndim`` int32 sizes, then the raw array; gzipped or not.
- SVHN cropped digits (Netzer et al. 2011): MATLAB v5 ``.mat`` with ``X`` uint8 [32,32,3,N] and
  ``y`` [N,1] in 1..10, where 10 stands for the digit 0.

Every failure is a :class:`~dse.errors.DataError` naming the file and what was expected.
"""
from __future__ import annotations

import gzip
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from dse.errors import DataError

IDX_IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # uint8, 1 dimension (N,)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a pickled numpy array needs."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core."):  # files written by numpy 1.x; numpy 2 moved it
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def read_pickle_dict(path: Path, what: str) -> dict[str, Any]:
    """A CIFAR pickle as a dict with ``str`` keys; ``what`` names the file's role in errors."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - unpickling garbage raises any type (LookupError...)
        detail = " ".join(str(exc).split())[:200]
        raise DataError(f"{path}: not a readable {what} pickle "
                        f"({type(exc).__name__}: {detail})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict ({what}), got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [N,3,32,32], int64 [N])`` from one CIFAR batch file."""
    d = read_pickle_dict(path, "CIFAR batch")
    data, labels = d.get("data"), d.get(label_key)
    if (not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072
            or labels is None):
        got = f"data {getattr(data, 'shape', type(data).__name__)}, keys {sorted(d)}"
        raise DataError(f"{path}: expected a CIFAR batch with 'data' [N, 3072] and "
                        f"'{label_key}', got {got}")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if y.shape[0] != data.shape[0]:
        raise DataError(f"{path}: {data.shape[0]} images but {y.shape[0]} '{label_key}'")
    check_labels(path, y, num_classes)
    images = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images, y


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array in an IDX file (gzipped when the bytes start with 1f 8b)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc})") from None
    what = "images" if magic == IDX_IMAGES_MAGIC else "labels"
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes), expected {what}")
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise DataError(f"{path}: IDX magic 0x{got:08x}, expected 0x{magic:08x} ({what}, uint8)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header, expected {ndim} dimension sizes")
    shape = tuple(int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    size = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != size:
        raise DataError(f"{path}: IDX {what} of shape {shape} needs {size} data bytes, "
                        f"found {len(raw) - header} (truncated or corrupt)")
    # copy: frombuffer views are read-only, and torch wants writable arrays
    return np.frombuffer(raw, dtype=np.uint8, count=size, offset=header).reshape(shape).copy()


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [N,3,32,32], int64 [N] in 0..9)`` from an SVHN ``*_32x32.mat`` file."""
    import scipy.io  # slow import, only when SVHN is used

    check_mat5(path)  # scipy reads past a lying element size and crashes the process
    try:
        mat = scipy.io.loadmat(str(path), variable_names=("X", "y"))
    except NotImplementedError:  # MATLAB v7.3 (HDF5) files
        raise DataError(f"{path}: MATLAB v7.3 file; expected the v5 .mat "
                        f"SVHN distributes") from None
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError... on bad files
        raise DataError(f"{path}: not a readable .mat file ({type(exc).__name__}: {exc})") from None
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[2] != 3 or y is None:
        got = getattr(x, "shape", None)
        raise DataError(f"{path}: expected 'X' [H,W,3,N] and 'y' [N,1] (SVHN .mat), got X {got}")
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if y.shape[0] != x.shape[3]:
        raise DataError(f"{path}: {x.shape[3]} images in 'X' but {y.shape[0]} labels in 'y'")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: SVHN labels must be in 1..10 (10 = digit 0), "
                        f"got {int(y.min())}..{int(y.max())}")
    y[y == 10] = 0
    # HxWxCxN -> NxCxHxW; one copy of the uint8 block, made contiguous for fast row gathers
    images = np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1)), dtype=np.uint8)
    return images, y


_MI_MATRIX, _MI_COMPRESSED = 14, 15
#: the data types a v5 MAT-file may hold (miINT8 .. miUTF32; 8 and 11 are reserved)
_MI_TYPES = {1, 2, 3, 4, 5, 6, 7, 9, 10, 12, 13, 14, 15, 16, 17, 18}


def check_mat5(path: Path) -> None:
    """Refuse a MATLAB v5 file whose data elements claim more bytes than their parent holds.

    ``scipy.io.loadmat`` trusts those sizes and reads past its buffer (a segmentation fault, not
    an exception) on a damaged file, so the element tree is walked here first: tags only, plus
    the inflated bytes of compressed elements. Files that are not v5 are left to scipy.
    """
    import mmap

    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size < 128:
                return  # too short for v5: scipy says what is wrong
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as raw:
                if raw[126:128] not in (b"IM", b"MI"):
                    return  # not v5 (v4 or v7.3/HDF5): scipy's own checks apply
                view = memoryview(raw)
                try:
                    _walk_mat5(view, 128, len(raw), "<" if raw[126:128] == b"IM" else ">",
                               path, 0)
                finally:
                    view.release()
    except OSError as exc:
        raise DataError(f"{path}: cannot read .mat file ({exc.strerror or exc})") from None


def _walk_mat5(buf: memoryview, pos: int, end: int, order: str, path: Path, depth: int) -> None:
    import struct

    if depth > 16:
        raise DataError(f"{path}: not a readable .mat file (elements nested too deeply)")
    while pos < end:
        if end - pos < 8:
            raise DataError(f"{path}: not a readable .mat file (truncated element at byte {pos})")
        kind, nbytes = struct.unpack_from(order + "II", buf, pos)
        if kind & 0xFFFF not in _MI_TYPES:
            raise DataError(f"{path}: not a readable .mat file (unknown data type "
                            f"{kind & 0xFFFF} at byte {pos})")
        if kind >> 16:  # small data element: type and size share the first word
            if kind >> 16 > 4:
                raise DataError(f"{path}: not a readable .mat file (bad small element at byte "
                                f"{pos})")
            pos += 8
            continue
        stop = pos + 8 + nbytes
        if stop > end:
            raise DataError(f"{path}: not a readable .mat file (an element at byte {pos} claims "
                            f"{nbytes} bytes, {end - pos - 8} remain)")
        if kind == _MI_MATRIX:
            _check_matrix(buf, pos + 8, stop, order, path)
        elif kind == _MI_COMPRESSED:
            try:
                inner = zlib.decompress(buf[pos + 8:stop])
            except zlib.error as exc:
                raise DataError(f"{path}: not a readable .mat file ({exc})") from None
            _walk_mat5(memoryview(inner), 0, len(inner), order, path, depth + 1)
        pos = stop if kind == _MI_COMPRESSED else min(end, stop + (-nbytes % 8))


#: bytes per value of each numeric data type
_MI_SIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}


def _check_matrix(buf: memoryview, pos: int, end: int, order: str, path: Path) -> None:
    """A numeric or char array: flags, dimensions, name, real part (and imaginary part when
    flagged complex), each part exactly as long as the dimensions say. Other classes (cell,
    struct, object, sparse) hold nothing SVHN needs and are refused."""
    import struct

    parts = []
    while pos < end and len(parts) < 6:
        if end - pos < 8:
            break
        kind, nbytes = struct.unpack_from(order + "II", buf, pos)
        small = kind >> 16
        kind &= 0xFFFF
        size = small if small else nbytes
        start = pos + (4 if small else 8)
        if kind not in _MI_SIZE or start + size > end:
            raise DataError(f"{path}: not a readable .mat file (bad array part at byte {pos})")
        parts.append((kind, start, size))
        pos = pos + 8 if small else min(end, start + size + (-size % 8))
    bad = DataError(f"{path}: not a readable .mat file (malformed array)")
    if len(parts) < 4 or parts[0][0] != 6 or parts[0][2] != 8 or parts[1][0] != 5 \
            or parts[1][2] < 8 or parts[1][2] % 4:
        raise bad
    flags = struct.unpack_from(order + "I", buf, parts[0][1])[0]
    if not 4 <= flags & 0xFF <= 15 or flags & 0xFF == 5:  # char and numeric classes only
        raise bad
    dims = struct.unpack_from(f"{order}{parts[1][2] // 4}i", buf, parts[1][1])
    if min(dims) < 0:
        raise bad
    count = int(np.prod(dims, dtype=np.int64))
    values = parts[3:5] if flags & 0x800 else parts[3:4]  # complex: real and imaginary
    if len(values) != (2 if flags & 0x800 else 1):
        raise bad
    for kind, _, size in values:
        if size != count * _MI_SIZE[kind]:
            raise bad


def check_labels(path: Path, y: np.ndarray, num_classes: int) -> None:
    """DataError naming ``path`` when a label falls outside ``0..num_classes-1``."""
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{path}: labels must be in 0..{num_classes - 1}, "
                        f"got {int(y.min())}..{int(y.max())}")

