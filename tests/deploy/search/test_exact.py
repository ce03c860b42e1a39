"""Exact prefix search: faiss and torch paths agree with each other and with the model's own
distance (Eq. 2), whatever the chunking; one stored copy serves every level."""

from __future__ import annotations

import pytest
import torch

from rareid.deploy.search.exact import (
    FaissPrefixIndex,
    Searcher,
    prefix_sq_norms,
    torch_candidates,
)
from rareid.deploy.verify.verdicts import threshold_for, verdict
from rareid.evaluation.distances import level_distances
from tests.deploy.conftest import SPLIT, random_index


def random_queries(count: int = 40, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    levels = torch.randint(1, len(SPLIT) + 1, (count,), generator=generator)
    bounds = torch.tensor(SPLIT).cumsum(0)
    queries = torch.randn(count, sum(SPLIT), generator=generator)
    queries *= torch.arange(sum(SPLIT))[None, :] < bounds[levels - 1][:, None]  # zero-padded
    return queries, levels


def brute_force(index, queries, levels, k):
    dist = level_distances(queries, levels, index.embeddings, None, SPLIT, metric=index.metric)
    values, positions = torch.sort(dist, dim=1, stable=True)
    return positions[:, :k], values[:, :k]


def test_faiss_and_torch_paths_return_the_same_top_k_as_brute_force() -> None:
    pytest.importorskip("faiss")
    index = random_index()
    queries, levels = random_queries()
    expected_i, expected_d = brute_force(index, queries, levels, 10)
    for engine in ("faiss", "torch"):
        result = Searcher(index).search(queries, levels, k=10, engine=engine)
        assert torch.equal(result.indices, expected_i), engine
        torch.testing.assert_close(result.distances, expected_d, rtol=1e-4, atol=1e-4)


def test_torch_path_does_not_depend_on_the_gallery_chunks() -> None:
    index = random_index(size=1000)
    queries, levels = random_queries()
    sq = prefix_sq_norms(index.embeddings, SPLIT)
    whole = torch_candidates(index.embeddings, sq, queries, levels, SPLIT, "euclidean", 12)
    chunked = torch_candidates(index.embeddings, sq, queries, levels, SPLIT, "euclidean", 12, 97)
    assert torch.equal(whole.sort(1).values, chunked.sort(1).values)


def test_one_faiss_index_of_width_d_plus_m_serves_every_level() -> None:
    pytest.importorskip("faiss")
    index = random_index(size=500)
    faiss_index = FaissPrefixIndex(index.embeddings, SPLIT)
    assert faiss_index.index.ntotal == 500
    assert faiss_index.index.d == sum(SPLIT) + len(SPLIT)


def test_cosine_metric_is_served_by_the_torch_path() -> None:
    index = random_index(metric="cosine")
    queries, levels = random_queries()
    expected_i, expected_d = brute_force(index, queries, levels, 5)
    result = Searcher(index).search(queries, levels, k=5, engine="auto")
    assert torch.equal(result.indices, expected_i)
    torch.testing.assert_close(result.distances, expected_d, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="euclidean"):
        Searcher(index).search(queries, levels, k=5, engine="faiss")


def test_search_rejects_bad_levels_and_shapes() -> None:
    index = random_index(size=50)
    queries, levels = random_queries(count=3)
    with pytest.raises(ValueError, match=r"1\.\.4"):
        Searcher(index).search(queries, torch.tensor([0, 1, 2]), k=3)
    with pytest.raises(ValueError, match="expected 3 levels"):
        Searcher(index).search(queries, levels[:2], k=3)
    with pytest.raises(ValueError, match=r"\(Q, 32\)"):
        Searcher(index).search(queries[:, :8], levels, k=3)


def test_verdicts_come_from_the_threshold_of_the_query_level() -> None:
    calibration = {
        "levels": {"1": {"thresholds": {"0.01": 5.0}}, "4": {"thresholds": {"0.01": 1.0}}}
    }
    assert threshold_for(calibration, 1, 1e-2) == 5.0
    assert threshold_for(calibration, 2, 1e-2) is None
    assert threshold_for(None, 1, 1e-2) is None
    assert verdict(3.0, threshold_for(calibration, 1, 1e-2)) == "same"
    assert verdict(3.0, threshold_for(calibration, 4, 1e-2)) == "different"
    assert verdict(3.0, None) == "uncalibrated"
