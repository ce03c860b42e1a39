"""Images in, network input out, in NumPy and OpenCV alone: the image files of a folder, the
hash that names a model file, and the preprocessing of a trained model as an array, so that a
runtime without torch (onnxruntime, OpenVINO) embeds exactly what the torch path embeds.

:class:`~rareid.deploy.model.inference.Preprocess` is this preprocessing returning tensors.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rareid.data.pixels import IMAGENET_MEAN, IMAGENET_STD, ArrayNormalize, read_image

#: File suffixes (lower case) that ``list_images`` picks up.
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

ImageInput = str | os.PathLike | np.ndarray


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every image under ``folder`` (recursive, any file name), sorted for a stable order."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{str(root)!r} is not a folder of images")
    return sorted(
        path for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file: identifies the checkpoint an index was built with."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def image_list(images: ImageInput | Iterable[ImageInput]) -> list[ImageInput]:
    """``images`` as a list; one image (a path, or an array that is not a 4-D batch) is a list
    of one, not iterated over (its rows would be taken for images)."""
    if isinstance(images, str | os.PathLike) or (
        isinstance(images, np.ndarray) and images.ndim != 4
    ):
        return [images]
    return list(images)


@dataclass(frozen=True)
class ArrayPreprocess:
    """Image files or uint8 HxWx3 RGB arrays -> the (N, 3, H, W) float32 array a model takes:
    resized to its input size and normalised with the statistics it was trained with.

    Examples::

        >>> import numpy as np
        >>> ArrayPreprocess((128, 64)).arrays(np.zeros((100, 40, 3), dtype=np.uint8)).shape
        (1, 3, 128, 64)
    """

    img_size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        """Refuse a malformed size or statistics here, not as a cryptic error at the first
        image (``Preprocess(5)``: an int where (height, width) belongs)."""
        for name, value, length in (
            ("img_size", self.img_size, 2),
            ("mean", self.mean, 3),
            ("std", self.std, 3),
        ):
            if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != length:
                raise TypeError(
                    f"Preprocess {name}: expected a sequence of {length} numbers, got {value!r}; "
                    "build it with Preprocess.from_checkpoint(path) or Preprocess((H, W))"
                )
        if not all(isinstance(side, int | np.integer) and side > 0 for side in self.img_size):
            raise TypeError(
                f"Preprocess img_size: expected two positive ints, got {self.img_size!r}"
            )

    def array(self, image: ImageInput) -> np.ndarray:
        """One image (a path or a uint8 HxWx3 RGB array) -> (3, H, W) float32."""
        from rareid.data.lowres import synthesize_lowres

        array = read_image(image) if isinstance(image, str | os.PathLike) else image
        if not (
            isinstance(array, np.ndarray)
            and array.dtype == np.uint8
            and array.ndim == 3
            and array.shape[2] == 3
        ):
            got = (
                f"{array.dtype} array of shape {array.shape}"
                if isinstance(array, np.ndarray)
                else type(array).__name__
            )
            raise ValueError(f"expected a uint8 HxWx3 RGB image array or a file path, got {got}")
        resized = synthesize_lowres(array, 1.0, self.img_size)
        return ArrayNormalize(self.mean, self.std).array(resized)

    def arrays(self, images: ImageInput | Iterable[ImageInput]) -> np.ndarray:
        """Several images -> one (N, 3, H, W) float32 batch; one image is a batch of one."""
        batch = [self.array(image) for image in image_list(images)]
        if not batch:
            return np.empty((0, 3, *self.img_size), dtype=np.float32)
        return np.stack(batch)
