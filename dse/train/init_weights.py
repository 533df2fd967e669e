"""Where a ``dse train`` run's weights and targets start: the search's exits, an earlier model
file, the backbone's own predictions as pseudo labels."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dse.data import split_batches
from dse.errors import ConfigError
from dse.train.model_file import EVAL_BATCH, load_model


def load_exits(model: nn.Module, exits: Sequence[nn.Module]) -> None:
    """Start the early exits from ``exits`` (same branch type and blocks, one per exit)."""
    if len(exits) != len(model.branches):
        raise ConfigError(f"{len(exits)} initial exits for a model with {len(model.branches)} "
                          "early exits")
    for branch, source in zip(model.branches, exits):
        try:
            branch.load_state_dict(source.state_dict())
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"the initial exits do not fit this configuration ({first})") from None


def load_initial(model: nn.Module, path: str) -> None:
    """Start from the weights of a ``dse train`` model file with the same structure."""
    loaded = load_model(path)
    try:
        missing, unexpected = model.load_state_dict(loaded.model.state_dict(), strict=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"init model {path}: its weights do not fit this configuration "
                          f"({first})") from None
    # learned ISC transforms a model without them gets start fresh; nothing else may be missing
    missing = [k for k in missing if not k.startswith("isc_transforms.")]
    if missing or unexpected:
        raise ConfigError(f"init model {path}: its weights do not fit this configuration "
                          f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})")


@torch.no_grad()
def pseudo_labels(backbone: nn.Module, train_ds, device) -> torch.Tensor:
    was = backbone.training
    backbone.eval()
    labels = torch.cat([backbone(x).argmax(1).cpu()
                        for x, _ in split_batches(train_ds, EVAL_BATCH, device)])
    backbone.train(was)
    return labels
