"""imagefolder: class-per-folder PNGs written with Pillow, read lazily."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dse.data import ImageFolderDataset, load_dataset, split_labels, split_tensors
from dse.errors import DataError
from tests.datasets.builders import fake_images, make_imagefolder


def test_flat_layout_70_15_15(imagefolder_dir):
    s = load_dataset(f"imagefolder:{imagefolder_dir}", seed=0)
    info = s.info
    assert (info.name, info.num_classes, info.channels, info.input_size) == ("imagefolder", 3, 3, 12)
    assert info.class_names == ("cat", "dog", "emu")
    # 30 images: round(0.7*30)=21, round(0.85*30)=round(25.5)=26 -> 21 / 5 / 4
    assert s.sizes() == {"train": 21, "val": 5, "test": 4}
    assert isinstance(s.train, ImageFolderDataset)
    files = [set(s.split(k).files) for k in ("train", "val", "test")]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert sum(map(len, files)) == 30
    for k in ("train", "val", "test"):  # stratified: every class in every split
        assert sorted(set(split_labels(s.split(k)).tolist())) == [0, 1, 2]


def test_pixels_labels_and_normalisation(imagefolder_dir):
    s = load_dataset(f"imagefolder:{imagefolder_dir}", seed=0)
    where = {f: (k, i) for k in ("train", "val", "test") for i, f in enumerate(s.split(k).files)}
    split, i = where[str(imagefolder_dir / "cat" / "000.png")]
    x, label = s.split(split)[i]
    assert label == 0
    mean = torch.tensor(s.info.mean).view(3, 1, 1)
    std = torch.tensor(s.info.std).view(3, 1, 1)
    expected = torch.from_numpy(fake_images(10, (12, 12, 3), 9)[0]).permute(2, 0, 1).float()
    assert torch.allclose((x * std + mean) * 255, expected, atol=1e-3)
    X, y = split_tensors(s.train)  # 21 < STATS_SAMPLE: stats are exactly the train split's
    assert X.shape == (21, 3, 12, 12) and y.dtype == torch.int64
    assert torch.allclose(X.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(X.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_seeded_splits(imagefolder_dir):
    a, b, c = (load_dataset(f"imagefolder:{imagefolder_dir}", seed=k) for k in (0, 0, 1))
    assert a.val.files == b.val.files and a.test.files == b.test.files
    assert a.val.files != c.val.files


def test_grayscale_and_resize(tmp_path):
    root = make_imagefolder(tmp_path, ("a", "b"), per_class=7, size=(10, 6), mode="L")
    s = load_dataset(f"imagefolder:{root}")
    assert s.info.channels == 1 and s.info.input_size == 6  # shorter side of a 10x6 image
    assert s.val[0][0].shape == (1, 6, 6)
    s16 = load_dataset(f"imagefolder:{root}", input_size=16)
    assert s16.info.input_size == 16 and split_tensors(s16.test)[0].shape[1:] == (1, 16, 16)


def test_mixed_modes_follow_the_first_image(imagefolder_dir):
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(imagefolder_dir / "dog" / "gray.png")
    s = load_dataset(f"imagefolder:{imagefolder_dir}")
    X, _ = split_tensors(s.train)
    assert s.info.channels == 3 and X.shape[1:] == (3, 12, 12)


def test_split_folders(tmp_path):
    make_imagefolder(tmp_path, ("x", "y"), per_class=4, splits=("train", "val", "test"))
    s = load_dataset(f"imagefolder:{tmp_path}")
    assert s.sizes() == {"train": 8, "val": 8, "test": 8}
    assert all("/val/" in f.replace("\\", "/") for f in s.val.files)
    assert load_dataset(f"imagefolder:{tmp_path}", seed=9).val.files == s.val.files  # no seed


def test_train_folder_only_carves_val_and_test(tmp_path):
    make_imagefolder(tmp_path, ("x", "y"), per_class=10, splits=("train",))
    s = load_dataset(f"imagefolder:{tmp_path}")
    assert s.sizes() == {"train": 14, "val": 3, "test": 3}


def test_train_and_test_folders_carve_val(tmp_path):
    make_imagefolder(tmp_path, ("x", "y"), per_class=10, splits=("train", "test"))
    s = load_dataset(f"imagefolder:{tmp_path}")
    assert s.sizes() == {"train": 18, "val": 2, "test": 20}
    assert set(s.val.files) <= {str(p) for p in (tmp_path / "train").rglob("*.png")}


def test_val_classes_may_be_a_subset(tmp_path):
    make_imagefolder(tmp_path, ("x", "y"), per_class=4, splits=("train", "test"))
    make_imagefolder(tmp_path / "val", ("y",), per_class=2)
    s = load_dataset(f"imagefolder:{tmp_path}")
    assert split_labels(s.val).tolist() == [1, 1]


def test_dataloader(imagefolder_dir):
    s = load_dataset(f"imagefolder:{imagefolder_dir}")
    X, y = next(iter(DataLoader(s.train, batch_size=8)))
    assert X.shape == (8, 3, 12, 12) and torch.equal(X, split_tensors(s.train)[0][:8])


# ------------------------------------------------------------------ errors

def test_no_class_folders(tmp_path):
    with pytest.raises(DataError, match=rf"^{tmp_path}: no class subfolders; expected a folder of class"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_no_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"class folder holds no images"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_empty_class_folder(imagefolder_dir):
    (imagefolder_dir / "zebra").mkdir()
    with pytest.raises(DataError, match=r"zebra: class folder holds no images"):
        load_dataset(f"imagefolder:{imagefolder_dir}")


def test_unknown_class_in_val(tmp_path):
    make_imagefolder(tmp_path, ("x", "y"), per_class=4, splits=("train",))
    make_imagefolder(tmp_path / "val", ("x", "z"), per_class=2)
    with pytest.raises(DataError, match=r"val: class folders z do not exist in train/"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_too_few_images(tmp_path):
    make_imagefolder(tmp_path, ("x",), per_class=2)  # 70/15/15 of 2 -> 1 / 1 / 0
    with pytest.raises(DataError, match=r"the test split is empty"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_corrupt_image(imagefolder_dir):
    for f in (imagefolder_dir / "cat").iterdir():  # some are in train: read for the stats
        f.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"cat/0\d\d.png: not a readable image"):
        load_dataset(f"imagefolder:{imagefolder_dir}")


def test_corrupt_image_found_lazily(imagefolder_dir):
    s = load_dataset(f"imagefolder:{imagefolder_dir}", seed=0)
    Path(s.test.files[0]).write_bytes(b"garbage")  # after loading: read on access
    with pytest.raises(DataError, match=r"not a readable image"):
        s.test[0]
