"""The trained multi-exit model: rebuild a configuration on a backbone, collect its per-exit
outputs, and save / load the model file that ``dse train`` writes and ``dse evaluate`` reads.

The model file (``model.pt``) is written with ``torch.save`` and holds plain types and tensors
only, so ``torch.load(path, weights_only=True)`` opens it::

    {"format": "dse-multiexit", "version": 1,
     "config": RunConfig.to_dict() (exit blocks resolved), "state_dict": MultiExitNet's,
     "metrics": {...}, "input": {dataset, num_classes, in_channels, input_size, mean, std, ...},
     "training": {resolved dse train options}, "exit_macs": [cumulative MACs per exit]}
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dse.cache import atomic_torch_save
from dse.design import RunConfig, config_from_section
from dse.errors import CheckpointError
from dse.evaluation.outputs import ExitOutputs
from dse.cost.assemble import Assembled, InputSpec, assemble
from dse.models.backbones import build_backbone
from dse.models.checkpoint import read_checkpoint
from dse.models.multiexit import build_multiexit
from dse.train.losses import isc_combine
from dse.yamlio import Section, to_plain

RUN_FORMAT, RUN_VERSION = "dse-multiexit", 1
EVAL_BATCH = 512


def assemble_config(config: RunConfig, backbone: nn.Module, inputs: InputSpec) -> Assembled:
    """The configuration's multi-exit model on ``backbone`` (its recorded blocks when present)."""
    e = config.exits
    if e.blocks is not None and len(e.blocks) > 0:
        how = dict(num_exits=len(e.blocks), placement="explicit", positions=list(e.blocks))
    elif e.blocks is not None or e.count == 0:
        how = dict(num_exits=0, placement="pareto", positions=None)
    else:
        how = dict(num_exits=e.count, placement=e.placement,
                   positions=list(e.positions) if e.positions else None)
    return assemble(backbone, inputs, branch=e.branch, branch_params=e.branch_kwargs, **how)


def exit_costs(a: Assembled) -> list[float]:
    """Cumulative MACs of every exit normalised by the final exit's (EENet's c_n, c_E = 1)."""
    return [m / a.exit_macs[-1] for m in a.exit_macs]


@torch.inference_mode()
def collect_outputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, isc: bool = False,
                    isc_final: bool = False, device: torch.device | str = "cpu",
                    batch_size: int = EVAL_BATCH) -> ExitOutputs:
    """Per-exit logits and confidences of a whole split as :class:`~dse.evaluation.ExitOutputs`
    (ISC applied as in training, the final head included with ``isc_final``, so each exit's
    logits are what it predicts with)."""
    was = model.training
    model.eval()
    logits: list[list[torch.Tensor]] = []
    conf: list[list[torch.Tensor]] = []
    for i in range(0, int(y.shape[0]), batch_size):
        outs = model(x[i:i + batch_size].to(device))
        zs = [z for z, _ in outs]
        if getattr(model, "isc_transforms", None) is not None:
            zs = model.collaborate(zs)  # learned ISC lives in the model
        else:
            zs = isc_combine(zs, include_final=isc_final) if isc else zs
        logits.append([z.float().cpu() for z in zs])
        conf.append([h.float().cpu() for _, h in outs])
    model.train(was)
    n_exits = len(logits[0]) if logits else 1
    return ExitOutputs.from_exits([torch.cat([b[e] for b in logits]).numpy() for e in range(n_exits)],
                                  [torch.cat([b[e] for b in conf]).numpy() for e in range(n_exits)],
                                  y.cpu().numpy())


def isc_final(training: dict[str, Any]) -> bool:
    """Whether ISC reaches the final head: joint training trains it (IMTA applies ISC to every
    later classifier); a frozen backbone's head keeps its own logits."""
    return training.get("mode") in ("joint", "classifiers")


def save_model(path: str | Path, model: nn.Module, config: RunConfig, inputs: dict[str, Any],
               metrics: dict[str, Any], training: dict[str, Any], exit_macs: list[int]) -> Path:
    """Write the trained model: plain types and tensors only, so ``torch.load(path,
    weights_only=True)`` opens it; ``state_dict`` is the :class:`MultiExitNet`'s."""
    payload = {"format": RUN_FORMAT, "version": RUN_VERSION, "config": to_plain(config.to_dict()),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "metrics": to_plain(metrics), "input": to_plain(inputs), "training": to_plain(training),
               "exit_macs": [int(m) for m in exit_macs]}
    return atomic_torch_save(payload, path)


@dataclass
class LoadedModel:
    model: nn.Module
    config: RunConfig
    inputs: dict[str, Any]
    payload: dict[str, Any]

    @property
    def exit_macs(self) -> list[int]:
        return list(self.payload["exit_macs"])


def load_model(path: str | Path) -> LoadedModel:
    """Rebuild a model saved by :func:`save_model` (eval mode, CPU)."""
    path = str(path)
    raw = read_checkpoint(path)
    if not isinstance(raw, dict) or raw.get("format") != RUN_FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a trained multi-exit model (written by "
                              f"'dse train', format {RUN_FORMAT!r}); is it a backbone checkpoint?")
    if raw.get("version") != RUN_VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {raw.get('version')!r}, "
                              f"expected {RUN_VERSION}")
    inp = raw.get("input")
    if not isinstance(inp, dict) or not isinstance(raw.get("state_dict"), dict) or not all(
            type(inp.get(k)) is int and inp[k] > 0
            for k in ("num_classes", "in_channels", "input_size")):
        raise CheckpointError(f"checkpoint {path}: a {RUN_FORMAT!r} file without its input sizes "
                              "or weights; is it damaged?")
    config = config_from_section(Section(raw.get("config"), f"{path}: config"))
    backbone = build_backbone(config.backbone, num_classes=inp["num_classes"],
                              in_channels=inp["in_channels"])
    shape = (inp["in_channels"], inp["input_size"], inp["input_size"])
    model = build_multiexit(backbone, list(config.exits.blocks or ()), config.exits.branch,
                            inp["num_classes"], shape, isc=config.training.loss.isc,
                            isc_final=isc_final(raw.get("training", {})),
                            **config.exits.branch_kwargs)
    if raw.get("training", {}).get("isc_transform") == "learned":
        model.add_isc_transforms(inp["num_classes"])
    try:
        model.load_state_dict(raw["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as exc:  # shapes, or not tensors
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path}: weights do not fit the model ({first})") from exc
    model.eval()
    return LoadedModel(model, config, dict(inp), raw)


def rewrite_config(path: str | Path, loaded: LoadedModel, config: RunConfig,
                   thresholds: dict[str, Any] | None = None) -> Path:
    """Rewrite the model file ``path`` (loaded as ``loaded``) with ``config`` (same weights; used
    after re-tuning the thresholds); ``thresholds`` goes into its metrics under that key."""
    payload = dict(loaded.payload)
    payload["config"] = to_plain(config.to_dict())
    if thresholds is not None:
        payload["metrics"] = {**(payload.get("metrics") or {}), "thresholds": to_plain(thresholds)}
    return atomic_torch_save(payload, path)
