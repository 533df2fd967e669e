"""``imagefolder``: one subfolder of images per class, read lazily with Pillow.

Layouts (class names are the sorted subfolder names, like torchvision's ``ImageFolder``):

- ``ROOT/<class>/*.png``: split stratified 70/15/15 by seed.
- ``ROOT/train/<class>/...`` with optional ``ROOT/val/`` and ``ROOT/test/``: those are used as
  given; a missing one is carved from train, stratified by seed (10% of train when only one is
  missing, 70/15/15 of train when both are).

Every image is converted to one mode, chosen from the first training image (grayscale modes ->
``L``, 1 channel; anything else -> ``RGB``), its shorter side resized to ``input_size``
(bilinear, torch, aspect ratio kept) and the centre ``input_size`` x ``input_size`` cropped
(the usual ImageNet evaluation transform, without its 0.875 crop ratio). Without
``input_size`` the first training image's shorter side is used. Normalisation statistics come from at most ``STATS_SAMPLE`` training
images drawn with the seed, so loading a large folder does not decode all of it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dse.data.base import BATCH, DatasetInfo, DataSplits, Normalizer, stack_batches
from dse.data.registry import DATASETS, require_folder
from dse.data.splits import VAL_FRACTION, seeded_rng, stratified_split
from dse.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm",
                    ".tif", ".tiff", ".webp")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
#: Training images decoded to estimate the per-channel mean and std.
STATS_SAMPLE = 1000
Part = tuple[list[str], np.ndarray]  # (files, labels) of one split
EXPECTED = "a folder of class subfolders of images (or train/, val/, test/ folders holding them)"


def read_image(path: str, mode: str) -> torch.Tensor:
    """uint8 [C,H,W] of one image file in PIL ``mode`` (``L`` or ``RGB``)."""
    from PIL import Image  # imported here: only imagefolder needs Pillow

    try:
        with Image.open(path) as im:
            arr = np.array(im.convert(mode), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:  # UnidentifiedImageError is an OSError
        raise DataError(f"{path}: not a readable image ({exc})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def short_side_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """float32 [C,size,size]: ``img`` (uint8 [C,H,W]) with its shorter side resized to ``size``
    (bilinear, antialiased, aspect ratio kept), then the centre square cut out."""
    _, h, w = img.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = img[None].to(torch.float32)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False,
                          antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[0, :, top:top + size, left:left + size]


class ImageFolderDataset(Dataset):
    """A split of image files; decodes, resizes and normalises each item when asked."""

    def __init__(self, files: Sequence[str], labels: np.ndarray, mode: str,
                 normalize: Normalizer) -> None:
        self.files = list(files)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.mode = mode
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = short_side_crop(read_image(self.files[i], self.mode), self.normalize.size)
        return self.normalize(img[None])[0], int(self.labels[i])

    def renormalized(self, normalize: Normalizer) -> ImageFolderDataset:
        """The same files under another normalisation."""
        return ImageFolderDataset(self.files, self.labels.numpy(), self.mode, normalize)

    def batches(self, batch_size: int = BATCH, device: torch.device | str | None = None,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(X float32 [B,C,S,S], y int64 [B])`` in order."""
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            x = torch.stack([self[i][0] for i in range(start, stop)])
            y = self.labels[start:stop]
            yield (x.to(device), y.to(device)) if device is not None else (x, y)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything as ``(X float32 [N,C,S,S], y int64 [N])`` (decodes every file)."""
        return stack_batches(self, len(self)), self.labels


def scan(folder: Path, classes: Sequence[str] | None = None,
         ) -> tuple[list[str], list[str], np.ndarray]:
    """``(classes, files, labels)`` of a class-per-subfolder tree, in sorted order.

    With ``classes`` given (the train split's), subfolders must be among them and may be absent.
    """
    found = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    is_train = classes is None  # every train class needs images; val/test may lack some
    if classes is None:
        if not found:
            raise DataError(f"{folder}: no class subfolders; expected {EXPECTED}")
        classes = found
    elif set(found) - set(classes):
        extra = ", ".join(sorted(set(found) - set(classes)))
        raise DataError(f"{folder}: class folders {extra} do not exist in train/; expected a "
                        f"subset of {', '.join(classes)}")
    files: list[str] = []
    labels: list[int] = []
    for k, cls in enumerate(classes):
        if not (folder / cls).is_dir():
            continue
        images = sorted(str(p) for p in (folder / cls).rglob("*")
                        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
                        and p.is_file())
        if not images and is_train:
            raise DataError(f"{folder / cls}: class folder holds no images "
                            f"({', '.join(IMAGE_EXTENSIONS)})")
        files += images
        labels += [k] * len(images)
    if not files:
        raise DataError(f"{folder}: no images in its class subfolders; expected {EXPECTED}")
    return list(classes), files, np.asarray(labels, dtype=np.int64)


def _gather(files: list[str], labels: np.ndarray, idx: np.ndarray) -> Part:
    return [files[i] for i in idx], labels[idx]


def _split_layout(root: Path, seed: int) -> tuple[list[str], dict[str, Part]]:
    """Class names and ``{split: (files, labels)}`` for either layout."""
    if not (root / "train").is_dir():
        classes, files, labels = scan(root)
        parts = stratified_split(labels, (0.7, 0.15, 0.15), seed)
        names = ("train", "val", "test")
        return classes, {s: _gather(files, labels, p) for s, p in zip(names, parts)}
    classes, files, labels = scan(root / "train")
    given = {s: scan(root / s, classes)[1:] for s in ("val", "test") if (root / s).is_dir()}
    missing = [s for s in ("val", "test") if s not in given]
    if not missing:
        return classes, {"train": (files, labels), **given}
    if len(missing) == 1:
        fractions: tuple[float, ...] = (1 - VAL_FRACTION, VAL_FRACTION)
    else:
        fractions = (0.7, 0.15, 0.15)
    parts = stratified_split(labels, fractions, seed)
    out = {"train": _gather(files, labels, parts[0]), **given}
    for split, p in zip(missing, parts[1:]):
        out[split] = _gather(files, labels, p)
    return classes, out


def _stats(files: list[str], mode: str, size: int, seed: int,
           ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean / std in [0, 1] over up to ``STATS_SAMPLE`` train images at ``size``."""
    channels = 1 if mode == "L" else 3
    pick = seeded_rng(seed).permutation(len(files))[:STATS_SAMPLE]
    to_unit = Normalizer(1 / 255, (0.0,) * channels, (1.0,) * channels, size)
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for i in np.sort(pick):
        img = short_side_crop(read_image(files[i], mode), size)
        x = to_unit(img[None])[0].to(torch.float64).reshape(channels, -1)
        total += x.mean(dim=1)
        total_sq += (x * x).mean(dim=1)
    mean = total / len(pick)
    std = (total_sq / len(pick) - mean * mean).clamp_min(0.0).sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


@DATASETS.register("imagefolder", "folder")
def load_imagefolder(path: Path | None, *, seed: int, input_size: int | None) -> DataSplits:
    """Class-per-folder images under ``path`` (see the module docstring for the layouts)."""
    from PIL import Image

    root = require_folder("imagefolder", path, EXPECTED)
    classes, parts = _split_layout(root, seed)
    for split, (files, _) in parts.items():
        if not files:
            raise DataError(f"{root}: the {split} split is empty; too few images to split "
                            f"into train, val and test")
    first = parts["train"][0][0]
    try:
        with Image.open(first) as im:
            mode = "L" if im.mode in GRAY_MODES else "RGB"
            width, height = im.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{first}: not a readable image ({exc})") from None
    size = int(input_size) if input_size is not None else min(width, height)
    mean, std = _stats(parts["train"][0], mode, size, seed)
    norm = Normalizer(scale=1 / 255, mean=mean, std=std, size=size)
    built = {s: ImageFolderDataset(f, y, mode, norm) for s, (f, y) in parts.items()}
    info = DatasetInfo(name="imagefolder", num_classes=len(classes),
                       channels=1 if mode == "L" else 3, input_size=size,
                       class_names=tuple(classes), mean=mean, std=std, path=str(root))
    return DataSplits(info=info, train=built["train"], val=built["val"], test=built["test"])
