"""CIFAR-10 / CIFAR-100 from tiny python-pickle folders built in tmp_path."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from dse.data import load_dataset, split_labels, split_tensors
from dse.errors import DataError
from tests.datasets.builders import fake_images, fake_labels, make_cifar10


def _raw(ds, info):
    """Undo the normalisation: uint8 values as float."""
    X, _ = split_tensors(ds)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return (X * std + mean) * 255


def test_cifar10_shapes_sizes_and_names(cifar10_dir):
    s = load_dataset(f"cifar10:{cifar10_dir}", seed=0)
    info = s.info
    assert (info.name, info.num_classes, info.channels, info.input_size) == ("cifar10", 10, 3, 32)
    assert info.class_names[0] == "airplane" and info.class_names[9] == "truck"
    assert info.path == str(cifar10_dir)
    # 50 train images -> val = round(0.1 * 50) = 5, the 20 test images stay the test set
    assert s.sizes() == {"train": 45, "val": 5, "test": 20}
    x, y = s.test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 0


def test_cifar10_pixels_and_labels_in_file_order(cifar10_dir):
    s = load_dataset(f"cifar10:{cifar10_dir}")
    expected = fake_images(20, (3072,), seed=2).reshape(20, 3, 32, 32)  # channel-major rows
    assert torch.allclose(_raw(s.test, s.info), torch.from_numpy(expected).float(), atol=1e-3)
    assert split_labels(s.test).tolist() == fake_labels(20, 10).tolist()
    # train + val rows together are the five batches in order
    rows = torch.cat([s.train.indices, s.val.indices]).sort().values
    assert rows.tolist() == list(range(50))
    assert split_labels(s.val).tolist() == [int(fake_labels(50, 10)[i]) for i in s.val.indices]


def test_cifar10_normalised_on_train(cifar10_dir):
    s = load_dataset(f"cifar10:{cifar10_dir}")
    X, _ = split_tensors(s.train)
    assert torch.allclose(X.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(X.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert all(0.45 < m < 0.55 for m in s.info.mean)  # uniform random bytes -> ~0.5 on [0, 1]


def test_cifar10_val_is_stratified_and_seeded(cifar10_dir):
    a = load_dataset(f"cifar10:{cifar10_dir}", seed=3)
    b = load_dataset(f"cifar10:{cifar10_dir}", seed=3)
    c = load_dataset(f"cifar10:{cifar10_dir}", seed=4)
    assert torch.equal(a.val.indices, b.val.indices)
    assert not torch.equal(a.val.indices, c.val.indices)
    assert len(set(split_labels(a.val).tolist())) == 5  # 5 val items from 5 different classes
    assert not set(a.train.indices.tolist()) & set(a.val.indices.tolist())


def test_cifar10_bytes_keys_and_parent_folder(tmp_path):
    folder = make_cifar10(tmp_path / "cifar-10-batches-py", 30, 10, bytes_keys=True,
                          legacy_numpy=False)
    s = load_dataset(f"cifar10:{tmp_path}")  # the parent of the extracted folder
    assert s.sizes() == {"train": 27, "val": 3, "test": 10}
    assert s.info.path == str(folder) and s.info.class_names[1] == "automobile"


def test_cifar10_resize(cifar10_dir):
    s = load_dataset(f"cifar10:{cifar10_dir}", input_size=20)
    assert s.info.input_size == 20 and s.val[0][0].shape == (3, 20, 20)
    assert split_tensors(s.test)[0].shape == (20, 3, 20, 20)


def test_cifar10_without_meta_uses_builtin_names(cifar10_dir):
    (cifar10_dir / "batches.meta").unlink()
    assert load_dataset(f"cifar10:{cifar10_dir}").info.class_names[3] == "cat"


def test_cifar100_fine_labels(cifar100_dir):
    s = load_dataset(f"cifar100:{cifar100_dir}", seed=0)
    assert s.info.num_classes == 100 and s.info.class_names[42] == "fine42"
    assert s.sizes() == {"train": 180, "val": 20, "test": 100}
    assert split_labels(s.test).tolist() == list(range(100))  # fine, not coarse, labels
    assert split_tensors(s.train)[0].shape == (180, 3, 32, 32)


# ------------------------------------------------------------------ errors

def test_missing_batch(cifar10_dir):
    (cifar10_dir / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"no 'data_batch_3'; expected the extracted cifar-10-batches-py"):
        load_dataset(f"cifar10:{cifar10_dir}")


def test_cifar100_folder_given_as_cifar10(cifar100_dir):
    with pytest.raises(DataError, match=r"no 'data_batch_1'"):
        load_dataset(f"cifar10:{cifar100_dir}")


def test_truncated_batch(cifar10_dir):
    path = cifar10_dir / "data_batch_2"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=r"data_batch_2: not a readable CIFAR batch pickle"):
        load_dataset(f"cifar10:{cifar10_dir}")


def test_garbage_batch(cifar10_dir):
    (cifar10_dir / "test_batch").write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(DataError, match=r"test_batch: not a readable CIFAR batch pickle"):
        load_dataset(f"cifar10:{cifar10_dir}")


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_pickle_with_code_is_refused(cifar10_dir):
    (cifar10_dir / "data_batch_1").write_bytes(pickle.dumps({"data": _Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1: .*refusing to load (posix|os|nt)\.system"):
        load_dataset(f"cifar10:{cifar10_dir}")


def test_wrong_data_shape(cifar10_dir):
    bad = {"labels": [0, 1], "data": np.zeros((2, 100), np.uint8)}
    (cifar10_dir / "data_batch_4").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_4: expected a CIFAR batch with 'data' \[N, 3072\]"):
        load_dataset(f"cifar10:{cifar10_dir}")


def test_not_a_dict(cifar10_dir):
    (cifar10_dir / "data_batch_4").write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(DataError, match=r"data_batch_4: expected a pickled dict"):
        load_dataset(f"cifar10:{cifar10_dir}")


def test_label_count_mismatch(cifar10_dir):
    bad = {"labels": [0], "data": np.zeros((2, 3072), np.uint8)}
    (cifar10_dir / "data_batch_5").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_5: 2 images but 1 'labels'"):
        load_dataset(f"cifar10:{cifar10_dir}")


def test_label_out_of_range(cifar10_dir):
    bad = {"labels": [0, 10], "data": np.zeros((2, 3072), np.uint8)}
    (cifar10_dir / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match=r"test_batch: labels must be in 0..9, got 0..10"):
        load_dataset(f"cifar10:{cifar10_dir}")


def test_meta_with_wrong_class_count(cifar10_dir):
    (cifar10_dir / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a", "b"]}))
    with pytest.raises(DataError, match=r"batches.meta: 'label_names' lists 2 classes, expected 10"):
        load_dataset(f"cifar10:{cifar10_dir}")


def test_too_small_to_split(tmp_path):
    folder = make_cifar10(tmp_path / "c", n_train=6, n_test=2)
    folder_small = make_cifar10(tmp_path / "d", n_train=5, n_test=2)
    assert load_dataset(f"cifar10:{folder}").sizes()["val"] == 1  # 6 - round(5.4) = 1
    # 5 - round(4.5) = 0 (half rounds up, to train)
    with pytest.raises(DataError, match=r"the val split is empty"):
        load_dataset(f"cifar10:{folder_small}")
