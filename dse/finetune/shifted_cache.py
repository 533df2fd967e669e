"""The frozen backbone's features of *shifted* images, computed once per (shift, seed, split)
and kept on disk, so every front configuration of a study (and every later ``dse report`` or
``dse finetune``) probes its exits from the same file instead of re-running the backbone.

Fine-tuning reads the inputs of every exit classifier: the outputs of the exit blocks and of
the last block (the backbone's head reads it). Which blocks a configuration uses varies across
a study, so a file holds every block's output (our choice: one file serves the whole study;
on digits that is 1.2 MiB per 1,000 images). A split's images are shifted batch by batch with a
seed derived from (seed, split, batch) (:func:`batch_seed`), so the same key always holds the
same images.

Files live beside the study's feature cache (``<dse cache>/features/``, same ``.feat`` format,
:mod:`dse.train.feature_file`; ``dse cache prune`` removes them like any feature file) under a
sha256 key of (backbone weights, dataset, split, labels, shift, seed, dtype). A shift given as
``module:fn`` is user code that can change under the same name, so its features stay in memory
only. Values are float16 like the search's feature cache (the proxy trains the exits from
float16 features too); classifiers read them as float32. A cached block comes back as a
:class:`~dse.train.feature_file.RowFile`: fine-tuning's minibatches (``x[idx]``) and evaluation
chunks (``x[i:j]``) read just those rows from the file into fresh memory, as the search's trials
do, so a process holds about one batch of features whatever the split's size (a mapped block
would keep every page it ever touched resident). Memory-only features stay tensors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from dse.cache import cache_dir, digest, file_lock, state_digest
from dse.data import split_batches, split_labels
from dse.finetune.shifts import apply_shift
from dse.models.backbones import Backbone
from dse.plugins import is_code_name
from dse.train.cache_files import touch
from dse.train.feature_file import SUFFIX, FeatureWriter, RowFile, open_rows, read_header

FORMAT_VERSION = 1
SHIFT_BATCH = 1024
DTYPE = torch.float16
Log = Callable[[str], None]


def batch_seed(seed: int, split_index: int, batch_index: int) -> int:
    """Distinct, reproducible seeds for every (split, batch): shifts differ across splits."""
    return (int(seed) * 1_000_003 + split_index * 10_007 + batch_index) % (2 ** 63)


def shifted_key(weights: str, data, split: str, shift: str | None, seed: int) -> str:
    """The on-disk key of one shifted split's features (sha256, hex)."""
    info = data.info
    labels = split_labels(data.split(split))
    return digest(FORMAT_VERSION, "shifted", weights, info.name, info.path, info.input_size,
                  info.channels, info.mean, info.std, split, len(labels),
                  digest(labels.tolist()), shift, int(seed), str(DTYPE), length=64)


@torch.inference_mode()
def _batches(backbone: Backbone, data, split: str, split_index: int, shift: str | None,
             seed: int, device: torch.device):
    """``(start, [block outputs], labels)`` per batch of shifted images, on CPU."""
    info = data.info
    start = 0
    backbone.eval().to(device)
    for k, (x, y) in enumerate(split_batches(data.split(split), SHIFT_BATCH)):
        if shift is not None:
            x = apply_shift(shift, x, seed=batch_seed(seed, split_index, k), mean=info.mean,
                            std=info.std)
        outs = backbone.features(x.to(device))
        yield start, [o.to("cpu", DTYPE) for o in outs], y.cpu()
        start += int(y.shape[0])


def _in_memory(backbone, data, split, split_index, shift, seed, device):
    feats: list[list[torch.Tensor]] = []
    labels = []
    for _, outs, y in _batches(backbone, data, split, split_index, shift, seed, device):
        feats.append(outs)
        labels.append(y)
    blocks = {b: torch.cat([f[b] for f in feats]) for b in range(len(feats[0]))}
    return blocks, torch.cat(labels)


def _to_file(path: Path, backbone, data, split, split_index, shift, seed, device):
    rows = len(data.split(split))
    writer = None
    try:
        for start, outs, y in _batches(backbone, data, split, split_index, shift, seed, device):
            if writer is None:  # the shapes are known from the first batch
                specs = [*((f"block{b}", DTYPE, tuple(o.shape[1:])) for b, o in enumerate(outs)),
                         ("labels", torch.int64, ())]
                writer = FeatureWriter(path, specs, rows)
            for b, o in enumerate(outs):
                writer.write(f"block{b}", start, o)
            writer.write("labels", start, y)
        if writer is not None:
            writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


def _read(path: Path) -> tuple[dict[int, RowFile], torch.Tensor] | None:
    """Readers of every block's rows, and the labels in memory; None when unreadable."""
    try:
        names = [e["name"] for e in read_header(path)]
        if "labels" not in names or not any(n.startswith("block") for n in names):
            return None
        readers = open_rows(path, names)
    except (ValueError, OSError, KeyError):
        return None
    labels = readers.pop("labels")
    touch(path)
    return {int(k[5:]): r for k, r in readers.items()}, labels.slice(0, len(labels))


def shifted_split(backbone: Backbone, data, split: str, split_index: int, shift: str | None,
                  seed: int, *, device: torch.device | str = "cpu",
                  folder: Path | None | bool = None, log: Log | None = None
                  ) -> tuple[dict[int, torch.Tensor | RowFile], torch.Tensor]:
    """``({block: [N, C, H, W] float16}, labels [N])``: every block's output on the shifted
    ``split`` (``shift=None``: the original images); from disk, each block a
    :class:`~dse.train.feature_file.RowFile` that reads the rows it is indexed with.

    ``folder``: the cache folder (None: ``<dse cache>/features``; False: memory only).
    """
    device = torch.device(device)
    if folder is False or (shift is not None and is_code_name(shift)):
        return _in_memory(backbone, data, split, split_index, shift, seed, device)
    folder = Path(folder) if folder else cache_dir("features")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{shifted_key(state_digest(backbone), data, split, shift, seed)}{SUFFIX}"
    got = _read(path) if path.is_file() else None
    if got is not None:
        return got
    with file_lock(path):
        got = _read(path) if path.is_file() else None
        if got is None:
            if log is not None:
                log(f"features of the {split} split under shift {shift or 'none'} "
                    f"(seed {seed}): computing once, cached in {folder}")
            _to_file(path, backbone, data, split, split_index, shift, seed, device)
            got = _read(path)
    if got is None:
        raise RuntimeError(f"shifted feature cache: {path} unreadable right after writing it")
    return got


def split_index_of(split: str, splits: Sequence[str] = ("train", "val", "test")) -> int:
    """The split's index in the seed derivation (train 0, val 1, test 2), whichever splits a
    caller asks for, so the test split is shifted the same alone or with the others."""
    return list(splits).index(split)
