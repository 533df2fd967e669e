"""The search's proxy-trained exits, kept on disk so nothing trains them twice.

A trial's exit branches are a pure function of the frozen backbone's cached training features
and the proxy-training arguments (:func:`dse.train.proxy.train_design`: blocks, branch, loss,
labels, steps, learning rate, optimizer, batch size, weight decay, seed, normalised exit costs).
The search keeps every structure it trains as a small file (the branches' state_dict, the losses
and the training seconds) under the dse cache's ``exits/`` folder, named by a digest of exactly
those inputs and of the training split's feature-cache key (which identifies the backbone's
weights, the dataset, its normalisation, the sample subset and the feature dtype). Fine-tuning
subsets (``dse report``, ``dse search``), ``dse train --init proxy`` and a resumed study load
the file instead of re-training; when it is missing, unreadable or was made by other inputs,
they re-train (the same seeded training, so the same weights: ``tests/train/test_saved_exits.py``).

Our choice: the files live in the dse cache, not beside the study, because they are found from
a configuration alone (any command, any output folder) and are shared by every study on the same
backbone and data. A digits exit file is a few to a few tens of KiB; a feature source without an
on-disk key (memory-only or streamed features) keeps nothing.
"""
from __future__ import annotations

import pickle
import zipfile
from typing import Sequence

import torch

from dse.cache import atomic_torch_save, cache_dir, digest
from dse.design import Design
from dse.train.proxy import FeatureSource, ProxyResult, build_branches, train_design

#: bump when the file layout or what training depends on changes
FORMAT_VERSION = 1
SUFFIX = ".exits.pt"


def exits_key(source: FeatureSource, design: Design, blocks: Sequence[int],
              num_classes: int | None, seed: int,
              exit_costs: Sequence[float] | None) -> str | None:
    """The file key of a proxy training (sha256 hex), or None when ``source`` has no on-disk
    key for its training split (nothing is kept then)."""
    train_key = getattr(source, "keys", {}).get("train")
    if not train_key:
        return None
    e, t = design.exits, design.training
    costs = None if exit_costs is None else tuple(float(c).hex() for c in exit_costs)
    return digest(FORMAT_VERSION, train_key, tuple(int(b) for b in blocks), e.branch,
                  tuple(sorted(e.branch_kwargs.items())), t.loss, t.labels, t.steps,
                  float(t.lr).hex(), t.optimizer, t.batch_size, float(t.weight_decay).hex(),
                  int(seed), costs, num_classes or source.num_classes, length=40)


def _path(key: str):
    return cache_dir("exits") / f"{key}{SUFFIX}"


def save_exits(key: str, result: ProxyResult) -> None:
    """Keep a proxy training's branches, losses and seconds under ``key`` (atomic write)."""
    state = {k: v.detach().cpu().clone() for k, v in result.branches.state_dict().items()}
    atomic_torch_save({"format": FORMAT_VERSION, "key": key, "state_dict": state,
                       "exit_blocks": list(result.exit_blocks), "losses": list(result.losses),
                       "steps_done": result.steps_done, "seconds": result.seconds,
                       "isc": result.isc, "settings": result.settings}, _path(key))


def load_exits(key: str, source: FeatureSource, design: Design, blocks: Sequence[int],
               num_classes: int | None) -> ProxyResult | None:
    """The kept proxy training under ``key`` as a :class:`ProxyResult` (branches in eval mode
    on the CPU), or None when there is none or it does not fit the design (then re-train)."""
    path = _path(key)
    if not path.is_file():
        return None
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile):
        return None
    if not isinstance(raw, dict) or raw.get("key") != key \
            or raw.get("format") != FORMAT_VERSION:
        return None
    e = design.exits
    branches = build_branches(source, blocks, e.branch, e.branch_kwargs,
                              num_classes or source.num_classes, seed=0)
    try:
        branches.load_state_dict(raw["state_dict"])
    except (RuntimeError, KeyError):
        return None
    return ProxyResult(branches.eval(), tuple(int(b) for b in blocks),
                       [float(x) for x in raw["losses"]], int(raw["steps_done"]),
                       float(raw["seconds"]), bool(raw["isc"]), dict(raw["settings"]))


def trained_exits(source: FeatureSource, design: Design, blocks: Sequence[int],
                  num_classes: int | None, *, seed: int,
                  exit_costs: Sequence[float] | None = None,
                  device: torch.device | str = "cpu") -> tuple[ProxyResult, bool]:
    """(the design's proxy-trained exits, whether they were loaded): the kept file when there
    is one, else :func:`dse.train.proxy.train_design` (and the result kept for next time)."""
    key = exits_key(source, design, blocks, num_classes, seed, exit_costs)
    if key is not None:
        loaded = load_exits(key, source, design, blocks, num_classes)
        if loaded is not None:
            return loaded, True
    result = train_design(source, design, blocks, num_classes, seed=seed, exit_costs=exit_costs,
                          device=device)
    if key is not None:
        try:
            save_exits(key, result)
        except OSError:  # a full or read-only cache costs a re-training later, nothing else
            pass
    return result, False

