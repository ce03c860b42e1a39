"""Embedding head, varying-length padding (Eq. 2), prototype classifier, verification MLP."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from rareid.levels import prefix_lengths

SplitMode = Literal["proportional", "equal"]


def proportional_prefix_lengths(embedding_dim: int, rates: Sequence[float]) -> list[int]:
    """Embedding length of each level (1..m) in proportion to its resolution (Table II).

    A level at rate ``r`` encodes its image in ``d * r_min / r`` dimensions (an r = 2 query
    against an HR gallery uses half of ``v``), rounded half up; the HR level uses all of ``d``.
    """
    ordered = sorted(float(rate) for rate in rates)
    highest = ordered[0]
    # Level 1 is the lowest resolution (largest rate), level m the HR one.
    return [math.floor(embedding_dim * highest / rate + 0.5) for rate in reversed(ordered)]


def resolve_split_sizes(
    embedding_dim: int,
    rates: Sequence[float],
    split: SplitMode = "proportional",
    split_sizes: Sequence[int] | None = None,
) -> list[int]:
    """Sizes of the ``m`` sub-vectors, level 1 (lowest resolution) first.

    ``split_sizes`` (explicit, must sum to ``d``) wins over ``split``. ``proportional``
    gives level ``k`` a prefix of length ~ ``d / r_k`` (rates [1, 2, 3, 4]: sizes d/4,
    d/12, d/6, d/2); ``equal`` gives every level ``d / m`` more dimensions.
    """
    num_levels = len(rates)
    if split_sizes is not None:
        sizes = [int(s) for s in split_sizes]
        if len(sizes) != num_levels or sum(sizes) != embedding_dim or min(sizes) <= 0:
            raise ValueError(
                f"split_sizes={sizes} must have one positive size per rate ({num_levels}) "
                f"summing to embedding_dim={embedding_dim}"
            )
        return sizes
    if split == "equal":
        if embedding_dim % num_levels:
            raise ValueError(
                f"embedding_dim={embedding_dim} does not split into {num_levels} equal "
                "sub-vectors (one per rate): choose a multiple of the number of rates, "
                "split: proportional, or split_sizes"
            )
        return [embedding_dim // num_levels] * num_levels
    if split != "proportional":
        raise ValueError(f"split must be 'proportional' or 'equal', got {split!r}")
    prefixes = proportional_prefix_lengths(embedding_dim, rates)
    sizes = [end - start for start, end in zip([0, *prefixes[:-1]], prefixes, strict=True)]
    if min(sizes) < 1:
        raise ValueError(
            f"split: proportional gives empty sub-vectors for embedding_dim={embedding_dim} and "
            f"rates={sorted(float(rate) for rate in rates)} (prefix lengths {prefixes}): raise "
            "embedding_dim, use split: equal, or set split_sizes"
        )
    return sizes


def level_mask(
    levels: torch.Tensor, split_sizes: Sequence[int], dtype=torch.float32
) -> torch.Tensor:
    """(N, d) mask: 1 on the first ``k`` sub-vectors of a level-``k`` sample, 0 after."""
    lengths = torch.tensor(prefix_lengths(split_sizes), device=levels.device)[levels - 1]
    positions = torch.arange(sum(split_sizes), device=levels.device)
    return (positions[None, :] < lengths[:, None]).to(dtype)


def pad_by_level(v: torch.Tensor, levels: torch.Tensor, split_sizes: Sequence[int]) -> torch.Tensor:
    """Zero the sub-vectors above each sample's level.

    Multiplying by the mask also makes the gradient into the padded part exactly zero.
    """
    return v * level_mask(levels, split_sizes, v.dtype)


class EmbeddingHead(nn.Module):
    """Pooled backbone feature -> FC to ``d`` -> ``v = [v_1 .. v_m]``.

    ``batchnorm`` adds a BatchNorm1d after the FC (the re-ID "BN neck"); off by default,
    as in the paper, but it speeds up training from scratch a lot.
    """

    def __init__(self, in_features: int, embedding_dim: int, batchnorm: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, embedding_dim)
        self.norm = nn.BatchNorm1d(embedding_dim) if batchnorm else nn.Identity()

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc(pooled))


class PrototypeClassifier(nn.Module):
    """Bias-free identity prototypes ``W`` (d x C).

    On a zero-padded level-``k`` embedding only the first ``k`` sub-classifiers
    contribute to the logits (paper §III-D).
    """

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 identities, got {num_classes}")
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.001)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.t()


class VerificationHead(nn.Module):
    """MLP ``f: R^d -> R`` on the difference of two embeddings cut to the lower level (Eq. 4)."""

    def __init__(self, embedding_dim: int, split_sizes: Sequence[int], hidden: int = 512) -> None:
        super().__init__()
        self.split_sizes = list(split_sizes)
        self.fc1 = nn.Linear(embedding_dim, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, difference: torch.Tensor) -> torch.Tensor:
        """Logits (N,) for already-cut differences (N, d)."""
        return self.fc2(torch.relu(self.fc1(difference))).squeeze(-1)

    def forward_pairs(
        self,
        z_a: torch.Tensor,
        levels_a: torch.Tensor,
        z_b: torch.Tensor,
        levels_b: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (Na, Nb) of every a-b pair, each difference cut to ``min(k_a, k_b)``.

        Equal to ``forward`` on the masked differences, but the first (linear) layer
        is applied once per level prefix, so no ``Na x Nb x d`` tensor is built.
        """
        lengths = prefix_lengths(self.split_sizes)
        weight = self.fc1.weight
        # (m, N, hidden): projection of each embedding's level-k prefix, for every k.
        proj_a = torch.stack([z_a[:, :n] @ weight[:, :n].t() for n in lengths])
        proj_b = torch.stack([z_b[:, :n] @ weight[:, :n].t() for n in lengths])
        common = torch.minimum(levels_a[:, None], levels_b[None, :]) - 1  # (Na, Nb)
        rows = torch.arange(z_a.shape[0], device=z_a.device)[:, None].expand_as(common)
        cols = torch.arange(z_b.shape[0], device=z_b.device)[None, :].expand_as(common)
        hidden = proj_a[common, rows] - proj_b[common, cols] + self.fc1.bias
        return self.fc2(torch.relu(hidden)).squeeze(-1)
