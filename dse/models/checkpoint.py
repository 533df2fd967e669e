"""Load weights from a checkpoint file into a module, with one clear error when that fails."""
from __future__ import annotations

import os
import pickle
import warnings

import torch
from torch import nn

from dse.errors import CheckpointError

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "backbone")


def read_checkpoint(path: str) -> dict:
    """``torch.load`` a file safely (weights only); corrupt or missing -> CheckpointError.

    The error line says what is wrong with the file, not torch's advice to load it with
    ``weights_only=False`` (which would run whatever code the file holds).
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. pickle protocol notes on a foreign file
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types on garbage input
        raise CheckpointError(f"checkpoint {path}: not a readable torch checkpoint "
                              f"({_reason(exc)})") from exc


def _reason(exc: Exception) -> str:
    """A short reason for a failed ``torch.load``."""
    text = str(exc).strip()
    if isinstance(exc, pickle.UnpicklingError) and "weights_only" in text:
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines() \
            if "WeightsUnpickler error:" in text else []
        return ("the weights-only reader refused it: not tensors and plain data"
                + (f"; {' '.join(detail[0].split())[:100]}" if detail else ""))
    if isinstance(exc, EOFError):
        return "the file is empty or truncated"
    if isinstance(exc, (KeyError, IndexError, ValueError)) or not text:
        return f"not a torch file ({type(exc).__name__})"
    first = " ".join(text.splitlines()[0].split())
    return first.split(". ")[0][:160]


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
