"""digits-hard: rendered from scikit-learn's digits, deterministic per seed, cached."""
from __future__ import annotations

import numpy as np
import pytest

from dse.data import DATASETS, load_dataset, split_tensors
from dse.data import digits_hard
from dse.errors import DataError


@pytest.fixture(scope="module")
def sources() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images[:50] / 16.0


def test_render_is_deterministic_per_generator_seed(sources):
    a, pick_a = digits_hard.render(sources, 64, np.random.default_rng([0, 1, 0]))
    b, pick_b = digits_hard.render(sources, 64, np.random.default_rng([0, 1, 0]))
    c, _ = digits_hard.render(sources, 64, np.random.default_rng([1, 1, 0]))
    assert a.tobytes() == b.tobytes() and np.array_equal(pick_a, pick_b)
    assert a.tobytes() != c.tobytes()
    assert a.shape == (64, 1, digits_hard.CANVAS, digits_hard.CANVAS) and a.dtype == np.uint8
    assert pick_a.min() >= 0 and pick_a.max() < len(sources)


def test_warp_places_the_digit_where_asked():
    # a full 8x8 block of ink, 8 px high, unrotated, centred at (4, 4): covers the top-left
    # quarter of the 16x16 canvas, nothing else
    ink = digits_hard._warp(np.ones((1, 8, 8)), np.array([8.0]), np.array([0.0]),
                            np.array([[4.0, 4.0]]))[0]
    assert ink[1:7, 1:7].min() > 0.99 and ink[9:, :].max() == 0 and ink[:, 9:].max() == 0


def test_levels_keep_the_minimum_contrast_in_both_polarities():
    background, foreground = digits_hard.levels(np.random.default_rng(3), 10000)
    diff = foreground - background
    assert np.abs(diff).min() >= digits_hard.MIN_CONTRAST - 1e-12
    assert 0 <= min(background.min(), foreground.min()) and max(background.max(), foreground.max()) <= 1
    assert (diff > 0).mean() > 0.3 and (diff < 0).mean() > 0.3  # dark-on-light and light-on-dark


def test_registered_loaded_cached_and_byte_identical():
    assert DATASETS.resolve("digits-hard") == "digits-hard"
    first = load_dataset("digits-hard", seed=0)
    path = digits_hard.cached_path(0)
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    again = load_dataset("digits_hard", seed=0)  # read back, not rendered again
    assert path.stat().st_mtime_ns == stamp
    info = first.info
    assert (info.name, info.num_classes, info.channels, info.input_size) == (
        "digits-hard", 10, 1, 16)
    assert first.sizes() == digits_hard.SPLIT_SIZES
    for split in ("train", "val", "test"):
        x1, y1 = split_tensors(getattr(first, split))
        x2, y2 = split_tensors(getattr(again, split))
        assert x1.numpy().tobytes() == x2.numpy().tobytes() and y1.equal(y2)
        assert sorted(set(y1.tolist())) == list(range(10))
    with np.load(path) as z:
        fresh = digits_hard.generate(0)
        assert all(z[f"{s}_x"].tobytes() == fresh[s][0].tobytes() for s in digits_hard.SPLITS)


def test_takes_no_path(tmp_path):
    with pytest.raises(DataError, match="takes no path"):
        load_dataset(f"digits-hard:{tmp_path}")
