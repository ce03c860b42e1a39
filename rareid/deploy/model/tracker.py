"""Embeddings for a multi-object tracker: :class:`TrackerEmbedder` crops every detection box of a
video frame, embeds each one at the level its height supports and returns one float32 row per
box, the shape trackers take from an outside re-ID model (``tracker.update(dets, frame,
embs=emb(frame, dets[:, :4]))``). It runs an exported model (ONNX, OpenVINO or a bundle) through
:class:`~rareid.deploy.model.embedder.OnnxEmbedder`: no torch.
"""

from __future__ import annotations

import os

import numpy as np

from rareid.deploy.model.embedder import OnnxEmbedder


class TrackerEmbedder:
    """``emb(frame, xyxy) -> (N, d)`` float32 embeddings of the boxes ``xyxy`` (N, 4) of
    ``frame`` (H, W, 3 uint8; BGR as OpenCV decodes video, unless ``bgr=False``).

    A box of height ``h`` px is embedded at the level of rate ``input height / h``
    (:meth:`embed` returns the levels too); its vector is zero-padded past that level's prefix,
    so boxes of one person at different sizes are compared on the prefix they share. Boxes are
    clipped to the frame; one with no pixel inside it gets a row of zeros and level 0.

    Examples::

        emb = TrackerEmbedder("bundle/")                        # or "model.onnx"
        features = emb(frame, dets[:, :4])                      # (N, d) float32
        features, levels = emb.embed(frame, dets[:, :4])        # and each box's level
    """

    def __init__(
        self,
        model: str | os.PathLike,
        bgr: bool = True,
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        self.embedder = OnnxEmbedder(model, threads=threads)
        self.bgr = bgr
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def embed(self, frame: np.ndarray, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings (N, d) float32, levels (N,) int64; 0 for an empty box)."""
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3):
            raise ValueError(f"frame: expected an (H, W, 3) image array, got {np.shape(frame)}")
        boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        height, width = frame.shape[:2]
        rgb = frame[..., ::-1] if self.bgr else frame
        crops, rows = [], []
        for row, (left, top, right, bottom) in enumerate(boxes):
            x0, x1 = int(np.clip(np.floor(left), 0, width)), int(np.clip(np.ceil(right), 0, width))
            y0, y1 = (
                int(np.clip(np.floor(top), 0, height)),
                int(np.clip(np.ceil(bottom), 0, height)),
            )
            if x1 > x0 and y1 > y0:
                crops.append(np.ascontiguousarray(rgb[y0:y1, x0:x1], dtype=np.uint8))
                rows.append(row)
        vectors = np.zeros((len(boxes), self.dim), dtype=np.float32)
        levels = np.zeros(len(boxes), dtype=np.int64)
        if crops:
            found, found_levels = self.embedder.embed(crops, batch_size=self.batch_size)
            vectors[rows], levels[rows] = found, found_levels
        return vectors, levels

    def __call__(self, frame: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        return self.embed(frame, xyxy)[0]
