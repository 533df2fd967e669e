"""MultiExitNet: a backbone with exit branches at chosen block boundaries.

``forward`` returns every exit's raw (logits, confidence), the final head last with confidence 1:
what training and the feature cache use (losses apply inline subnetwork collaboration themselves). ``early_exit`` is the deployment path: samples that
satisfy the exit criterion leave and are no longer computed (per-sample masking within a batch),
and its predictions equal "compute all exits, then pick the first that fires".
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dse.errors import ConfigError
from dse.models.backbones import Backbone
from dse.models.criteria import get_criterion
from dse.models.exits import build_branch


class MultiExitNet(nn.Module):
    def __init__(self, backbone: Backbone, exit_blocks: Sequence[int],
                 branches: Sequence[nn.Module], isc: bool = False, isc_final: bool = False) -> None:
        """``isc``: inline subnetwork collaboration at inference, z'_i = z_i + z'_{i-1} for the
        early exits (as ``dse.train.losses.isc_combine`` does in training), and for the final
        head too with ``isc_final`` (a jointly trained model)."""
        super().__init__()
        exit_blocks = list(exit_blocks)
        if len(exit_blocks) != len(branches):
            raise ConfigError(f"{len(exit_blocks)} exit blocks but {len(branches)} branches")
        if exit_blocks != sorted(set(exit_blocks)):
            raise ConfigError(f"exit blocks must be strictly increasing, got {exit_blocks}")
        last = len(backbone.blocks) - 1
        if exit_blocks and (exit_blocks[0] < 0 or exit_blocks[-1] >= last):
            raise ConfigError(f"exit blocks must lie in 0..{last - 1}, got {exit_blocks}")
        self.backbone = backbone
        self.exit_blocks = exit_blocks
        self.branches = nn.ModuleList(branches)
        self.isc, self.isc_final = isc, isc_final

    @property
    def num_exits(self) -> int:
        """Exits including the final head."""
        return len(self.exit_blocks) + 1

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        outputs = []
        e = 0
        for i, block in enumerate(self.backbone.blocks):
            x = block(x)
            if e < len(self.exit_blocks) and self.exit_blocks[e] == i:
                outputs.append(self.branches[e](x))
                e += 1
        logits = self.backbone.head(x)
        outputs.append((logits, torch.ones(logits.shape[0], dtype=logits.dtype, device=logits.device)))
        return outputs

    def thresholds_list(self, thresholds: float | Sequence[float]) -> list[float]:
        n = len(self.exit_blocks)
        if isinstance(thresholds, (int, float)):
            return [float(thresholds)] * n
        values = [float(t) for t in thresholds]
        if len(values) != n:
            raise ConfigError(f"{n} early exits need {n} thresholds, got {len(values)}")
        return values

    @torch.no_grad()
    def early_exit(self, x: torch.Tensor, criterion: str,
                   thresholds: float | Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Early-exit inference: (logits [N, K], exit index [N]); exited samples stop computing."""
        crit = get_criterion(criterion)
        ts = self.thresholds_list(thresholds)
        n = x.shape[0]
        out: torch.Tensor | None = None
        exit_index = torch.full((n,), len(self.exit_blocks), dtype=torch.long, device=x.device)
        alive = torch.arange(n, device=x.device)
        previous: torch.Tensor | None = None  # ISC: combined logits of the last exit, alive rows
        e = 0
        for i, block in enumerate(self.backbone.blocks):
            x = block(x)
            if e < len(self.exit_blocks) and self.exit_blocks[e] == i:
                logits, conf = self.branches[e](x)
                if self.isc:
                    if previous is not None:
                        logits = logits + previous
                    previous = logits
                if out is None:
                    out = logits.new_empty((n, logits.shape[1]))
                leave = crit.exits_torch(crit.score_torch(logits, conf), ts[e])
                if n == 1:  # batch 1 (deployment): one sync, no indexing
                    if bool(leave[0]):
                        out[0] = logits[0]
                        exit_index[0] = e
                        return out, exit_index
                elif leave.any():
                    out[alive[leave]] = logits[leave]
                    exit_index[alive[leave]] = e
                    stay = ~leave
                    alive, x = alive[stay], x[stay]
                    if previous is not None:
                        previous = previous[stay]
                    if alive.numel() == 0:
                        return out, exit_index
                e += 1
        logits = self.backbone.head(x)
        if self.isc and self.isc_final and previous is not None:
            logits = logits + previous
        if out is None:
            out = logits.new_empty((n, logits.shape[1]))
        out[alive] = logits
        return out, exit_index


def feature_shapes(backbone: Backbone, input_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """(C, H, W) of every block's output for one input of ``input_shape``."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        shapes = [tuple(f.shape[1:]) for f in backbone.features(torch.zeros(1, *input_shape))]
    backbone.train(was_training)
    return shapes


def build_multiexit(backbone: Backbone, exit_blocks: Sequence[int], branch: str, num_classes: int,
                    input_shape: Sequence[int], isc: bool = False, isc_final: bool = False,
                    **branch_params) -> MultiExitNet:
    """Attach a ``branch`` exit after each block in ``exit_blocks``."""
    shapes = feature_shapes(backbone, input_shape)
    branches = [build_branch(branch, shapes[b], num_classes, **branch_params) for b in exit_blocks]
    return MultiExitNet(backbone, exit_blocks, branches, isc=isc, isc_final=isc_final)
