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
from dse.models.criteria import get_criterion, per_exit_thresholds
from dse.models.exits import build_branch


class IscTransform(nn.Module):
    """IMTA's learned inline subnetwork collaboration for one classifier (``isc_modules`` in
    ``kalviny/IMTA``'s ``msdnet_imta.py``): the previous classifier's logits go through
    Linear(K, d)-BN-ReLU and are concatenated to the classifier's d features before its linear
    layer. A linear layer of a concatenation is a sum, so this adds
    ``Linear(d, K, no bias)(ReLU(BN(Linear(K, d)(z_prev))))`` to the classifier's own logits."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(num_classes, dim), nn.BatchNorm1d(dim),
                                   nn.ReLU(inplace=True))
        self.out = nn.Linear(dim, num_classes, bias=False)

    def forward(self, previous: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(previous))


def classifier_dims(model: "MultiExitNet") -> list[int]:
    """The feature width each classifier's linear layer reads (branches, then the head)."""
    head = getattr(model.backbone.head, "fc", None)
    dims = [br.classifier.in_features for br in model.branches]
    return dims + [head.in_features if isinstance(head, nn.Linear) else model.num_classes]


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
        #: learned ISC (IMTA): one transform per classifier after the first (None: dse's
        #: parameter-free z'_i = z_i + stopgrad(z'_{i-1}))
        self.isc_transforms: nn.ModuleList | None = None

    @property
    def num_classes(self) -> int:
        return int(self.branches[0].classifier.out_features) if len(self.branches) else 0

    def add_isc_transforms(self, num_classes: int) -> None:
        """Switch ISC to IMTA's learned transform (:class:`IscTransform`), for every classifier
        after the first: the early exits', and the head's too with ``isc_final``."""
        dims = classifier_dims(self)[1:]
        if not self.isc_final:
            dims = dims[:-1]
        self.isc = True
        self.isc_transforms = nn.ModuleList(IscTransform(num_classes, d) for d in dims)

    def _collaborate(self, index: int, logits: torch.Tensor,
                     previous: torch.Tensor) -> torch.Tensor:
        """Classifier ``index``'s logits after ISC, given the previous classifier's."""
        if self.isc_transforms is not None:
            return logits + self.isc_transforms[index - 1](previous)
        return logits + previous

    def collaborate(self, logits: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Every classifier's logits after ISC as this model was trained with it (none when
        ``isc`` is off; the final head only with ``isc_final``). The parameter-free form
        detaches the previous logits, the learned one lets the gradient through, as IMTA's."""
        if not self.isc:
            return list(logits)
        out: list[torch.Tensor] = []
        last = len(logits) - 1
        for i, z in enumerate(logits):
            if i == 0 or (i == last and not self.isc_final):
                out.append(z)
            else:
                prev = out[-1] if self.isc_transforms is not None else out[-1].detach()
                out.append(self._collaborate(i, z, prev))
        return out

    def _exit_input(self, out):  # noqa: ANN001, ANN202
        """What exits read from a block's output (:meth:`Backbone.exit_input`: the output
        itself, or MSDNet's coarsest scale)."""
        view = getattr(self.backbone, "exit_input", None)
        return out if view is None else view(out)

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
                outputs.append(self.branches[e](self._exit_input(x)))
                e += 1
        logits = self.backbone.head(self._exit_input(x))
        outputs.append((logits, torch.ones(logits.shape[0], dtype=logits.dtype, device=logits.device)))
        return outputs

    def thresholds_list(self, thresholds: float | Sequence[float]) -> list[float]:
        """One threshold per early exit (:func:`dse.models.criteria.per_exit_thresholds`)."""
        return per_exit_thresholds(thresholds, len(self.exit_blocks))

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
                logits, conf = self.branches[e](self._exit_input(x))
                if self.isc:
                    if previous is not None:
                        logits = self._collaborate(e, logits, previous)
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
                    alive, x = alive[stay], _rows(x, stay)
                    if previous is not None:
                        previous = previous[stay]
                    if alive.numel() == 0:
                        return out, exit_index
                e += 1
        logits = self.backbone.head(self._exit_input(x))
        if self.isc and self.isc_final and previous is not None:
            logits = self._collaborate(len(self.exit_blocks), logits, previous)
        if out is None:
            out = logits.new_empty((n, logits.shape[1]))
        out[alive] = logits
        return out, exit_index


def _rows(x, rows: torch.Tensor):  # noqa: ANN001, ANN202
    """The rows ``rows`` of a block's output: a tensor, or each scale of a multi-scale list."""
    if isinstance(x, (list, tuple)):
        return [t[rows] for t in x]
    return x[rows]


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
