"""MNIST / Fashion-MNIST from tiny IDX files (gzipped and raw) built in tmp_path."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from dse.data import load_dataset, split_labels, split_tensors
from dse.errors import DataError
from tests.datasets.builders import fake_images, fake_labels, make_mnist, write_idx


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_loads_gz_and_raw(tmp_path, gz, name):
    folder = make_mnist(tmp_path, n_train=60, n_test=20, gz=gz)
    s = load_dataset(f"{name}:{folder}", seed=0)
    info = s.info
    assert (info.name, info.num_classes, info.channels, info.input_size) == (name, 10, 1, 28)
    assert s.sizes() == {"train": 54, "val": 6, "test": 20}
    X, y = split_tensors(s.test)
    assert X.shape == (20, 1, 28, 28) and y.tolist() == fake_labels(20, 10).tolist()
    raw = (X * info.std[0] + info.mean[0]) * 255
    assert torch.allclose(raw[:, 0], torch.from_numpy(fake_images(20, (28, 28), 6)).float(), atol=1e-3)
    Xt, _ = split_tensors(s.train)
    assert abs(float(Xt.mean())) < 1e-4 and abs(float(Xt.std(unbiased=False)) - 1) < 1e-4


def test_class_names(mnist_dir):
    assert load_dataset(f"mnist:{mnist_dir}").info.class_names[7] == "7"
    assert load_dataset(f"fashion-mnist:{mnist_dir}").info.class_names[9] == "Ankle boot"


def test_val_is_seeded_and_stratified(mnist_dir):
    a, b = (load_dataset(f"mnist:{mnist_dir}", seed=s) for s in (11, 12))
    assert not torch.equal(a.val.indices, b.val.indices)
    assert torch.equal(a.val.indices, load_dataset(f"mnist:{mnist_dir}", seed=11).val.indices)
    assert len(set(split_labels(a.val).tolist())) == 6  # 6 val images, 6 different classes
    assert not set(a.train.indices.tolist()) & set(a.val.indices.tolist())


def test_resize_to_32(mnist_dir):
    s = load_dataset(f"mnist:{mnist_dir}", input_size=32)
    assert s.info.input_size == 32 and s.train[0][0].shape == (1, 32, 32)


def test_dotted_names_in_raw_subfolder(tmp_path):
    make_mnist(tmp_path / "raw", n_train=30, n_test=10, gz=False)
    for f in (tmp_path / "raw").iterdir():  # train-images-idx3-ubyte -> train-images.idx3-ubyte
        f.rename(f.with_name(f.name.replace("-idx", ".idx")))
    assert load_dataset(f"mnist:{tmp_path}").sizes() == {"train": 27, "val": 3, "test": 10}


# ------------------------------------------------------------------ errors

def test_missing_file(mnist_dir):
    (mnist_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"no 't10k-labels-idx1-ubyte\[.gz\]'; expected the mnist IDX files"):
        load_dataset(f"mnist:{mnist_dir}")


def test_wrong_magic(mnist_dir):
    # a labels file where the images file should be
    labels = (mnist_dir / "train-labels-idx1-ubyte.gz").read_bytes()
    (mnist_dir / "train-images-idx3-ubyte.gz").write_bytes(labels)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: IDX magic 0x00000801, "
                                        r"expected 0x00000803 \(images, uint8\)"):
        load_dataset(f"mnist:{mnist_dir}")


def test_truncated_data(tmp_path):
    folder = make_mnist(tmp_path, 30, 10, gz=False)
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: IDX images of shape \(10, 28, 28\) "
                                        r"needs 7840 data bytes, found 7835"):
        load_dataset(f"mnist:{folder}")


def test_truncated_header(tmp_path):
    folder = make_mnist(tmp_path, 30, 10, gz=False)
    (folder / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match=r"truncated IDX header"):
        load_dataset(f"mnist:{folder}")
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x00")
    with pytest.raises(DataError, match=r"truncated IDX file \(1 bytes\)"):
        load_dataset(f"mnist:{folder}")


def test_corrupt_gzip(mnist_dir):
    path = mnist_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])  # cut inside the deflate stream
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: cannot read IDX file"):
        load_dataset(f"mnist:{mnist_dir}")
    path.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: cannot read IDX file"):
        load_dataset(f"mnist:{mnist_dir}")


def test_count_mismatch(mnist_dir):
    write_idx(mnist_dir / "train-labels-idx1-ubyte", fake_labels(59, 10), gz=True)
    with pytest.raises(DataError, match=r"59 labels for 60 images"):
        load_dataset(f"mnist:{mnist_dir}")


def test_label_out_of_range(mnist_dir):
    write_idx(mnist_dir / "t10k-labels-idx1-ubyte", np.full(20, 12), gz=True)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: labels must be in 0..9, got 12..12"):
        load_dataset(f"mnist:{mnist_dir}")


def test_svhn_folder_given_as_mnist(svhn_dir):
    with pytest.raises(DataError, match=rf"^{svhn_dir}: no 'train-images-idx3-ubyte\[.gz\]'"):
        load_dataset(f"mnist:{svhn_dir}")


def test_gzip_of_wrong_content(mnist_dir):
    (mnist_dir / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"PK\x03\x04zipfile"))
    with pytest.raises(DataError, match=r"IDX magic 0x504b0304, expected 0x00000803"):
        load_dataset(f"mnist:{mnist_dir}")
