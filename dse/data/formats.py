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
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, OverflowError, MemoryError) as exc:
        raise DataError(f"{path}: not a readable {what} pickle "
                        f"({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
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


def check_labels(path: Path, y: np.ndarray, num_classes: int) -> None:
    """DataError naming ``path`` when a label falls outside ``0..num_classes-1``."""
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{path}: labels must be in 0..{num_classes - 1}, "
                        f"got {int(y.min())}..{int(y.max())}")

