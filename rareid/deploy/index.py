"""``GalleryIndex``: the embeddings of a folder of HR gallery crops, saved in one file.

The file is a plain ``.npz`` archive (NumPy arrays and one JSON string) that loads with
``allow_pickle=False``: opening an index someone sent you runs no code. It holds the zero-padded
HR (level ``m``) embeddings, the image paths relative to the gallery folder, the native image
sizes (their median height is the reference a query's rate is estimated against), the levels,
the SHA-256 of the checkpoint that embedded them and the model's rates and sub-vector sizes, so
that a query is embedded by the same model and compared on the right prefix. One index serves
every query level: a level-``k`` query is ranked on the first ``k`` sub-vectors of the same
stored vectors (Eq. 2), no per-level copy is made.

``rareid index`` (:func:`index_main`) is a thin command-line wrapper around this class.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from rareid.deploy.backends import EmbeddingBackend, TorchBackend, as_backend
from rareid.deploy.inference import (
    ImageInput,
    Preprocess,
    file_sha256,
    list_images,
    load_model,
    read_checkpoint,
)

if TYPE_CHECKING:
    from rareid.deploy.search import SearchResult
    from rareid.models.module import RAReIDModule

FORMAT_VERSION = 1
Metric = Literal["euclidean", "cosine"]
Backend = Literal["auto", "torch", "faiss"]


class GalleryIndexError(ValueError):
    """An index file or an index operation that cannot go on (named so, not a traceback)."""


@dataclass
class SkippedImage:
    """An image that could not be read, and why."""

    path: str
    reason: str


@dataclass
class GalleryIndex:
    """HR gallery embeddings with their file names, sizes and the model that made them."""

    embeddings: torch.Tensor  # (N, d) float32, zero-padded, on the CPU
    paths: list[str]  # relative to ``root`` (POSIX separators)
    sizes: np.ndarray  # (N, 2) int: native (height, width)
    levels: torch.Tensor  # (N,) int64, 1..m
    root: str
    rates: list[float]
    split_sizes: list[int]
    metric: Metric
    preprocess: Preprocess
    checkpoint_sha256: str = ""
    checkpoint_path: str = ""
    level_policy: str = "nearest"  # how a query's estimated rate becomes a level (the datamodule's)
    calibration: dict[str, Any] | None = None
    skipped: list[SkippedImage] = field(default_factory=list)

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def num_levels(self) -> int:
        return len(self.rates)

    @property
    def reference_height(self) -> float:
        """Median native height of the gallery images: the height of a rate-1 query."""
        if len(self) == 0:
            raise GalleryIndexError("the index is empty: no reference height")
        return float(np.median(self.sizes[:, 0]))

    def absolute_path(self, position: int) -> Path:
        return Path(self.root) / self.paths[position]

    # ------------------------------------------------------------------ building
    @classmethod
    def empty(
        cls,
        model: RAReIDModule,
        root: str | os.PathLike,
        preprocess: Preprocess | None = None,
        checkpoint_path: str | os.PathLike | None = None,
    ) -> GalleryIndex:
        """An index with no images yet, bound to ``model`` (and its checkpoint, if given)."""
        level_policy = "nearest"
        if checkpoint_path:
            data = read_checkpoint(checkpoint_path).get("datamodule_hyper_parameters") or {}
            level_policy = str(data.get("level_policy") or "nearest")
        return cls(
            embeddings=torch.empty(0, model.embedding_dim),
            paths=[],
            sizes=np.empty((0, 2), dtype=np.int64),
            levels=torch.empty(0, dtype=torch.long),
            root=str(Path(root).resolve()),
            rates=[float(r) for r in model.rates],
            split_sizes=[int(s) for s in model.distance_split_sizes],
            metric=model.hparams.distance,
            preprocess=preprocess or Preprocess.from_model(model),
            checkpoint_sha256=file_sha256(checkpoint_path) if checkpoint_path else "",
            checkpoint_path=str(Path(checkpoint_path).resolve()) if checkpoint_path else "",
            level_policy=level_policy,
        )

    @classmethod
    def build(
        cls,
        model: RAReIDModule,
        paths: Sequence[str | os.PathLike],
        root: str | os.PathLike | None = None,
        preprocess: Preprocess | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        batch_size: int = 64,
        progress: bool = False,
    ) -> GalleryIndex:
        """Embed ``paths`` at the HR level. ``root`` (default: their common folder) makes the
        stored paths relative. Unreadable images land in ``index.skipped``."""
        paths = [Path(p) for p in paths]
        if root is None:
            root = os.path.commonpath([str(p.resolve().parent) for p in paths]) if paths else "."
        index = cls.empty(model, root, preprocess, checkpoint_path)
        index.add(model, paths, batch_size=batch_size, progress=progress)
        return index

    def check_model(self, model: RAReIDModule | EmbeddingBackend) -> None:
        """Refuse a model whose rates or sub-vectors differ from the ones of the index (a runtime
        that does not state them is taken at its word)."""
        backend = as_backend(model)
        rates, sizes = backend.rates, backend.split_sizes
        if rates is None or sizes is None:
            return
        if rates != self.rates or sizes != self.split_sizes:
            raise GalleryIndexError(
                f"the model (rates {rates}, sub-vectors {sizes}) is not the one of the index "
                f"(rates {self.rates}, sub-vectors {self.split_sizes})"
            )

    def add(
        self,
        model: RAReIDModule | EmbeddingBackend,
        paths: Sequence[str | os.PathLike],
        batch_size: int = 64,
        progress: bool = False,
    ) -> tuple[int, int, list[SkippedImage]]:
        """Embed and append the images of ``paths`` not yet in the index.

        Returns (added, already present, skipped); the skipped images (unreadable) are also
        appended to ``self.skipped``. ``model``: a model or any embedding backend.
        """
        import cv2
        from tqdm.auto import tqdm

        backend = as_backend(model)
        self.check_model(backend)
        known = set(self.paths)
        todo: list[tuple[str, Path]] = []
        present = 0
        for path in paths:
            relative = Path(os.path.relpath(Path(path).resolve(), self.root)).as_posix()
            if relative in known:
                present += 1
                continue
            known.add(relative)
            todo.append((relative, Path(path)))
        skipped: list[SkippedImage] = []
        vectors, names, sizes = [], [], []
        level = self.num_levels
        bar = tqdm(total=len(todo), desc="embedding gallery", unit="img", disable=not progress)
        for start in range(0, len(todo), batch_size):
            batch, batch_names, batch_sizes = [], [], []
            for relative, path in todo[start : start + batch_size]:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    skipped.append(SkippedImage(str(path), "unreadable or not an image"))
                    continue
                batch.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                batch_names.append(relative)
                batch_sizes.append(image.shape[:2])
            if batch:
                tensors = self.preprocess(batch)
                levels = torch.full((len(batch),), level, dtype=torch.long)
                vectors.append(backend.embed(tensors, levels))
                names += batch_names
                sizes += batch_sizes
            bar.update(len(todo[start : start + batch_size]))
        bar.close()
        if vectors:
            self.embeddings = torch.cat([self.embeddings, *vectors])
            self.paths += names
            self.sizes = np.concatenate([self.sizes, np.asarray(sizes, dtype=np.int64)])
            self.levels = torch.cat(
                [self.levels, torch.full((len(names),), level, dtype=torch.long)]
            )
        self.skipped += skipped
        return len(names), present, skipped

    # ------------------------------------------------------------------ searching
    def search(
        self,
        queries: torch.Tensor,
        levels: torch.Tensor | Sequence[int],
        k: int = 10,
        backend: Backend = "auto",
    ) -> SearchResult:
        """Top-``k`` gallery matches of zero-padded query embeddings at their levels."""
        from rareid.deploy.search import prefix_search

        return prefix_search(self, queries, levels, k, backend)

    def search_images(
        self,
        model: RAReIDModule | EmbeddingBackend,
        images: Sequence[ImageInput],
        levels: Sequence[int] | torch.Tensor,
        k: int = 10,
        backend: Backend = "auto",
    ) -> SearchResult:
        """Embed ``images`` at ``levels`` with ``model`` (this index's, or a backend running
        it) and search."""
        runtime = as_backend(model)
        self.check_model(runtime)
        levels = torch.as_tensor(levels).long().reshape(-1)
        return self.search(runtime.embed(self.preprocess(images), levels), levels, k, backend)

    # ------------------------------------------------------------------ files
    def _meta(self) -> dict[str, Any]:
        return {
            "format": "rareid-gallery-index",
            "version": FORMAT_VERSION,
            "root": self.root,
            "rates": self.rates,
            "split_sizes": self.split_sizes,
            "metric": self.metric,
            "img_size": list(self.preprocess.img_size),
            "mean": list(self.preprocess.mean),
            "std": list(self.preprocess.std),
            "checkpoint_sha256": self.checkpoint_sha256,
            "checkpoint_path": self.checkpoint_path,
            "level_policy": self.level_policy,
            "calibration": self.calibration,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index atomically (a temporary file in the same folder, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "embeddings": self.embeddings.detach().cpu().float().numpy(),
            "sizes": np.asarray(self.sizes, dtype=np.int64).reshape(-1, 2),
            "levels": self.levels.cpu().numpy().astype(np.int64),
            "paths": np.asarray(self.paths, dtype=str),
            "meta": np.asarray(json.dumps(self._meta())),
        }
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, **arrays)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> GalleryIndex:
        """Read an index written by :meth:`save` (no pickle involved)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"index {str(path)!r} does not exist; build it with `rareid index`"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {key: data[key] for key in ("embeddings", "sizes", "levels", "paths")}
        except (OSError, ValueError, KeyError) as error:
            raise GalleryIndexError(f"{str(path)!r} is not a rareid index file: {error}") from None
        if meta.get("format") != "rareid-gallery-index":
            raise GalleryIndexError(f"{str(path)!r} is not a rareid index file")
        if meta.get("version") != FORMAT_VERSION:
            raise GalleryIndexError(
                f"{str(path)!r} has index format version {meta.get('version')}, this rareid "
                f"reads version {FORMAT_VERSION}: rebuild it with `rareid index`"
            )
        return cls(
            embeddings=torch.from_numpy(arrays["embeddings"].astype(np.float32)),
            paths=[str(p) for p in arrays["paths"].tolist()],
            sizes=arrays["sizes"].astype(np.int64).reshape(-1, 2),
            levels=torch.from_numpy(arrays["levels"].astype(np.int64)),
            root=meta["root"],
            rates=[float(r) for r in meta["rates"]],
            split_sizes=[int(s) for s in meta["split_sizes"]],
            metric=meta["metric"],
            preprocess=Preprocess(tuple(meta["img_size"]), tuple(meta["mean"]), tuple(meta["std"])),
            checkpoint_sha256=meta["checkpoint_sha256"],
            checkpoint_path=meta["checkpoint_path"],
            level_policy=meta.get("level_policy", "nearest"),
            calibration=meta.get("calibration"),
        )


def embed_tensors(model: RAReIDModule, images: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """``model.embed`` in eval mode (BatchNorm statistics untouched), result on the CPU."""
    return TorchBackend(model).embed(images, levels)


def resolve_device(device: str) -> str:
    """``auto``: CUDA when available, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# ---------------------------------------------------------------------- command line
def index_main(argv: Sequence[str]) -> int:
    """``rareid index``: embed a gallery folder into an index file (or ``--add`` to one)."""
    parser = argparse.ArgumentParser(
        prog="rareid index",
        description="Embed every image under a gallery folder (HR level) into an index file.",
    )
    parser.add_argument("--ckpt", required=True, help="trained checkpoint (.ckpt)")
    parser.add_argument("--gallery", required=True, help="folder of gallery crops (recursive)")
    parser.add_argument("--out", required=True, help="index file to write, e.g. gallery.npz")
    parser.add_argument(
        "--add", action="store_true", help="append the images not yet in an existing index"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: GPU if any)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(list(argv))
    if args.batch_size < 1:
        parser.error(f"--batch-size: expected a positive integer, got {args.batch_size}")
    out = Path(args.out)
    if not Path(args.ckpt).is_file():
        parser.error(f"--ckpt: checkpoint {args.ckpt!r} does not exist")
    try:
        paths = list_images(args.gallery)
    except FileNotFoundError as error:
        parser.error(f"--gallery: {error}")
    if not paths:
        parser.error(f"--gallery: no jpg/png/bmp/webp image under {args.gallery!r}")
    if args.add:
        if not out.is_file():
            parser.error(f"--add: index {str(out)!r} does not exist; build it first without --add")
    elif out.exists():
        parser.error(f"--out: {str(out)!r} exists; pass --add to extend it or remove it first")
    try:
        index = GalleryIndex.load(out) if args.add else None
        if index is not None:
            digest = file_sha256(args.ckpt)
            if digest != index.checkpoint_sha256:
                parser.error(
                    f"--ckpt: {args.ckpt!r} is not the checkpoint the index {str(out)!r} was "
                    f"built with (SHA-256 {digest[:12]}… vs {index.checkpoint_sha256[:12]}…); "
                    "embeddings of two models cannot be mixed: build a new index"
                )
        model, preprocess = load_model(args.ckpt, resolve_device(args.device))
        if index is None:
            index = GalleryIndex.empty(model, args.gallery, preprocess, args.ckpt)
        added, present, skipped = index.add(
            model, paths, batch_size=args.batch_size, progress=not args.no_progress
        )
        for item in skipped:
            print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
        if len(index) == 0:
            parser.error(
                f"--gallery: none of the {len(paths)} images under {args.gallery!r} could be "
                "read; nothing written"
            )
        index.save(out)
    except (GalleryIndexError, ValueError, OSError) as error:
        parser.error(str(error))
    print(
        f"{out}: {len(index)} images ({added} added, {present} already indexed, "
        f"{len(skipped)} unreadable skipped)"
    )
    return 0
