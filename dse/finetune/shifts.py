"""Deployment shifts: seeded, vectorised torch transforms of image batches.

A shift stands for the camera data drifting after deployment (Hirose et al., "Selective
Fine-Tuning on a Classifier Ensemble", IEEE Access 2020, which fine-tunes on pre-modified data).
Every shift maps a batch ``x [N, C, H, W]`` with values in [0, 1] to a batch of the same shape
and range, drawing its per-image parameters from a ``torch.Generator``, so the same seed gives
the same images:

- ``cutout``: a square of side ``H / 2`` at a uniformly random centre (clipped at the border)
  is set to 0 (DeVries & Taylor 2017).
- ``jitter``: brightness, contrast and saturation factors, each uniform in [1 - s, 1 + s]
  (s = 0.5), applied in that order as torchvision's ``ColorJitter``: x b; (x - m) c + m with m
  the image's mean grey level; g + f (x - g) with g the grey image. Values are clipped to [0, 1]
  after each step. Saturation is a no-op on one-channel (grey) images such as digits.
- ``resize``: random resized crop: a crop of area fraction U[0.25, 1] and aspect ratio
  log-uniform in [3/4, 4/3] at a random position, resized back to H x W (bilinear).
- ``rotate``: a rotation by 0, 90, 180 or 270 degrees, chosen per image (square images).
- ``grayscale``: ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B in every channel (a no-op on
  one-channel images).
- ``random``: one of the shifts above per image.

Datasets hand out normalised tensors ``(x01 - mean) / std``; :func:`apply_shift` with ``mean``
and ``std`` undoes the normalisation, shifts, and normalises again.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from dse.errors import ConfigError
from dse.plugins import import_object, is_code_name
from dse.registry import Registry

Shift = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

#: name -> shift; installed plugins join from the entry point group ``dse.shifts``, and
#: ``module:fn`` names one from the current folder or the Python path (:mod:`dse.plugins`)
SHIFTS: Registry[Shift] = Registry("shift", "dse.shifts")

CUTOUT_FRACTION = 0.5            #: side of the cut square / image side
JITTER_STRENGTH = 0.5            #: factors uniform in [1 - s, 1 + s]
CROP_AREA = (0.25, 1.0)          #: area fraction of the random resized crop
CROP_RATIO = (3 / 4, 4 / 3)      #: aspect ratio range (log-uniform)
LUMA = (0.299, 0.587, 0.114)     #: ITU-R BT.601 grey weights


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] grey level: luma for RGB, the mean for any other channel count."""
    if x.shape[1] == 3:
        w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True)
    return x.mean(dim=1, keepdim=True)


@SHIFTS.register("cutout")
def cutout(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    side_h, side_w = max(1, round(h * CUTOUT_FRACTION)), max(1, round(w * CUTOUT_FRACTION))
    cy = torch.randint(0, h, (n,), generator=gen)
    cx = torch.randint(0, w, (n,), generator=gen)
    y0, x0 = cy - side_h // 2, cx - side_w // 2
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    in_rows = (rows >= y0[:, None]) & (rows < (y0 + side_h)[:, None])  # [N, H]
    in_cols = (cols >= x0[:, None]) & (cols < (x0 + side_w)[:, None])  # [N, W]
    hole = (in_rows[:, :, None] & in_cols[:, None, :]).to(x.device)     # [N, H, W]
    return x.masked_fill(hole[:, None], 0.0)


@SHIFTS.register("jitter")
def jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    s = JITTER_STRENGTH
    b, c, f = (_uniform(n, 1 - s, 1 + s, gen).to(x.device, x.dtype).view(n, 1, 1, 1)
               for _ in range(3))
    x = (x * b).clamp(0.0, 1.0)
    m = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - m) * c + m).clamp(0.0, 1.0)
    if x.shape[1] > 1:  # saturation: a grey image has none
        g = _grey(x)
        x = (g + f * (x - g)).clamp(0.0, 1.0)
    return x


@SHIFTS.register("resize")
def resize(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    area = _uniform(n, *CROP_AREA, gen)
    ratio = torch.exp(_uniform(n, math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), gen))
    cw = torch.sqrt(area * ratio).clamp(max=1.0)   # crop width / image width
    ch = torch.sqrt(area / ratio).clamp(max=1.0)
    ox = (2 * torch.rand(n, generator=gen) - 1) * (1 - cw)  # crop centre in [-1, 1] coordinates
    oy = (2 * torch.rand(n, generator=gen) - 1) * (1 - ch)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = cw, ox
    theta[:, 1, 1], theta[:, 1, 2] = ch, oy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp(0.0, 1.0)


@SHIFTS.register("rotate")
def rotate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    if x.shape[2] != x.shape[3]:
        raise ConfigError(f"shift rotate needs square images, got {x.shape[2]}x{x.shape[3]}")
    k = torch.randint(0, 4, (x.shape[0],), generator=gen).to(x.device)
    out = x.clone()
    for quarter in (1, 2, 3):
        rows = k == quarter
        if bool(rows.any()):
            out[rows] = torch.rot90(x[rows], quarter, dims=(2, 3))
    return out


@SHIFTS.register("grayscale", "greyscale")
def grayscale(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    if x.shape[1] == 1:
        return x.clone()
    return _grey(x).expand_as(x).clone()


@SHIFTS.register("random")
def random_shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    others = [name for name in SHIFTS.names() if name != "random"]
    which = torch.randint(0, len(others), (x.shape[0],), generator=gen).to(x.device)
    out = x.clone()
    for i, name in enumerate(others):
        rows = which == i
        if bool(rows.any()):
            out[rows] = SHIFTS.get(name)(x[rows], gen)
    return out


def check_shift(name: str) -> str:
    """The canonical shift name (``module:fn`` stays as it is, once it imports), or
    UnknownNameError listing the valid ones."""
    if is_code_name(name):
        import_object(name, "shift")
        return name
    return SHIFTS.resolve(name)


def shift_function(name: str) -> Shift:
    """The shift called ``name``: registered, or ``module:fn``."""
    return import_object(name, "shift") if is_code_name(name) else SHIFTS.get(name)


def apply_shift(name: str, x: torch.Tensor, *, seed: int = 0,
                mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None) -> torch.Tensor:
    """Shift a batch ``x [N, C, H, W]``; the same (name, seed, x) gives the same result.

    Without ``mean``/``std`` the values must lie in [0, 1]. With them, ``x`` is a normalised
    batch ``(x01 - mean) / std`` (per channel) and the result is normalised the same way.
    """
    fn = shift_function(name)
    if x.dim() != 4:
        raise ValueError(f"shift {name}: expected a batch [N, C, H, W], got shape {tuple(x.shape)}")
    gen = torch.Generator().manual_seed(int(seed))
    if mean is None and std is None:
        return fn(x, gen)
    if mean is None or std is None or len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"shift {name}: mean and std need one value per channel ({x.shape[1]})")
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    x01 = (x * s + m).clamp(0.0, 1.0)
    return (fn(x01, gen) - m) / s
