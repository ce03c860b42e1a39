"""LR synthesis, rate estimation and level assignment (rareid/data/lowres.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rareid.data.lowres import (
    INTERPOLATIONS,
    degrade,
    lowres_size,
    sample_rates,
    synthesize_lowres,
)


def noisy(height: int = 128, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("rate", "size"),
    [(1, (128, 64)), (2, (64, 32)), (3, (43, 21)), (4, (32, 16)), (2.5, (51, 26)), (1000, (1, 1))],
)
def test_degrade_output_size(rate, size):
    out = degrade(noisy(), rate)
    assert out.shape == (*size, 3)
    assert out.dtype == np.uint8
    assert lowres_size(128, 64, rate) == size


def test_degrade_rate_one_is_identity():
    image = noisy()
    assert degrade(image, 1) is image


def test_degrade_area_averages_blocks():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:2, :2] = 100  # top-left block
    image[0, 2:] = 40  # half of the top-right block -> 20
    out = degrade(image, 2)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[..., 0], [[100, 20], [0, 0]])


def test_degrade_is_deterministic_and_grayscale_ok():
    image = noisy(seed=3)
    np.testing.assert_array_equal(degrade(image, 3), degrade(image.copy(), 3))
    gray = image[..., 0].copy()
    assert degrade(gray, 2).shape == (64, 32)


def test_interpolation_option_changes_pixels():
    image = noisy(seed=1)
    results = {name: degrade(image, 3, name) for name in INTERPOLATIONS}
    assert all(r.shape == (43, 21, 3) for r in results.values())
    assert not np.array_equal(results["area"], results["nearest"])
    np.testing.assert_array_equal(
        results["nearest"], cv2.resize(image, (21, 43), interpolation=cv2.INTER_NEAREST)
    )


def test_unknown_interpolation_lists_choices():
    with pytest.raises(ValueError, match="interpolation") as err:
        degrade(noisy(), 2, "bicubicc")
    for name in INTERPOLATIONS:
        assert name in str(err.value)


@pytest.mark.parametrize("rate", [0.5, 0, -2, float("nan"), float("inf")])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        degrade(noisy(), rate)


def test_synthesize_lowres_sizes_and_rate_one():
    image = noisy()
    out = synthesize_lowres(image, 3, (256, 128))
    assert out.shape == (256, 128, 3) and out.dtype == np.uint8
    expected = cv2.resize(image, (128, 256), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(synthesize_lowres(image, 1, (256, 128)), expected)
    low = degrade(image, 3)
    np.testing.assert_array_equal(out, cv2.resize(low, (128, 256), interpolation=cv2.INTER_LINEAR))
    # losing detail: the synthesised LR image differs from the plain upscale
    assert not np.array_equal(out, expected)


def test_synthesize_lowres_same_rate_same_pixels():
    image = noisy(seed=7)
    a = synthesize_lowres(image, 4, (256, 128), "area")
    b = synthesize_lowres(image.copy(), 4, (256, 128), "area")
    np.testing.assert_array_equal(a, b)


def test_synthesize_lowres_bad_size():
    with pytest.raises(ValueError, match="out_size"):
        synthesize_lowres(noisy(), 2, (0, 128))


def test_sample_rates_seeded():
    a = sample_rates(200, [2, 3, 4], seed=(0, 1))
    b = sample_rates(200, [2, 3, 4], seed=(0, 1))
    c = sample_rates(200, [2, 3, 4], seed=(0, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(a.tolist()) == {2.0, 3.0, 4.0}
    assert sample_rates(0, [2], seed=0).shape == (0,)
    with pytest.raises(ValueError, match="rates"):
        sample_rates(3, [], seed=0)
