"""Load weights from a checkpoint file into a module, with one clear error when that fails."""
from __future__ import annotations

import os

import torch
from torch import nn

from dse.errors import CheckpointError

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "backbone")


def read_checkpoint(path: str) -> dict:
    """``torch.load`` a file safely (weights only); corrupt or missing -> CheckpointError."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types on garbage input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path}: not a readable torch checkpoint ({first})") from exc


def extract_state_dict(obj: object, path: str) -> dict[str, torch.Tensor]:
    """Find the state_dict inside a checkpoint (raw, or nested under a usual key)."""
    if isinstance(obj, dict):
        for key in _NESTED_KEYS:
            if key in obj and isinstance(obj[key], dict):
                return extract_state_dict(obj[key], path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {k.removeprefix("module."): v for k, v in obj.items()}
    raise CheckpointError(f"checkpoint {path}: holds no state_dict of tensors")


def load_state_dict(model: nn.Module, path: str) -> None:
    state = extract_state_dict(read_checkpoint(path), path)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()
        raise CheckpointError(f"checkpoint {path}: does not fit the model ({first})") from exc
    missing, unexpected = result.missing_keys, result.unexpected_keys
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise CheckpointError(f"checkpoint {path}: does not fit the model: {'; '.join(detail)} keys")
