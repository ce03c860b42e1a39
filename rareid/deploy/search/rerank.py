"""Gallery-level k-reciprocal re-ranking: :func:`rareid.evaluation.rerank.k_reciprocal_distances`
over every image of a :class:`~rareid.deploy.gallery.index.GalleryIndex`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from rareid.evaluation.rerank import k_reciprocal_distances

if TYPE_CHECKING:
    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.deploy.search.exact import SearchResult


def rerank_search(
    index: GalleryIndex,
    queries: torch.Tensor,
    levels: torch.Tensor,
    k: int,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> tuple[SearchResult, torch.Tensor]:
    """Top-``k`` by re-ranked distance over the whole index, and the matches' prefix distances.

    Costs a pass over all gallery pairs (chunked): meant for galleries of thousands of images.
    Every gallery image is re-scored, so no ranking engine is involved.

    Examples::

        result, prefix_distances = rerank_search(index, query_embeddings, levels, k=10)

    """
    from rareid.deploy.search.exact import SearchResult, rescore

    reranked = k_reciprocal_distances(
        queries,
        levels,
        index.embeddings,
        index.levels,
        index.split_sizes,
        k1=k1,
        k2=k2,
        lambda_value=lambda_value,
        metric=index.metric,
    )
    k = min(k, len(index))
    order = torch.argsort(reranked, dim=1, stable=True)[:, :k]
    distances = reranked.gather(1, order).float()
    original = rescore(
        queries.float(), levels, index.embeddings, order, index.split_sizes, index.metric
    )
    return SearchResult(order, distances, levels), original
