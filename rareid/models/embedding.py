"""The embedding side of the model, in plain torch: backbone, resolution masks, varying-length
head, and what turns images at their levels into zero-padded embeddings and distances.

:class:`~rareid.models.module.RAReIDModule` trains it (it adds the losses, the metric and the
optimisers, and is a LightningModule); :class:`EmbeddingModel` carries the same network for
inference only, so that matching crops (``rareid index``, ``search``, ``calibrate``, ``export``)
never imports Lightning. Both hold the network under the same attribute names, so a training
checkpoint's ``state_dict`` loads into either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from rareid.evaluation.distances import level_distances
from rareid.levels import normalize_rates
from rareid.models.backbone import Backbone
from rareid.models.checks import check_images, level_index
from rareid.models.heads import EmbeddingHead, pad_by_level, resolve_split_sizes
from rareid.models.masks import ResolutionMasks, attach_masks

#: The constructor options that shape the embedding network, with ``RAReIDModule``'s defaults
#: (a test keeps the two in step); an older checkpoint without one of them gets the default.
EMBEDDING_OPTIONS: dict[str, Any] = {
    "backbone": "resnet50",
    "rates": (1, 2, 3, 4),
    "embedding_dim": 2048,
    "split": "proportional",
    "split_sizes": None,
    "embedding_norm": False,
    "pretrained": False,
    "weights_path": None,
    "img_size": (256, 128),
    "last_stride": None,
    "backbone_kwargs": None,
    "use_masks": True,
    "varying_length": True,
    "mask_init": "gaussian",
    "mask_granularity": "stage",
    "mask_init_mean": 0.0,
    "mask_init_std": 1.0,
    "distance": "euclidean",
    "channels_last": False,
}
#: The ``state_dict`` prefixes of the embedding network (the rest is training-only).
NETWORK_PREFIXES = ("backbone.", "masks.", "head.")


class LevelEmbedding:
    """Images at resolution levels -> zero-padded embeddings, and level-aware distances.

    Mixed into an ``nn.Module`` that has called :meth:`_build_network` and holds its options
    in ``self.hparams`` (attribute access).
    """

    hparams: Any
    masks: ResolutionMasks | None

    def _build_network(self, options: Mapping[str, Any]) -> None:
        self.rates = normalize_rates(options["rates"])
        self.num_levels = len(self.rates)
        self.split_sizes = resolve_split_sizes(
            options["embedding_dim"], self.rates, options["split"], options["split_sizes"]
        )
        self.embedding_dim = options["embedding_dim"]
        self.backbone = Backbone(
            options["backbone"],
            pretrained=options["pretrained"],
            weights_path=options["weights_path"],
            img_size=options["img_size"],
            last_stride=options["last_stride"],
            **(options["backbone_kwargs"] or {}),
        )
        self.masks = None
        if options["use_masks"]:
            self.masks = attach_masks(
                self.backbone,
                self.num_levels,
                options["mask_granularity"],
                options["mask_init_mean"],
                options["mask_init_std"],
                options["mask_init"],
            )
        self.head = EmbeddingHead(
            self.backbone.num_features, options["embedding_dim"], options["embedding_norm"]
        )

    @property
    def distance_split_sizes(self) -> list[int]:
        """Sub-vector sizes as seen by distances: one block when varying length is off."""
        if self.hparams.varying_length:
            return self.split_sizes
        return [self.embedding_dim]

    def _level_index(
        self,
        levels: torch.Tensor | Sequence[int],
        count: int | None = None,
        name: str = "levels",
    ) -> torch.Tensor:
        """Levels (1..m) as a long tensor of shape ``(count,)``; anything else is a ValueError."""
        return level_index(levels, self.rates, self.device, count, name)

    def _check_images(self, images: torch.Tensor) -> None:
        check_images(images, self.hparams.img_size)

    def forward(self, images: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """Un-padded embedding ``v`` (N, d); masks pick each sample's level."""
        levels = self._level_index(levels, images.shape[0])
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.masks is None:
            return self.head(self.backbone(images))
        with self.masks.levels(levels - 1):
            return self.head(self.backbone(images))

    def embedding_levels(self, levels: torch.Tensor) -> torch.Tensor:
        """Levels that decide the embedding length: all-``m`` when varying length is off."""
        if self.hparams.varying_length:
            return levels
        return torch.full_like(levels, self.num_levels)

    def pad(self, v: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        if not self.hparams.varying_length:
            return v
        return pad_by_level(v, levels, self.split_sizes)

    @torch.no_grad()
    def embed(
        self,
        images: torch.Tensor,
        levels: torch.Tensor | Sequence[int],
        subvectors: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Zero-padded embeddings (N, d) of images at their resolution levels (1..m).

        ``subvectors`` (1..m per image) keeps that many sub-vectors instead of the level's
        (Table II's forced query length); the masks always follow ``levels``.
        Always runs in eval mode (BatchNorm uses its running statistics and never updates
        them, so a batch of one works) and restores every submodule's mode afterwards.
        Float images of another precision (float16, float64) are converted to the model's
        parameter dtype; the embeddings come back in that dtype, also under bf16 autocast.
        """
        self._check_images(images)
        dtype = next(self.parameters()).dtype
        images = images.to(self.device, dtype)
        levels = self._level_index(levels, images.shape[0])
        kept = levels if subvectors is None else self._level_index(subvectors, len(levels))
        modes = {module: module.training for module in self.modules()}
        self.eval()
        try:
            return self.pad(self(images, levels).to(dtype), kept)
        finally:
            for module, training in modes.items():
                module.training = training

    def distance(
        self,
        query: torch.Tensor,
        query_levels: torch.Tensor | Sequence[int],
        gallery: torch.Tensor,
        gallery_levels: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """(Q, G) distances over the first ``min(k_q, k_g)`` sub-vectors (Eq. 2).

        ``gallery_levels=None`` means an HR gallery (level m).
        """
        q_levels = self._level_index(query_levels, query.shape[0], "query_levels")
        g_levels = (
            None
            if gallery_levels is None
            else self._level_index(gallery_levels, gallery.shape[0], "gallery_levels")
        )
        if not self.hparams.varying_length:
            # One block of sub-vector sizes: every level uses the whole embedding.
            q_levels, g_levels = torch.ones_like(q_levels), None
        return level_distances(
            query,
            q_levels,
            gallery,
            g_levels,
            self.distance_split_sizes,
            metric=self.hparams.distance,
        )


class EmbeddingModel(LevelEmbedding, nn.Module):
    """A trained network for inference: what :func:`rareid.deploy.load_model` returns.

    Same ``embed``, ``distance``, ``rates``, ``split_sizes`` and ``hparams`` as the training
    module, without its losses, metric or Lightning.
    """

    def __init__(self, **options: Any) -> None:
        nn.Module.__init__(self)
        unknown = sorted(set(options) - set(EMBEDDING_OPTIONS))
        if unknown:
            raise TypeError(f"EmbeddingModel: unknown options {unknown}")
        self.hparams = SimpleNamespace(**{**EMBEDDING_OPTIONS, **options})
        self._build_network(vars(self.hparams))
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
