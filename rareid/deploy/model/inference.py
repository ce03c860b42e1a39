"""Images in, embeddings out: the preprocessing a trained checkpoint expects, as a public helper.

A model only gives sensible embeddings on images resized to its own input size and normalised
with the statistics it was trained with. Both live in the checkpoint: the input size in the
model's hyperparameters (``img_size``), the normalisation in the datamodule's
(``datamodule_hyper_parameters``: ``mean``, ``std``). A checkpoint without datamodule
hyperparameters falls back to the backbone's timm pretrained configuration (what the CLI links
into the datamodule), then to ImageNet's statistics.

Real images are used as they are: a small CCTV crop is resized (bilinear) straight to the input
size, exactly like a real low-resolution query in evaluation; no synthetic degradation is added.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rareid.data.transforms import backbone_statistics
from rareid.deploy.model.arrays import (
    IMAGE_SUFFIXES,
    ArrayPreprocess,
    ImageInput,
    file_sha256,
    image_list,
    list_images,
)

if TYPE_CHECKING:
    from rareid.models.embedding import EmbeddingModel, LevelEmbedding

__all__ = ["IMAGE_SUFFIXES", "Preprocess", "file_sha256", "list_images", "load_model"]


@dataclass(frozen=True)
class Preprocess(ArrayPreprocess):
    """Turns image files or uint8 HxWx3 RGB arrays into the (N, 3, H, W) tensors ``embed`` takes.

    Call it on a list of images (or an (N, H, W, 3) array); one path or one HxWx3 array is a
    batch of one. The numbers are those of :class:`~rareid.deploy.model.arrays.ArrayPreprocess`
    (the torch-free runtimes' preprocessing), as tensors.

    Build it with :meth:`from_checkpoint` (or :meth:`from_model`) so that size and
    normalisation are the ones the model was trained with.

    Examples::

        >>> import numpy as np
        >>> preprocess = Preprocess((128, 64))
        >>> preprocess(np.zeros((100, 40, 3), dtype=np.uint8)).shape
        torch.Size([1, 3, 128, 64])
    """

    @classmethod
    def from_checkpoint_dict(cls, checkpoint: dict[str, Any]) -> Preprocess:
        """From a loaded Lightning checkpoint (``torch.load`` result)."""
        hparams = checkpoint.get("hyper_parameters") or {}
        if "img_size" not in hparams:
            raise ValueError(
                "the checkpoint has no model hyperparameters (img_size): is it a rareid "
                "checkpoint written by `rareid fit`?"
            )
        data = checkpoint.get("datamodule_hyper_parameters") or {}
        if "mean" in data and "std" in data:
            mean, std = data["mean"], data["std"]
        else:
            mean, std = backbone_statistics(str(hparams.get("backbone", "")))
        size = hparams["img_size"]
        return cls(
            (int(size[0]), int(size[1])),
            tuple(float(v) for v in mean),
            tuple(float(v) for v in std),
        )

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> Preprocess:
        """From a checkpoint file."""
        return cls.from_checkpoint_dict(read_checkpoint(path))

    @classmethod
    def from_model(
        cls, model: LevelEmbedding, checkpoint: dict[str, Any] | None = None
    ) -> Preprocess:
        """From a model in memory; ``checkpoint`` adds the datamodule's normalisation if known."""
        if checkpoint is not None:
            return cls.from_checkpoint_dict(checkpoint)
        mean, std = backbone_statistics(model.hparams.backbone)
        size = model.hparams.img_size
        return cls((int(size[0]), int(size[1])), mean, std)

    def image(self, image: ImageInput) -> torch.Tensor:
        """One image (a path or a uint8 HxWx3 RGB array) -> (3, H, W) float32."""
        return torch.from_numpy(self.array(image))

    def __call__(self, images: ImageInput | Iterable[ImageInput]) -> torch.Tensor:
        """Several images -> one (N, 3, H, W) batch; one image (a path or an HxWx3 array) is a
        batch of one."""
        return torch.from_numpy(self.arrays(images))


def checkpoint_file(path: str | os.PathLike) -> Path:
    """``path`` once it is a file: a folder (a run directory, say) is a ``ValueError`` that
    names the ``.ckpt`` files in it, a missing file a ``FileNotFoundError``."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("*.ckpt"))[:3]
        hint = f", e.g. {', '.join(str(file) for file in found)}" if found else ""
        raise ValueError(f"checkpoint {str(path)!r} is a folder: pass a .ckpt file{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint file (:func:`checkpoint_file`) as a dict, on the CPU, through the one reader
    of :mod:`rareid.checkpoint_reader` (no code runs; a foreign or damaged file is a
    ``CheckpointError`` naming it)."""
    from rareid.checkpoint_reader import read_checkpoint as read_checkpoint_file

    return read_checkpoint_file(checkpoint_file(path))


def checkpoint_facts(path: str | os.PathLike) -> tuple[str, str, str]:
    """(SHA-256, level policy, distance) of a checkpoint file or a bundle: the hash names the
    checkpoint an index was built with (a bundle records its checkpoint's)."""
    from rareid.deploy.model.bundle import is_bundle, resolve_bundle, verify_bundle

    path = resolve_bundle(path)
    if is_bundle(path):
        config = verify_bundle(path)
        return config["checkpoint_sha256"], config["level_policy"], config["distance"]
    checkpoint = read_checkpoint(path)
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    distance = str((checkpoint.get("hyper_parameters") or {}).get("distance") or "")
    return file_sha256(path), str(data.get("level_policy") or "nearest"), distance


def check_finite_weights(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose weights hold NaN or infinity (a diverged training): every
    embedding it gives would be meaningless."""
    state = checkpoint.get("state_dict") or {}
    bad = [
        name
        for name, value in state.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]
    if bad:
        raise ValueError(
            f"checkpoint {str(path)!r} holds NaN or infinite weights ({len(bad)} tensor(s), e.g. "
            f"{bad[0]}): the training diverged; use an earlier checkpoint"
        )


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[EmbeddingModel, Preprocess]:
    """An eval-mode model and its preprocessing from a checkpoint file or a model bundle (a
    folder written by ``rareid export --format bundle``, or ``hf-hub:org/name``; read from JSON
    and safetensors, nothing unpickled).

    The network comes back as a plain-torch :class:`~rareid.models.embedding.EmbeddingModel`
    (no Lightning import): the losses, the metric and the classifier of the training identities
    are not needed to embed. Pretrained weights are never fetched (the checkpoint holds every
    weight). A checkpoint whose weights hold NaN or infinity (a diverged training) is refused
    here, once, for every command that loads one.

    Examples::

        model, preprocess = load_model("runs/market1501/checkpoints/last.ckpt")
        embeddings = model.embed(preprocess(["query/0001_c1.jpg"]), [2])  # a level-2 query
    """
    from rareid.deploy.model.bundle import HUB_PREFIX, is_bundle, resolve_bundle
    from rareid.models.embedding import EMBEDDING_OPTIONS, NETWORK_PREFIXES, EmbeddingModel

    if is_bundle(path) or str(path).startswith(HUB_PREFIX):
        model, preprocess = load_bundle_model(resolve_bundle(path))
        return model.to(device).eval(), preprocess
    checkpoint = read_checkpoint(path)
    check_finite_weights(checkpoint, path)
    preprocess = Preprocess.from_checkpoint_dict(checkpoint)
    # LightningCLI adds bookkeeping entries (``_instantiator``, ``_class_path``) and the
    # training options sit beside the network's: keep the network's own.
    options = {k: v for k, v in checkpoint["hyper_parameters"].items() if k in EMBEDDING_OPTIONS}
    options.update(pretrained=False, weights_path=None)
    state = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith(NETWORK_PREFIXES)}
    model = EmbeddingModel(**options)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {str(path)!r} does not match its own model options: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.to(device).eval(), preprocess


def embed_images(
    model: LevelEmbedding,
    preprocess: Preprocess,
    images: ImageInput | Sequence[ImageInput],
    levels: Sequence[int] | torch.Tensor,
    batch_size: int = 64,
) -> torch.Tensor:
    """Zero-padded embeddings (N, d) on the CPU of ``images`` (or of one image) at their levels,
    in batches."""
    from rareid.deploy.model.inputs import integer_levels, positive_batch_size

    positive_batch_size(batch_size)
    images = image_list(images)
    levels = integer_levels(levels)
    if levels.numel() != len(images):
        raise ValueError(f"expected one level per image ({len(images)}), got {levels.numel()}")
    was_training = model.training
    model.eval()
    try:
        parts = [
            model.embed(
                preprocess(images[start : start + batch_size]), levels[start : start + batch_size]
            ).cpu()
            for start in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    if not parts:
        return torch.empty(0, model.embedding_dim)
    return torch.cat(parts)


def load_bundle_model(folder: str | Path) -> tuple[EmbeddingModel, Preprocess]:
    """The eval-mode network of a bundle and its preprocessing, from JSON and safetensors
    (every file's hash checked first; nothing unpickled)."""
    from safetensors.torch import load_file

    from rareid.deploy.model.bundle import WEIGHTS_FILE, verify_bundle
    from rareid.models.embedding import EmbeddingModel

    folder = Path(folder)
    config = verify_bundle(folder)
    model = EmbeddingModel(**config["model_options"])
    state = load_file(str(folder / WEIGHTS_FILE))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise ValueError(
            f"bundle {str(folder)!r}: weights do not fit its config ({first})"
        ) from None
    if not all(bool(torch.isfinite(value).all()) for value in state.values()):
        raise ValueError(f"bundle {str(folder)!r} holds NaN or infinite weights")
    preprocess = Preprocess(
        tuple(int(v) for v in config["img_size"]),
        tuple(float(v) for v in config["mean"]),
        tuple(float(v) for v in config["std"]),
    )
    return model.eval(), preprocess
