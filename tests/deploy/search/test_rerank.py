"""k-reciprocal re-ranking: the memory-bounded, level-aware version equals a straightforward dense
implementation of the published algorithm (written here, on a full distance matrix)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rareid.evaluation.distances import level_distances
from rareid.evaluation.rerank import k_reciprocal_distances

SPLIT = [3, 5, 4, 4]


def dense_prefix_distances(vectors, levels, split, metric):
    """Every pair, one at a time: distance over the first min(k_a, k_b) sub-vectors."""
    bounds = np.cumsum(split)
    total = len(vectors)
    out = np.zeros((total, total))
    for a in range(total):
        for b in range(total):
            length = bounds[min(levels[a], levels[b]) - 1]
            x, y = vectors[a, :length], vectors[b, :length]
            if metric == "cosine":
                out[a, b] = max(0.0, 1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
            else:
                out[a, b] = ((x - y) ** 2).sum()
    return out


def dense_rerank(query, q_levels, gallery, g_levels, split, k1, k2, lam, metric="euclidean"):
    """Zhong et al. 2017 on a dense (Q+G)^2 matrix, step by step."""
    vectors = np.concatenate([query, gallery]).astype(np.float64)
    levels = np.concatenate([q_levels, g_levels])
    num_query, total = len(query), len(vectors)
    dist = dense_prefix_distances(vectors, levels, split, metric)
    dist = dist / dist.max(axis=1, keepdims=True)  # symmetric: row max == column max
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i, k):
        forward = rank[i, : k + 1]
        return np.array([j for j in forward if i in rank[j, : k + 1]], dtype=int)

    weights = np.zeros((total, total))
    for i in range(total):
        own = reciprocal(i, k1)
        expansion = own
        for candidate in own:
            theirs = reciprocal(candidate, round(k1 / 2))
            if len(np.intersect1d(theirs, own)) > 2 / 3 * len(theirs):
                expansion = np.append(expansion, theirs)
        expansion = np.unique(expansion)
        values = np.exp(-dist[i, expansion])
        weights[i, expansion] = values / values.sum()
    if k2 > 1:
        weights = np.stack([weights[rank[i, :k2]].mean(0) for i in range(total)])
    jaccard = np.zeros((num_query, total - num_query))
    for q in range(num_query):
        for g in range(num_query, total):
            shared = np.minimum(weights[q], weights[g]).sum()
            jaccard[q, g - num_query] = 1 - shared / (2 - shared)
    return (1 - lam) * jaccard + lam * dist[:num_query, num_query:]


def random_set(seed, num_query=9, num_gallery=23):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, sum(SPLIT)))
    ids_q, ids_g = rng.integers(0, 5, num_query), rng.integers(0, 5, num_gallery)
    query = centres[ids_q] + 0.6 * rng.normal(size=(num_query, sum(SPLIT)))
    gallery = centres[ids_g] + 0.6 * rng.normal(size=(num_gallery, sum(SPLIT)))
    q_levels = rng.integers(1, 5, num_query)
    g_levels = rng.integers(2, 5, num_gallery)
    return query, q_levels, gallery, g_levels


@pytest.mark.parametrize(
    ("k1", "k2", "lam", "metric"),
    [(6, 3, 0.3, "euclidean"), (4, 1, 0.0, "euclidean"), (8, 4, 0.5, "cosine")],
)
def test_memory_bounded_rerank_equals_dense_reference(k1, k2, lam, metric) -> None:
    query, q_levels, gallery, g_levels = random_set(seed=k1)
    expected = dense_rerank(query, q_levels, gallery, g_levels, SPLIT, k1, k2, lam, metric)
    got = k_reciprocal_distances(
        torch.from_numpy(query),
        torch.from_numpy(q_levels),
        torch.from_numpy(gallery),
        torch.from_numpy(g_levels),
        SPLIT,
        k1=k1,
        k2=k2,
        lambda_value=lam,
        metric=metric,
        chunk_rows=5,  # several chunks: the result must not depend on the chunking
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-9)


def test_the_distances_re_ranking_starts_from_match_the_pairwise_definition() -> None:
    """All images against all (the neighbourhoods' case): levels on both sides vary."""
    query, q_levels, gallery, g_levels = random_set(seed=1)
    vectors = np.concatenate([query, gallery])
    levels = np.concatenate([q_levels, g_levels])
    for metric in ("euclidean", "cosine"):
        expected = dense_prefix_distances(vectors, levels, SPLIT, metric)
        got = level_distances(
            torch.from_numpy(vectors),
            torch.from_numpy(levels),
            torch.from_numpy(vectors),
            torch.from_numpy(levels),
            SPLIT,
            metric,
        )
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-9)


def test_dimensions_above_a_query_level_never_count() -> None:
    """Level-aware: garbage in the padded part of a low-level query changes nothing."""
    query, q_levels, gallery, g_levels = random_set(seed=2)
    q_levels[:] = 1
    padded = torch.from_numpy(query.copy())
    padded[:, SPLIT[0] :] = 0
    noisy = padded.clone()
    noisy[:, SPLIT[0] :] = torch.randn(noisy.shape[0], noisy.shape[1] - SPLIT[0], dtype=noisy.dtype)
    args = (
        torch.from_numpy(q_levels),
        torch.from_numpy(gallery),
        torch.from_numpy(g_levels),
        SPLIT,
    )
    torch.testing.assert_close(
        k_reciprocal_distances(padded, *args, k1=5, k2=2),
        k_reciprocal_distances(noisy, *args, k1=5, k2=2),
    )


def test_rerank_rejects_bad_parameters() -> None:
    query, q_levels, gallery, _ = random_set(seed=3)
    args = (
        torch.from_numpy(query),
        torch.from_numpy(q_levels),
        torch.from_numpy(gallery),
        None,
        SPLIT,
    )
    with pytest.raises(ValueError, match="lambda_value"):
        k_reciprocal_distances(*args, lambda_value=1.5)
    with pytest.raises(ValueError, match="k1 and k2"):
        k_reciprocal_distances(*args, k1=0)
