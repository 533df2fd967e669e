"""One split of the feature cache: its tensors, and the frozen backbone's passes that fill them.

:class:`SplitFeatures` holds one split's features at the cached blocks, the backbone's logits and
the labels. They are computed by running the frozen backbone over the split in batches
(``torch.inference_mode``), either kept in memory (:func:`compute_split_features`) or written
batch by batch into the split's file (:func:`stream_split_features`, :mod:`dse.train.feature_file`)
and read back memory-mapped (:func:`load_split`). Trials read the rows of each minibatch (and
val/test in consecutive chunks) with ``os.preadv`` into fresh memory
(:class:`~dse.train.feature_file.RowFile`, :meth:`SplitFeatures.rows`), so a process holds about
one batch of features whatever the cache's size; touching the mapped tensors instead would leave
every page a trial read resident. :func:`probe_shapes` and :func:`probe_input` give the
per-sample shapes a cache is sized by, from one image. Which splits, blocks and rows, under
which key and in which folder, is :mod:`dse.train.features`'s part.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import Subset

from dse.data import split_batches, split_labels
from dse.errors import ConfigError
from dse.models.backbones import Backbone
from dse.train.cache_files import touch
from dse.train.feature_file import (ALIGN, FeatureWriter, RowFile, file_bytes, open_rows,
                                    read_feature_file)


@dataclass
class SplitFeatures:
    """One split's cached tensors (CPU unless moved)."""

    features: dict[int, torch.Tensor]  # block -> [N, C, H, W], cache dtype
    logits: torch.Tensor               # [N, K] float32, the backbone's own output
    labels: torch.Tensor               # [N] int64 ground truth
    indices: torch.Tensor              # [N] rows of the split kept (all unless max_samples)
    #: block -> reader of its rows from the file (on-disk caches): what :meth:`rows` uses
    readers: dict[int, RowFile] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def rows(self, block: int, idx: torch.Tensor) -> torch.Tensor:
        """Features of ``block`` at rows ``idx``, a new tensor in the cache dtype: read from
        the file when there is one (bounded memory), else indexed in memory."""
        reader = self.readers.get(block)
        if reader is not None:
            return reader.rows(idx)
        return self.features[block].index_select(0, idx.to(self.features[block].device))

    @property
    def nbytes(self) -> int:
        tensors = [*self.features.values(), self.logits, self.labels, self.indices]
        return sum(t.numel() * t.element_size() for t in tensors)


def file_specs(shapes: dict[int, tuple[int, ...]], num_classes: int, dtype: torch.dtype
               ) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    """The tensors of one split's file: (name, dtype, per-row shape)."""
    return [*((f"block{b}", dtype, tuple(s)) for b, s in sorted(shapes.items())),
            ("logits", torch.float32, (num_classes,)), ("labels", torch.int64, ()),
            ("indices", torch.int64, ())]


def row_bytes(shapes: dict[int, tuple[int, ...]], num_classes: int, dtype: torch.dtype
               ) -> tuple[int, int]:
    """(bytes per cached sample, bytes per split file at most besides its rows)."""
    specs = file_specs(shapes, num_classes, dtype)
    per_sample = sum(int(torch.Size(s).numel()) * torch.empty((), dtype=d).element_size()
                     for _, d, s in specs)
    return per_sample, file_bytes(specs, 0) + ALIGN * len(specs)  # header + alignment


def _batches(backbone: Backbone, ds, blocks: Sequence[int], rows: torch.Tensor, *,
             dtype: torch.dtype, batch_size: int, device: torch.device | str
             ) -> Iterator[tuple[int, dict[int, torch.Tensor], torch.Tensor, torch.Tensor]]:
    """``(first row, {block: features in dtype}, float32 logits, labels)`` per batch, on CPU,
    in the order of ``rows``; checks that order against the split's labels as it goes."""
    backbone.eval().to(device)
    n = int(rows.numel())
    source = ds if n == len(ds) else Subset(ds, rows.tolist())
    expected = split_labels(ds)[rows]
    start = 0
    for x, y in split_batches(source, batch_size, device):
        feats, z = _forward(backbone, x, blocks, dtype)
        y = y.cpu()
        stop = start + x.shape[0]
        if not torch.equal(y, expected[start:stop]):  # split_batches must keep the order
            raise RuntimeError("feature cache: batch order does not match the split's labels")
        yield start, feats, z, y
        start = stop
    if start == 0:
        raise ConfigError("cannot cache features of an empty split")


@torch.inference_mode()  # not a ``with`` around the generator's yield: it would leak out
def _forward(backbone: Backbone, x: torch.Tensor, blocks: Sequence[int], dtype: torch.dtype
             ) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    outs = backbone.features(x)
    return {b: outs[b].to("cpu", dtype) for b in blocks}, backbone.head(outs[-1]).float().cpu()


def compute_split_features(backbone: Backbone, ds, blocks: Sequence[int], rows: torch.Tensor, *,
                           dtype: torch.dtype, batch_size: int = 256,
                           device: torch.device | str = "cpu",
                           progress: Callable[[int], None] | None = None) -> SplitFeatures:
    """Run the frozen backbone over ``ds[rows]`` in batches and keep features at ``blocks`` in
    memory (``cache_dir=False``; a cache on disk is streamed by :func:`stream_split_features`)."""
    n = int(rows.numel())
    feats: dict[int, torch.Tensor] = {}
    logits: torch.Tensor | None = None
    labels = torch.empty(n, dtype=torch.int64)
    for start, outs, z, y in _batches(backbone, ds, blocks, rows, dtype=dtype,
                                      batch_size=batch_size, device=device):
        stop = start + y.shape[0]
        if logits is None:
            logits = torch.empty((n, z.shape[1]), dtype=torch.float32)
            feats = {b: torch.empty((n, *outs[b].shape[1:]), dtype=dtype) for b in blocks}
        for b in blocks:
            feats[b][start:stop] = outs[b]
        logits[start:stop] = z
        labels[start:stop] = y
        if progress is not None:
            progress(y.shape[0])
    return SplitFeatures(feats, logits, labels, rows.clone())


def stream_split_features(backbone: Backbone, ds, blocks: Sequence[int], rows: torch.Tensor,
                          path: Path, *, shapes: dict[int, tuple[int, ...]], num_classes: int,
                          dtype: torch.dtype, batch_size: int = 256,
                          device: torch.device | str = "cpu",
                          progress: Callable[[int], None] | None = None) -> SplitFeatures:
    """Like :func:`compute_split_features`, but each batch goes straight into the split's file
    at ``path`` (peak memory: one batch); returns the file read back memory-mapped."""
    specs = file_specs({b: shapes[b] for b in blocks}, num_classes, dtype)
    with FeatureWriter(path, specs, int(rows.numel())) as out:
        out.write("indices", 0, rows.to(torch.int64))
        for start, outs, z, y in _batches(backbone, ds, blocks, rows, dtype=dtype,
                                          batch_size=batch_size, device=device):
            for b in blocks:
                out.write(f"block{b}", start, outs[b])
            out.write("logits", start, z)
            out.write("labels", start, y)
            if progress is not None:
                progress(y.shape[0])
        out.commit()
    loaded = load_split(path, blocks)
    if loaded is None:
        raise RuntimeError(f"feature cache: {path} unreadable right after writing it")
    return loaded


def load_split(path: Path, blocks: Sequence[int]) -> SplitFeatures | None:
    """A cached split, or None when the file is unreadable (it is then recomputed)."""
    try:
        raw = read_feature_file(path)
        feats = {b: raw[f"block{b}"] for b in blocks}
        readers = open_rows(path, [f"block{b}" for b in blocks])
        # the small tensors in memory (KiB to MiB); the features stay in the file
        split = SplitFeatures(feats, raw["logits"].clone(), raw["labels"].clone(),
                              raw["indices"].clone(), {b: readers[f"block{b}"] for b in blocks})
    except (ValueError, KeyError, OSError):
        return None
    touch(path)  # its time is its last use: `dse cache prune --keep` keeps the recently used
    return split


def probe_shapes(backbone: Backbone, ds, blocks: Sequence[int], device: torch.device | str
                 ) -> tuple[dict[int, tuple[int, ...]], int]:
    """Per-sample feature shapes at ``blocks`` and the class count, from one image."""
    return probe_input(backbone, ds[0][0].unsqueeze(0), blocks, device)


@torch.inference_mode()
def probe_input(backbone: Backbone, x: torch.Tensor, blocks: Sequence[int],
                device: torch.device | str) -> tuple[dict[int, tuple[int, ...]], int]:
    """Per-sample feature shapes at ``blocks`` and the class count, from the batch ``x`` (the
    shapes depend on the input's shape only: zeros of the data's shape do)."""
    backbone.eval().to(device)
    outs = backbone.features(x.to(device))
    return {b: tuple(outs[b].shape[1:]) for b in blocks}, int(backbone.head(outs[-1]).shape[1])
