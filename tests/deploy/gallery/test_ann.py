"""Approximate search: one faiss index per level prefix, short lists re-scored exactly; recall
against exact search on clustered galleries, saved inside the .npz without pickle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rareid.deploy.gallery.ann import AnnIndex, factory_string
from rareid.deploy.gallery.index import GalleryIndex
from rareid.deploy.search.exact import Searcher
from tests.deploy.conftest import vectors_index

pytest.importorskip("faiss")

SPLIT = [8, 8, 8, 8]
PEOPLE = 100


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """faiss's OpenMP threads spin while they wait: on a busy machine one thread is faster."""
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


def clustered_index(size: int = 2000, seed: int = 0, metric: str = "euclidean") -> GalleryIndex:
    """Several images per person around the person's centre: the structure a re-ID gallery has."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(PEOPLE, sum(SPLIT), generator=generator)
    owner = torch.randint(0, PEOPLE, (size,), generator=generator)
    vectors = centres[owner] + 0.3 * torch.randn(size, sum(SPLIT), generator=generator)
    return vectors_index(vectors, SPLIT, metric)


def queries_near(index: GalleryIndex, count: int = 60, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, len(index), (count,), generator=generator)
    queries = index.embeddings[rows] + 0.3 * torch.randn(count, sum(SPLIT), generator=generator)
    levels = torch.randint(1, len(SPLIT) + 1, (count,), generator=generator)
    bounds = torch.tensor(SPLIT).cumsum(0)
    queries *= torch.arange(sum(SPLIT))[None, :] < bounds[levels - 1][:, None]  # zero-padded
    return queries, levels


def recall_at(found: torch.Tensor, exact: torch.Tensor) -> float:
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True))
    return hits / exact.numel()


@pytest.mark.parametrize(
    ("kind", "metric"),
    [
        ("ivf-flat", "euclidean"),
        ("hnsw", "euclidean"),
        ("ivf-pq", "euclidean"),
        ("ivf-flat", "cosine"),
    ],
)
def test_every_kind_finds_the_exact_top_10_at_every_level(kind, metric) -> None:
    index = clustered_index(metric=metric)
    queries, levels = queries_near(index)
    exact = Searcher(index).search(queries, levels, k=10, engine="torch")
    index.ann = AnnIndex.build(index.embeddings, SPLIT, metric, kind)
    assert len(index.ann.indexes) == len(SPLIT)  # one faiss index per level prefix
    found = Searcher(index).search(queries, levels, k=10)  # auto: through the approximate index
    for level in range(1, len(SPLIT) + 1):
        rows = levels == level
        assert recall_at(found.indices[rows], exact.indices[rows]) >= 0.95, (kind, level)
    # the short list is re-scored exactly: a match found by both has the exact distance
    same = found.indices == exact.indices
    torch.testing.assert_close(found.distances[same], exact.distances[same])


def test_factory_strings_follow_the_gallery_size() -> None:
    assert factory_string("hnsw", 16, 10_000) == "HNSW32"
    assert factory_string("ivf-flat", 16, 10_000) == "IVF256,Flat"
    assert factory_string("ivf-pq", 16, 10_000) == "IVF256,PQ2x8"
    assert factory_string("ivf-pq", 16, 2_000) == "IVF51,PQ2x5"  # fewer rows, shorter codes
    assert factory_string("ivf-flat", 8, 20).startswith("IVF1,")  # a tiny gallery still builds


def test_approximate_index_is_saved_in_the_npz_without_pickle(tmp_path) -> None:
    index = clustered_index(size=1000)
    index.ann = AnnIndex.build(index.embeddings, SPLIT, "euclidean", "ivf-pq")
    path = index.save(tmp_path / "g.npz")
    with np.load(path, allow_pickle=False) as data:
        assert data["ann_level1"].dtype == np.uint8
    loaded = GalleryIndex.load(path)
    assert loaded.ann is not None and loaded.ann.factories == index.ann.factories
    queries, levels = queries_near(index, count=20)
    first, again = Searcher(index).search(queries, levels), Searcher(loaded).search(queries, levels)
    assert torch.equal(first.indices, again.indices)


def test_queries_the_probed_lists_cannot_fill_fall_back_to_an_exact_scan() -> None:
    index = clustered_index(size=1000)
    index.ann = AnnIndex.build(index.embeddings, SPLIT, "euclidean", "ivf-flat", nprobe=1)
    index.ann.shortlist = 800  # more than one inverted list holds
    queries, levels = queries_near(index, count=10)
    found = Searcher(index).search(queries, levels, k=10)
    exact = Searcher(index).search(queries, levels, k=10, engine="torch")
    assert torch.equal(found.indices, exact.indices)
