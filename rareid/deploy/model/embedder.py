"""Embed images with an exported model and nothing else: :class:`OnnxEmbedder` reads an ONNX
file, an OpenVINO IR or a bundle (a folder or ``hf-hub:org/name``), preprocesses with NumPy and
OpenCV as the model was trained, gives each image the level its height supports, and runs
onnxruntime or OpenVINO. It never imports torch, timm or Lightning."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from rareid.data.pixels import read_image
from rareid.deploy.model.arrays import ArrayPreprocess, ImageInput, image_list
from rareid.deploy.model.backends import FileBackend, open_file_runtime
from rareid.levels import query_level


class OnnxEmbedder:
    """Images (paths or uint8 HxWx3 RGB arrays) -> zero-padded embeddings (N, d) float32.

    Examples::

        embedder = OnnxEmbedder("bundle/")        # or "model.onnx", "model.xml", "hf-hub:org/name"
        vectors, levels = embedder.embed(["q1.jpg", "q2.jpg"])    # levels from the heights
        vectors = embedder.embed(["q1.jpg"], levels=[2])[0]        # or chosen
    """

    def __init__(
        self,
        model: str | os.PathLike,
        threads: int | None = None,
        weights: str | os.PathLike | None = None,
    ) -> None:
        from rareid.deploy.model.bundle import resolve_bundle

        self.backend: FileBackend = open_file_runtime(
            resolve_bundle(model, weights), threads=threads
        )
        meta = self.backend.metadata
        if "rareid_img_size" not in meta:
            raise ValueError(
                f"{str(model)!r} lacks rareid metadata (input size, rates): export it with "
                "`rareid export`"
            )
        self.preprocess = ArrayPreprocess(
            tuple(int(v) for v in json.loads(meta["rareid_img_size"])),
            tuple(float(v) for v in json.loads(meta["rareid_mean"])),
            tuple(float(v) for v in json.loads(meta["rareid_std"])),
        )
        self.rates = list(self.backend.rates or [])
        self.split_sizes = list(self.backend.split_sizes or [])
        self.level_policy = meta.get("rareid_level_policy", "nearest")
        #: A crop this high (px) is a rate-1 crop: the model's input height.
        self.reference_height = float(self.preprocess.img_size[0])

    @property
    def dim(self) -> int:
        return int(sum(self.split_sizes))

    def levels_for(self, heights: Sequence[float]) -> np.ndarray:
        """The level each crop height supports (rate = input height / crop height)."""
        return np.asarray(
            [
                query_level(
                    max(float(h), 1.0), self.rates, self.reference_height, self.level_policy
                )[1]
                for h in heights
            ],
            dtype=np.int64,
        )

    def embed(
        self,
        images: ImageInput | Iterable[ImageInput],
        levels: Sequence[int] | np.ndarray | None = None,
        batch_size: int = 64,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings (N, d) float32, levels (N,)) of ``images``; ``levels`` None: from each
        image's height."""
        arrays = [
            read_image(image) if isinstance(image, str | os.PathLike | Path) else image
            for image in image_list(images)
        ]
        if levels is None:
            levels = self.levels_for([array.shape[0] for array in arrays])
        levels = np.asarray(levels, dtype=np.int64).reshape(-1)
        if levels.size != len(arrays):
            raise ValueError(f"expected one level per image ({len(arrays)}), got {levels.size}")
        parts = [
            self.backend.embed_arrays(
                self.preprocess.arrays(arrays[start : start + batch_size]),
                levels[start : start + batch_size],
            )
            for start in range(0, len(arrays), batch_size)
        ]
        vectors = np.concatenate(parts) if parts else np.empty((0, self.dim), dtype=np.float32)
        return vectors, levels
