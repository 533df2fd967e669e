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


def test_levels_draw_light_ink_on_a_darker_ground_with_the_minimum_contrast():
    background, foreground = digits_hard.levels(np.random.default_rng(3), 10000)
    diff = foreground - background
    assert diff.min() >= digits_hard.MIN_CONTRAST - 1e-12  # one polarity, enough contrast
    assert 0 <= background.min() and foreground.max() <= 1
    assert np.ptp(background) > 0.5 and np.ptp(diff) > 0.3  # the levels still vary


def test_levels_keep_the_minimum_contrast_in_both_polarities(monkeypatch):
    monkeypatch.setattr(digits_hard, "BOTH_POLARITIES", True)
    background, foreground = digits_hard.levels(np.random.default_rng(3), 10000)
    diff = foreground - background
    assert np.abs(diff).min() >= digits_hard.MIN_CONTRAST - 1e-12
    assert 0 <= min(background.min(), foreground.min()) and max(background.max(), foreground.max()) <= 1
    assert (diff > 0).mean() > 0.3 and (diff < 0).mean() > 0.3  # dark-on-light and light-on-dark


def test_placement_keeps_the_digit_near_the_centre_and_on_the_canvas():
    rng = np.random.default_rng(5)
    height, _, centre = digits_hard._placement(rng, 5000, (8.0, 14.0), 15.0, 2.0)
    mid = digits_hard.CANVAS / 2
    assert np.abs(centre - mid).max() <= 2.0 + 1e-9
    assert (centre - height[:, None] / 2 >= -1e-9).all()
    assert (centre + height[:, None] / 2 <= digits_hard.CANVAS + 1e-9).all()
    _, _, anywhere = digits_hard._placement(rng, 5000, (4.0, 8.0), 180.0)
    assert np.abs(anywhere - mid).max() > 4.0  # clutter goes anywhere


def _centroid_accuracy(monkeypatch, **override) -> float:
    """Nearest class mean on standardised raw pixels, trained on canvases rendered from the
    train sources, scored on canvases from the test sources (percent)."""
    from sklearn.datasets import load_digits

    from dse.data.splits import stratified_split

    for key, value in override.items():
        monkeypatch.setattr(digits_hard, key, value)
    bunch = load_digits()
    parts = stratified_split(bunch.target, digits_hard.SOURCE_FRACTIONS, 0)
    sets = []
    for k, n in ((0, 2000), (2, 1000)):
        x, pick = digits_hard.render(bunch.images[parts[k]] / 16.0, n, np.random.default_rng([0, k]))
        x = x.reshape(n, -1).astype(np.float64)
        x = (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-9)
        sets.append((x, bunch.target[parts[k]][pick]))
    (xa, ya), (xb, yb) = sets
    means = np.stack([xa[ya == c].mean(0) for c in range(10)])
    return 100.0 * float((np.argmax(xb @ means.T, 1) == yb).mean())


def test_raw_pixels_carry_the_class_but_do_not_give_it_away(monkeypatch):
    """A cheap stand-in for 'early exits trade real accuracy': a nearest-class-mean classifier
    on raw pixels is well above chance (v3: 33 %; v2, either polarity anywhere on the canvas,
    was at chance, 12 %, and so were its early exits) yet far below the backbone (~97 %)."""
    assert 25.0 < _centroid_accuracy(monkeypatch) < 60.0
    assert _centroid_accuracy(monkeypatch, BOTH_POLARITIES=True, MAX_SHIFT_PX=None) < 15.0


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


def test_a_new_rendering_does_not_reuse_a_backbone_trained_on_the_old_one(monkeypatch):
    from dse.data import registry
    from dse.train.backbone import cached_backbone_path

    def path(dataset: str):
        return cached_backbone_path("digits-resnet", dataset, seed=0, input_size=16, epochs=6)

    assert registry.data_version("digits_hard") == digits_hard.GENERATOR_VERSION
    now = path("digits-hard")
    monkeypatch.setitem(registry.DATA_VERSIONS, "digits-hard", digits_hard.GENERATOR_VERSION + 1)
    assert path("digits-hard") != now
    assert registry.data_version("digits") is None  # unversioned data keep their key
