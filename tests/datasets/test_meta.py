"""Split sizes and image shape from a dataset's headers, equal to what loading it gives."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from dse.data import load_dataset
from dse.data.meta import dataset_meta
from dse.data.pickle_outline import Opaque, Payload, pickle_outline
from tests.datasets import builders


def _same_as_loaded(spec: str, input_size: int | None = None) -> None:
    meta = dataset_meta(spec, input_size=input_size)
    splits = load_dataset(spec, seed=0, input_size=input_size)
    info = splits.info
    assert meta is not None
    assert meta.sizes == splits.sizes()
    assert (meta.num_classes, meta.channels, meta.input_size) == (
        info.num_classes, info.channels, info.input_size)


@pytest.mark.parametrize("n_train", [50, 53, 7])
def test_cifar10_meta_matches_the_loaded_splits(tmp_path, n_train):
    root = builders.make_cifar10(tmp_path / "c10", n_train=n_train, n_test=13)
    _same_as_loaded(f"cifar10:{root}")
    _same_as_loaded(f"cifar10:{root}", input_size=40)
    _same_as_loaded(f"cifar10:{tmp_path}/c10")


def test_cifar_meta_with_bytes_keys_cifar100_and_mnist(tmp_path):
    _same_as_loaded(f"cifar10:{builders.make_cifar10(tmp_path / 'b', bytes_keys=True)}")
    _same_as_loaded(f"cifar100:{builders.make_cifar100(tmp_path / 'c100')}")
    _same_as_loaded(f"mnist:{builders.make_mnist(tmp_path / 'm', n_train=61, gz=True)}")
    _same_as_loaded(f"fashion-mnist:{builders.make_mnist(tmp_path / 'f', gz=False, size=20)}")


def test_no_meta_where_it_cannot_be_read_cheaply(tmp_path, svhn_dir):
    assert dataset_meta("digits") is None                     # no reader: loading is cheap
    assert dataset_meta(f"svhn:{svhn_dir}") is None
    assert dataset_meta(f"cifar10:{tmp_path / 'missing'}") is None
    (tmp_path / "bad").mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (tmp_path / "bad" / name).write_bytes(b"not a pickle")
    assert dataset_meta(f"cifar10:{tmp_path / 'bad'}") is None


def test_outline_skips_large_payloads_and_runs_nothing(tmp_path):
    data = np.arange(3 * 5000, dtype=np.uint8).reshape(3, 5000)
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"labels": [3, 1, 2], "data": data, "name": "x"}, protocol=2))
    outline = pickle_outline(path)
    assert outline["labels"] == [3, 1, 2] and outline["name"] == "x"
    assert isinstance(outline["data"], Opaque)

    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("unpickled: code ran",))

    path.write_bytes(pickle.dumps({"x": Boom(), "blob": b"\0" * 10_000}, protocol=4))
    outline = pickle_outline(path)
    assert isinstance(outline["x"], Opaque) and outline["blob"] == Payload(10_000)


def test_outline_of_a_python2_style_pickle(tmp_path):
    """The real CIFAR files come from Python 2: keys and the pixel string as BINSTRING."""
    import struct

    payload = bytes(range(256)) * 40
    raw = (b"\x80\x02}q\x00(U\x06labelsq\x01]q\x02(K\x01K\x02K\x03eU\x04dataq\x03T"
           + struct.pack("<i", len(payload)) + payload + b"U\x01fI00\nu.")
    path = tmp_path / "py2"
    path.write_bytes(raw)
    assert pickle.loads(raw, encoding="latin1")["labels"] == [1, 2, 3]  # a valid pickle
    outline = pickle_outline(path)
    assert outline["labels"] == [1, 2, 3] and outline["data"] == Payload(len(payload))
    assert outline["f"] is False
