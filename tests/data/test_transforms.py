"""Decode, HR/LR training views and evaluation view (rareid/data/transforms.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from rareid.data.lowres import synthesize_lowres
from rareid.data.pixels import read_image
from rareid.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    Normalize,
    TrainTransform,
    resize_to,
)

SIZE = (64, 32)


def noisy(height: int = 32, width: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def reference_normalize(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    x = image.astype(np.float64) / 255.0
    x = (x - np.asarray(mean)) / np.asarray(std)
    return torch.from_numpy(x.transpose(2, 0, 1).astype(np.float32))


def test_read_image_is_rgb(tmp_path):
    bgr = np.zeros((8, 4, 3), dtype=np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's BGR
    path = tmp_path / "blue.png"
    cv2.imwrite(str(path), bgr)
    rgb = read_image(str(path))
    assert rgb.shape == (8, 4, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 2] == 255).all() and (rgb[..., 0] == 0).all()


def test_read_image_errors_name_the_file(tmp_path):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(OSError, match=r"corrupt\.jpg"):
        read_image(str(bad))
    with pytest.raises(OSError, match=r"missing\.jpg"):
        read_image(str(tmp_path / "missing.jpg"))


def test_normalize_matches_formula():
    image = noisy(seed=1)
    out = Normalize()(image)
    assert out.dtype == torch.float32 and out.shape == (3, 32, 16) and out.is_contiguous()
    torch.testing.assert_close(out, reference_normalize(image), atol=1e-6, rtol=0)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    torch.testing.assert_close(
        Normalize(mean, std)(image), reference_normalize(image, mean, std), atol=1e-6, rtol=0
    )


def test_normalize_accepts_views_and_checks_input():
    image = noisy(seed=2)
    flipped = image[:, ::-1]
    torch.testing.assert_close(
        Normalize()(flipped), reference_normalize(flipped), atol=1e-6, rtol=0
    )
    with pytest.raises(ValueError, match="uint8"):
        Normalize()(image.astype(np.float32))
    with pytest.raises(ValueError, match="mean"):
        Normalize(mean=(0.5, 0.5))
    with pytest.raises(ValueError, match="std"):
        Normalize(std=(0.2, 0.0, 0.2))


def test_train_transform_shapes_and_rates():
    transform = TrainTransform(SIZE, rates=[1, 2, 3, 4], seed=0)
    seen = set()
    for i in range(40):
        hr, lr, rate = transform(noisy(seed=i))
        assert hr.shape == lr.shape == (3, *SIZE)
        assert hr.dtype == lr.dtype == torch.float32
        assert rate in (1.0, 2.0, 3.0, 4.0)
        seen.add(rate)
    assert seen == {1.0, 2.0, 3.0, 4.0}  # uniform over the rates, r = 1 included


def test_train_transform_without_augmentation_is_resize_and_synthesis():
    image = noisy(seed=3)
    transform = TrainTransform(SIZE, rates=[1, 2, 3], padding=0, flip_p=0.0)
    hr, lr, rate = transform(image, rate=3)
    assert rate == 3.0
    torch.testing.assert_close(hr, reference_normalize(resize_to(image, SIZE)), atol=1e-6, rtol=0)
    expected_lr = synthesize_lowres(image, 3, SIZE, "area")
    torch.testing.assert_close(lr, reference_normalize(expected_lr), atol=1e-6, rtol=0)
    hr1, lr1, _ = transform(image, rate=1)
    torch.testing.assert_close(hr1, lr1)  # r = 1: the LR view is the HR image


def test_pad_crop_flip_semantics():
    image = np.full((32, 16, 3), 200, dtype=np.uint8)
    image[:, :8] = 50  # left half dark: a flip is visible
    transform = TrainTransform(SIZE, rates=[1], padding=10, flip_p=0.5, seed=5)
    resized = resize_to(image, SIZE)
    shifts, flips = set(), 0
    for _ in range(60):
        hr, lr = transform.views(image, 1.0)
        for view in (hr, lr):
            assert view.shape == (*SIZE, 3) and view.dtype == np.uint8
            rows = np.flatnonzero(view[:, :, 0].any(axis=1))
            cols = np.flatnonzero(view[:, :, 0].any(axis=0))
            top, left = rows[0], cols[0]
            bottom, right = SIZE[0] - 1 - rows[-1], SIZE[1] - 1 - cols[-1]
            # zero border of at most 10 px on one side of each axis
            assert top <= 10 and bottom <= 10 and left <= 10 and right <= 10
            assert min(top, bottom) == 0 and min(left, right) == 0
            shifts.add((int(top) - int(bottom), int(left) - int(right)))
            content = view[top : SIZE[0] - bottom, left : SIZE[1] - right]
            if content[0, 0, 0] == resized[0, -1, 0] and content[0, -1, 0] == resized[0, 0, 0]:
                flips += 1
    assert len(shifts) > 10  # random crops
    assert 30 < flips < 90  # p = 0.5 over 120 views


def test_hr_and_lr_views_are_augmented_independently():
    transform = TrainTransform(SIZE, rates=[1], seed=1)
    image = noisy(seed=4)
    differ = sum(not torch.equal(*transform(image)[:2]) for _ in range(20))
    assert differ > 10


def test_train_transform_seeded():
    image = noisy(seed=5)
    a, b = TrainTransform(SIZE, seed=11), TrainTransform(SIZE, seed=11)
    c = TrainTransform(SIZE, seed=12)
    out_a = [a(image) for _ in range(10)]
    out_b = [b(image) for _ in range(10)]
    out_c = [c(image) for _ in range(10)]
    for x, y in zip(out_a, out_b, strict=True):
        assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) and x[2] == y[2]
    assert any(not torch.equal(x[1], z[1]) for x, z in zip(out_a, out_c, strict=True))
    a.set_rng(np.random.default_rng(3))
    b.set_rng(np.random.default_rng(3))
    assert torch.equal(a(image)[1], b(image)[1])


def test_train_transform_option_errors():
    with pytest.raises(ValueError, match="interpolation"):
        TrainTransform(SIZE, interpolation="bogus")
    with pytest.raises(ValueError, match="rates"):
        TrainTransform(SIZE, rates=[0.5, 2])
    with pytest.raises(ValueError, match="input_size"):
        TrainTransform((0, 32))
    with pytest.raises(ValueError, match="flip_p"):
        TrainTransform(SIZE, flip_p=2)


def test_eval_transform():
    image = noisy(seed=6)
    transform = EvalTransform(SIZE)
    out = transform(image)
    assert out.shape == (3, *SIZE) and out.dtype == torch.float32
    torch.testing.assert_close(out, reference_normalize(resize_to(image, SIZE)), atol=1e-6, rtol=0)
    low = transform(image, rate=2)
    expected = reference_normalize(synthesize_lowres(image, 2, SIZE, "area"))
    torch.testing.assert_close(low, expected, atol=1e-6, rtol=0)
    nearest = EvalTransform(SIZE, interpolation="nearest")(image, rate=2)
    assert not torch.equal(low, nearest)
