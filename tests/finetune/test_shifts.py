"""Deployment shifts: shapes, value ranges, determinism under a seed, and what each one does."""
from __future__ import annotations

import pytest
import torch

from dse.errors import ConfigError, UnknownNameError
from dse.finetune.shifts import LUMA, SHIFTS, apply_shift

RANDOMISED = ["cutout", "jitter", "resize", "rotate", "random"]


def batch(channels: int = 3, n: int = 16, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", SHIFTS.names())
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_range_and_determinism(name, channels):
    x = batch(channels)
    a = apply_shift(name, x, seed=3)
    b = apply_shift(name, x, seed=3)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert torch.equal(x, batch(channels)), "the input must not be modified in place"


@pytest.mark.parametrize("name", RANDOMISED)
def test_seed_changes_the_result(name):
    x = batch(3, n=32)
    assert not torch.equal(apply_shift(name, x, seed=0), apply_shift(name, x, seed=1))


def test_registry_lists_the_issue_shifts_and_rejects_unknown():
    assert SHIFTS.names() == ["cutout", "jitter", "resize", "rotate", "grayscale", "random"]
    with pytest.raises(UnknownNameError, match="expected one of: cutout, jitter"):
        apply_shift("blur", batch())


def test_cutout_zeroes_one_square_of_half_the_side():
    x = torch.ones(64, 1, 8, 8)
    out = apply_shift("cutout", x, seed=0)
    zeros = (out == 0).flatten(1).sum(1)
    assert int(zeros.max()) == 16  # a 4 x 4 square when it lies inside the image
    assert int(zeros.min()) >= 4   # clipped at a corner: at least 2 x 2 (centre on the image)
    assert bool(((out == 0) | (out == 1)).all())
    for img in out[:, 0]:  # the zeros form one rectangle
        rows = (img == 0).any(1).nonzero().flatten()
        cols = (img == 0).any(0).nonzero().flatten()
        assert int((img == 0).sum()) == len(rows) * len(cols)
        assert rows.tolist() == list(range(int(rows[0]), int(rows[-1]) + 1))


def test_rotate_gives_a_quarter_turn_of_each_image():
    x = batch(2, n=40)
    out = apply_shift("rotate", x, seed=1)
    seen = set()
    for xi, oi in zip(x, out):
        ks = [k for k in range(4) if torch.equal(torch.rot90(xi, k, dims=(1, 2)), oi)]
        assert len(ks) == 1
        seen.add(ks[0])
    assert seen == {0, 1, 2, 3}


def test_rotate_needs_square_images():
    with pytest.raises(ConfigError, match="square"):
        apply_shift("rotate", torch.rand(2, 1, 4, 6))


def test_grayscale_uses_luma_and_is_a_no_op_on_one_channel():
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    out = apply_shift("grayscale", red)
    assert torch.allclose(out, torch.full_like(red, LUMA[0]))
    grey = batch(1)
    assert torch.equal(apply_shift("grayscale", grey), grey)


def test_jitter_keeps_grey_images_grey_and_changes_brightness():
    g = batch(1, n=8).expand(8, 3, 8, 8).contiguous()  # three equal channels
    out = apply_shift("jitter", g, seed=2)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])
    assert not torch.allclose(out, g)


def test_resize_keeps_a_constant_image_constant():
    x = torch.full((8, 3, 8, 8), 0.25)
    assert torch.allclose(apply_shift("resize", x, seed=0), x)


def test_normalised_round_trip():
    mean, std = (0.3,), (0.2,)
    x01 = batch(1)
    x = (x01 - 0.3) / 0.2
    out = apply_shift("grayscale", x, mean=mean, std=std)  # identity on one channel
    assert torch.allclose(out, x, atol=1e-6)
    shifted = apply_shift("cutout", x, seed=0, mean=mean, std=std)
    assert torch.allclose(shifted * 0.2 + 0.3, apply_shift("cutout", x01, seed=0), atol=1e-6)
    with pytest.raises(ValueError, match="one value per channel"):
        apply_shift("cutout", x, mean=(0.1, 0.2), std=(1.0, 1.0))
