"""Image pipelines: decode, HR/LR training views, evaluation view (paper §III-A, §IV).

Training (per native HR image, uint8 HxWx3 RGB):

* HR view: bilinear resize to the input size -> zero-pad 10 px + random crop back to the input
  size -> horizontal flip (p = 0.5) -> normalise -> float32 CHW tensor.
* LR view: :func:`~rareid.data.lowres.synthesize_lowres` at a rate drawn uniformly from
  ``rates`` (``r = 1`` included: then the LR view is another augmentation of the HR image), then
  the same augmentations, drawn independently of the HR view's.

Evaluation: (optional LR synthesis at a given rate) + bilinear resize + normalise.

Speed matters because every sample is decoded and resized twice per epoch on CPU workers:
decode with OpenCV, let albumentations do pad/crop/flip on uint8 (cheap at that size), and fuse
"/255, -mean, /std, uint8->float, HWC->CHW" into one ``cv2.LUT`` pass per channel that writes
the contiguous CHW float array ``torch.from_numpy`` wraps without a copy.
``benchmarks/data_pipeline.py`` measures it against a PIL/torchvision pipeline.

Randomness (rate choice, crop offsets, flips) comes from one numpy Generator per transform
(:meth:`TrainTransform.set_rng`), which the dataset seeds per sample from its place in the
epoch's plan (:class:`~rareid.data.samplers.SampleKey`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from rareid.data.lowres import interpolation_flag, synthesize_lowres
from rareid.data.pixels import IMAGENET_MEAN, IMAGENET_STD, ArrayNormalize
from rareid.levels import normalize_rates


def backbone_statistics(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``mean`` and ``std`` of a timm backbone's pretrained configuration (ImageNet's if none):
    images are normalised with the statistics the backbone was trained with."""
    import timm

    cfg = timm.get_pretrained_cfg(backbone) if timm.is_model(backbone) else None
    mean = tuple(getattr(cfg, "mean", None) or IMAGENET_MEAN)
    std = tuple(getattr(cfg, "std", None) or IMAGENET_STD)
    return mean, std


def check_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    """Validate the network input size (H, W)."""
    try:
        height, width = (int(s) for s in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size: expected (height, width), got {input_size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"input_size: expected positive (height, width), got {tuple(input_size)}")
    return height, width


class Normalize(ArrayNormalize):
    """uint8 HxWx3 -> contiguous float32 (3, H, W) tensor ``(x / 255 - mean) / std`` (the
    array of :class:`~rareid.data.pixels.ArrayNormalize`, shared with the torch-free runtime).
    """

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.array(image))


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to ``size`` = (H, W); returns the input itself when already that size."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


class TrainTransform:
    """Native HR image -> (HR view, LR view, LR rate) for training.

    Args:
        input_size: network input (H, W).
        rates: rates the LR view is drawn from, uniformly (include 1 for HR LR-views).
        mean, std: normalisation (the backbone's data config; ImageNet by default).
        padding: zero padding before the random crop, in pixels of the input size.
        flip_p: horizontal flip probability.
        interpolation: downsampling interpolation of the LR synthesis.
        seed: seed of the initial Generator (the dataset re-seeds per worker process).
        hr_rate: rate of the "HR" view; 1 normally, the baseline's rate for the naive
            per-level baseline (paper Table III), where both views share one resolution.
    """

    def __init__(
        self,
        input_size: Sequence[int] = (256, 128),
        rates: Sequence[float] = (1, 2, 3, 4),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        padding: int = 10,
        flip_p: float = 0.5,
        interpolation: str = "area",
        seed: int = 0,
        hr_rate: float = 1.0,
    ) -> None:
        self.input_size = check_input_size(input_size)
        self.rates = normalize_rates(rates)
        interpolation_flag(interpolation)  # validate early
        self.interpolation = interpolation
        if padding < 0:
            raise ValueError(f"padding: expected >= 0 pixels, got {padding}")
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p: expected a probability in [0, 1], got {flip_p}")
        if not float(hr_rate) >= 1:
            raise ValueError(f"hr_rate: expected a rate >= 1, got {hr_rate}")
        self.hr_rate = float(hr_rate)
        self.normalize = Normalize(mean, std)
        height, width = self.input_size
        import albumentations as A  # training only: embedding a crop does not pay its import

        self.augment = A.Compose(
            [
                A.PadIfNeeded(
                    min_height=height + 2 * padding,
                    min_width=width + 2 * padding,
                    position="center",
                    border_mode=cv2.BORDER_CONSTANT,
                ),
                A.RandomCrop(height=height, width=width),
                A.HorizontalFlip(p=flip_p),
            ],
            is_check_shapes=False,
        )
        self.set_rng(np.random.default_rng(seed))

    def set_rng(self, rng: np.random.Generator) -> None:
        """Use ``rng`` for every random choice (rates, crops, flips) from now on."""
        self.rng = rng
        self.augment.set_random_state(rng, random.Random(int(rng.integers(2**63))))

    def sample_rate(self) -> float:
        """A rate drawn uniformly from ``rates``."""
        return self.rates[int(self.rng.integers(len(self.rates)))]

    def views(self, image: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
        """The augmented uint8 HR and LR views (input size) of a native image."""
        hr = (
            resize_to(image, self.input_size)
            if self.hr_rate == 1
            else synthesize_lowres(image, self.hr_rate, self.input_size, self.interpolation)
        )
        lr = (
            hr
            if rate == self.hr_rate
            else synthesize_lowres(image, rate, self.input_size, self.interpolation)
        )
        return self.augment(image=hr)["image"], self.augment(image=lr)["image"]

    def __call__(
        self, image: np.ndarray, rate: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Return (HR tensor, LR tensor, LR rate); ``rate=None`` draws it from ``rates``."""
        rate = self.sample_rate() if rate is None else float(rate)
        hr, lr = self.views(image, rate)
        return self.normalize(hr), self.normalize(lr), rate


class EvalTransform:
    """Native image (optionally degraded by ``rate``) -> normalised tensor at the input size."""

    def __init__(
        self,
        input_size: Sequence[int] = (256, 128),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        interpolation: str = "area",
    ) -> None:
        self.input_size = check_input_size(input_size)
        interpolation_flag(interpolation)
        self.interpolation = interpolation
        self.normalize = Normalize(mean, std)

    def __call__(self, image: np.ndarray, rate: float = 1.0) -> torch.Tensor:
        resized = synthesize_lowres(image, rate, self.input_size, self.interpolation)
        return self.normalize(resized)
