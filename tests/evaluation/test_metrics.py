"""Rank evaluation, level-aware distances and the MLR metric against plain references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torchmetrics.functional.retrieval import retrieval_average_precision, retrieval_hit_rate

from rareid.evaluation import MLRMetric, evaluate_rank, level_distances, query_ranks
from rareid.evaluation.viz import rank_lists, tsne_inputs


# ----------------------------------------------------------------------------- references
def reference_eval(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 20,
) -> tuple[np.ndarray, float]:
    """The standard per-query Market-1501 evaluation, written plainly (one query at a time)."""
    all_cmc, all_ap = [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        remove = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        raw = (g_pids[order] == q_pids[i])[~remove].astype(np.int64)
        if not raw.any():
            continue  # no valid match: the query is skipped
        cmc = np.minimum(raw.cumsum(), 1)
        cmc = np.concatenate([cmc, np.full(max(0, max_rank - len(cmc)), cmc[-1])])[:max_rank]
        all_cmc.append(cmc)
        precision = raw.cumsum() / np.arange(1, len(raw) + 1)
        all_ap.append((precision * raw).sum() / raw.sum())
    if not all_cmc:
        raise ValueError("no valid query")
    return np.mean(all_cmc, 0), float(np.mean(all_ap))


def naive_distances(q, q_levels, g, g_levels, split_sizes, metric="euclidean") -> np.ndarray:
    """Pair by pair over the first min(k_q, k_g) sub-vectors."""
    bounds = np.cumsum(split_sizes)
    out = np.zeros((len(q), len(g)))
    for i in range(len(q)):
        for j in range(len(g)):
            p = bounds[min(q_levels[i], g_levels[j]) - 1]
            a, b = q[i, :p].astype(np.float64), g[j, :p].astype(np.float64)
            if metric == "euclidean":
                out[i, j] = ((a - b) ** 2).sum()
            else:
                out[i, j] = 1 - a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    return out


def random_case(rng: np.random.Generator, kind: str):
    """A random evaluation problem with distractors, junk, ties and unmatched queries."""
    num_q, num_g = int(rng.integers(1, 40)), int(rng.integers(1, 120))
    if kind == "int":  # many ties
        dist = rng.integers(0, 6, (num_q, num_g)).astype(np.float64)
    elif kind == "float32":
        dist = rng.random((num_q, num_g), dtype=np.float32)
    elif kind == "close":  # large values a few ulps apart, and a negative offset
        dist = (1000 + rng.integers(0, 3, (num_q, num_g)) * 1e-4).astype(np.float32)
        dist[:, ::7] = -dist[:, ::7]
    else:  # non-finite entries
        dist = rng.normal(size=(num_q, num_g))
        dist[rng.random(dist.shape) < 0.1] = np.inf
        dist[rng.random(dist.shape) < 0.05] = -np.inf
    q_pids = rng.integers(1, 8, num_q)  # pid 7 is rarely in the gallery: unmatched queries
    g_pids = rng.integers(0, 7, num_g)  # 0 = distractor
    return dist, q_pids, g_pids, rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)


# ----------------------------------------------------------------------------- evaluate_rank
def assert_matches_reference(case, chunk_sizes=(None,)) -> None:
    expected = reference_eval(*case)
    for chunk_size in chunk_sizes:
        cmc, mean_ap = evaluate_rank(*case, chunk_size=chunk_size)
        np.testing.assert_allclose(cmc, expected[0], rtol=0, atol=1e-12)
        assert mean_ap == pytest.approx(expected[1], abs=1e-12)


@pytest.mark.parametrize("kind", ["int", "float32", "close", "inf"])
def test_evaluate_rank_matches_reference(kind: str) -> None:
    rng = np.random.default_rng(hash(kind) % 2**32)
    checked = 0
    for _ in range(40):
        case = random_case(rng, kind)
        try:
            reference_eval(*case)
        except ValueError:
            with pytest.raises(ValueError, match="no query has a valid match"):
                evaluate_rank(*case)
            continue
        assert_matches_reference(case, chunk_sizes=(None, 1, 4))
        checked += 1
    assert checked > 10


def test_chunks_give_identical_numbers() -> None:
    rng = np.random.default_rng(3)
    dist = rng.integers(0, 50, (57, 300)).astype(np.float32)
    q_pids, g_pids = rng.integers(1, 20, 57), rng.integers(0, 20, 300)
    q_cams, g_cams = rng.integers(0, 4, 57), rng.integers(0, 4, 300)
    base = query_ranks(dist, q_pids, g_pids, q_cams, g_cams)
    for chunk_size in (1, 5, 56, 57, 1000):
        first, ap = query_ranks(dist, q_pids, g_pids, q_cams, g_cams, chunk_size=chunk_size)
        assert torch.equal(first, base[0])
        assert torch.equal(ap, base[1])
    assert (base[0] >= 0).sum() > 40
    with pytest.raises(ValueError, match="chunk_size"):
        query_ranks(dist, q_pids, g_pids, q_cams, g_cams, chunk_size=0)


@pytest.mark.parametrize("kind", ["float32", "float64", "signed", "ties", "inf"])
def test_wide_rows_match_reference(kind: str) -> None:
    # 9,000 gallery entries, with signs, signed zeros, float64, ties and infinities.
    rng = np.random.default_rng(len(kind))
    num_q, num_g = 24, 9000
    dist = rng.normal(5, 1, (num_q, num_g))
    if kind == "float32":
        dist = np.abs(dist).astype(np.float32)
    elif kind == "float64":
        dist = np.abs(dist)
    elif kind == "signed":  # negative values and signed zeros
        dist = (dist - 5).astype(np.float32)
        dist[:, ::11] = -0.0
        dist[:, 5::11] = 0.0
    elif kind == "ties":  # about 7 entries per distinct value
        dist = np.round(np.abs(dist), 3).astype(np.float32)
    q_pids, g_pids = rng.integers(1, 30, num_q), rng.integers(0, 30, num_g)
    if kind == "inf":
        dist = dist.astype(np.float32)
        far = rng.random(dist.shape) < 0.3
        dist[far] = np.where(rng.random(dist.shape) < 0.7, np.inf, -np.inf)[far]
    q_cams, g_cams = rng.integers(0, 4, num_q), rng.integers(0, 4, num_g)
    assert_matches_reference((dist, q_pids, g_pids, q_cams, g_cams), chunk_sizes=(None, 5))


def test_nan_anywhere_is_an_error() -> None:
    rng = np.random.default_rng(7)
    num_q, num_g = 30, 2000
    dist = rng.random((num_q, num_g)).astype(np.float32)
    q_pids, g_pids = rng.integers(1, 10, num_q), rng.integers(0, 10, num_g)
    q_cams, g_cams = rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)
    for row in (0, 1, num_q - 1):
        for dtype in (np.float32, np.float64, np.float16):
            bad = dist.astype(dtype)
            bad[row, -1] = np.nan
            bad[(row + 1) % num_q, 0] = np.inf  # with infinities of both signs about
            bad[(row + 2) % num_q, 0] = -np.inf
            for chunk_size in (None, 4):
                with pytest.raises(ValueError, match="NaN"):
                    evaluate_rank(bad, q_pids, g_pids, q_cams, g_cams, chunk_size=chunk_size)


def test_rows_with_every_distance_tied() -> None:
    rng = np.random.default_rng(11)
    num_q, num_g = 40, 1500
    dist = rng.random((num_q, num_g)).astype(np.float32)
    dist[np.arange(num_q) % 4 == 0] = 0.5
    q_pids, g_pids = rng.integers(1, 8, num_q), rng.integers(0, 8, num_g)
    q_cams, g_cams = rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)
    assert_matches_reference((dist, q_pids, g_pids, q_cams, g_cams), chunk_sizes=(None, 3))


def _edge_rows(rng: np.random.Generator, num_g: int) -> list[np.ndarray]:
    """Rows with extreme, tiny and zero spans, signed zeros, ulp neighbours, subnormals,
    infinities, and ties with the true matches."""
    tiny = np.float32(1.5)
    ulps = np.nextafter(tiny, np.float32(np.inf), dtype=np.float32)
    return [
        rng.normal(0, 1e300, num_g),  # float64 range near its limit
        np.where(rng.random(num_g) < 0.5, 1e308, -1e308),
        np.full(num_g, tiny, np.float64),  # every entry tied
        np.where(rng.random(num_g) < 0.5, tiny, ulps).astype(np.float64),  # one ulp apart
        np.where(rng.random(num_g) < 0.5, 0.0, -0.0),  # all zero
        rng.choice([0.0, 1e-320, -1e-320, 5e-324], num_g),  # subnormals around zero
        np.where(rng.random(num_g) < 0.3, np.inf, rng.random(num_g)),
        np.where(rng.random(num_g) < 0.3, -np.inf, rng.random(num_g)),
        rng.integers(0, 3, num_g).astype(np.float64),  # massive ties
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_rows_and_strided_matrices_match_reference(dtype: type) -> None:
    rng = np.random.default_rng(13)
    num_g = 700
    with np.errstate(over="ignore"):
        dist = np.stack(_edge_rows(rng, num_g)).astype(dtype)
    num_q = dist.shape[0]
    g_pids = rng.integers(2, 30, num_g)
    g_pids[rng.choice(num_g, 120, replace=False)] = 1  # identity 1: many gallery images
    g_cams = rng.integers(0, 3, num_g)
    q_pids = np.where(np.arange(num_q) % 2 == 0, 1, rng.integers(2, 30, num_q))
    q_cams = np.zeros(num_q, int)
    wide = torch.from_numpy(np.concatenate([dist, dist[:, :5]], 1))
    expected = reference_eval(dist, q_pids, g_pids, q_cams, g_cams)
    for matrix in (dist, wide[:, :num_g], torch.from_numpy(dist).T.contiguous().T):
        cmc, mean_ap = evaluate_rank(matrix, q_pids, g_pids, q_cams, g_cams)
        np.testing.assert_allclose(cmc, expected[0], rtol=0, atol=1e-12)
        assert mean_ap == pytest.approx(expected[1], abs=1e-12)


@pytest.mark.parametrize(
    "dtype",
    [
        *(torch.float16, torch.bfloat16, torch.float32, torch.float64),
        *(torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64),
    ],
)
def test_every_real_dtype_matches_reference(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(21)
    values = rng.integers(0, 100, (30, 400))  # small integers: exact in every dtype, many ties
    if not dtype.is_floating_point and dtype != torch.uint8:
        values -= 50
    dist = torch.from_numpy(values).to(dtype)
    ids = (rng.integers(1, 12, 30), rng.integers(0, 12, 400))
    cams = (rng.integers(0, 3, 30), rng.integers(0, 3, 400))
    expected = reference_eval(dist.double().numpy(), ids[0], ids[1], cams[0], cams[1])
    cmc, mean_ap = evaluate_rank(dist, ids[0], ids[1], cams[0], cams[1])
    np.testing.assert_allclose(cmc, expected[0], rtol=0, atol=1e-12)
    assert mean_ap == pytest.approx(expected[1], abs=1e-12)
    with pytest.raises(TypeError, match="distmat"):
        evaluate_rank(dist.bool(), ids[0], ids[1], cams[0], cams[1])


def test_int64_distances_beyond_float64_precision_keep_their_order() -> None:
    # 2**60 and 2**60 + 1 are the same float64: a float conversion would tie them and put the
    # true match (gallery entry 0) first.
    big = 2**60
    dist = torch.tensor([[big + 1, big, big + 2], [-big, -big - 1, -big + 1]], dtype=torch.int64)
    first, ap = query_ranks(dist, [1, 1], [1, 2, 1], [0, 0], [1, 1, 1])
    assert first.tolist() == [1, 1]  # behind gallery entry 1 / 2
    assert ap.tolist() == pytest.approx([(1 / 2 + 2 / 3) / 2, (1 / 2 + 2 / 3) / 2])
    near_max = torch.tensor([[2**63 - 1, 2**63 - 2, -(2**63)]], dtype=torch.int64)
    first, _ = query_ranks(near_max, [1], [1, 2, 3], [0], [1, 1, 1])
    assert first.tolist() == [2]


def test_identity_with_many_gallery_images() -> None:
    # 600 gallery images of one identity (half in the query camera) among 400 others.
    rng = np.random.default_rng(4)
    g_pids = np.concatenate([np.ones(600, int), rng.integers(2, 50, 400)])
    g_cams = rng.integers(0, 2, 1000)
    dist = rng.integers(0, 200, (9, 1000)).astype(np.float32)
    q_pids, q_cams = np.array([1, 1, 1, 2, 3, 1, 1, 4, 1]), rng.integers(0, 2, 9)
    expected = reference_eval(dist, q_pids, g_pids, q_cams, g_cams)
    cmc, mean_ap = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, chunk_size=4)
    np.testing.assert_allclose(cmc, expected[0], atol=1e-12)
    assert mean_ap == pytest.approx(expected[1], abs=1e-12)


def test_hand_computed_junk_skip_and_ties() -> None:
    # q0 (pid 1, cam 0): g3 and g0 are junk (pid 1, cam 0), then g1 (pid 2), g2 (pid 1 cam 1).
    # q1 (pid 3): no gallery image -> skipped. q2 (pid 2, cam 1): only g1, same camera -> skipped.
    dist = np.array([[0.1, 0.2, 0.3, 0.05], [1, 1, 1, 1], [0.5, 0.1, 0.2, 0.3]])
    g_pids, g_cams = np.array([1, 2, 1, 1]), np.array([0, 1, 1, 0])
    cmc, mean_ap = evaluate_rank(dist, [1, 3, 2], g_pids, [0, 0, 1], g_cams, max_rank=3)
    np.testing.assert_array_equal(cmc, [0, 1, 1])
    assert mean_ap == 0.5
    # Ties keep the gallery order: kept list is [pid 2, pid 1, pid 1].
    cmc, mean_ap = evaluate_rank(np.ones((1, 3)), [1], [2, 1, 1], [0], [1, 1, 1], max_rank=2)
    np.testing.assert_array_equal(cmc, [0, 1])
    assert mean_ap == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-15)


def test_max_rank_beyond_gallery_pads_with_final_value() -> None:
    cmc, _ = evaluate_rank(np.array([[0.3, 0.1, 0.2]]), [1], [2, 3, 1], [0], [1, 1, 1], max_rank=20)
    assert cmc.shape == (20,)
    np.testing.assert_array_equal(cmc, [0] + [1] * 19)  # the match is second of three


def test_agrees_with_torchmetrics_retrieval_without_ties_or_junk() -> None:
    rng = np.random.default_rng(0)
    num_q, num_g = 25, 80
    dist = rng.random((num_q, num_g))
    g_pids = rng.integers(0, 6, num_g)
    q_pids = rng.choice(np.unique(g_pids[g_pids > 0]), num_q)
    q_cams, g_cams = np.zeros(num_q, int), np.ones(num_g, int)  # no junk
    cmc, mean_ap = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    aps, hits = [], {r: [] for r in (1, 5, 10)}
    for i in range(num_q):
        preds = torch.from_numpy(2.0 - dist[i])  # torchmetrics ignores non-positive scores
        target = torch.from_numpy(g_pids == q_pids[i])
        aps.append(retrieval_average_precision(preds, target).item())
        for r in hits:
            hits[r].append(retrieval_hit_rate(preds, target, top_k=r).item())
    assert mean_ap == pytest.approx(np.mean(aps), abs=1e-6)
    for r, values in hits.items():
        assert cmc[r - 1] == pytest.approx(np.mean(values), abs=1e-9)


def test_tensor_inputs_and_bad_input() -> None:
    rng = np.random.default_rng(1)
    dist, q_pids, g_pids, q_cams, g_cams = random_case(rng, "float32")
    g_pids[:3], q_pids[0], q_cams[0], g_cams[:3] = 1, 1, 0, 1  # at least one valid query
    as_np = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    as_torch = evaluate_rank(
        *(torch.from_numpy(np.ascontiguousarray(x)) for x in (dist, q_pids, g_pids, q_cams, g_cams))
    )
    np.testing.assert_array_equal(as_np[0], as_torch[0])
    assert as_np[1] == as_torch[1]
    bad = dist.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(bad, q_pids, g_pids, q_cams, g_cams)
    with pytest.raises(ValueError, match="q_pids"):
        evaluate_rank(dist, q_pids[:-1], g_pids, q_cams, g_cams)
    with pytest.raises(ValueError, match="2-D"):
        evaluate_rank(dist[0], q_pids[:1], g_pids, q_cams[:1], g_cams)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(2)
    dist = rng.integers(0, 30, (70, 500)).astype(np.float32)
    ids = (
        rng.integers(1, 30, 70),
        rng.integers(0, 30, 500),
        rng.integers(0, 3, 70),
        rng.integers(0, 3, 500),
    )
    cpu = evaluate_rank(dist, *ids)
    gpu = evaluate_rank(torch.from_numpy(dist).cuda(), *ids)
    np.testing.assert_allclose(cpu[0], gpu[0], atol=1e-12)
    assert cpu[1] == pytest.approx(gpu[1], abs=1e-12)


# ----------------------------------------------------------------------------- level_distances
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_level_distances_match_naive_pairs(metric: str) -> None:
    rng = np.random.default_rng(5)
    split = [3, 5, 2, 6]
    q = rng.normal(size=(23, 16))
    g = rng.normal(size=(31, 16))
    q_lv, g_lv = rng.integers(1, 5, 23), rng.integers(1, 5, 31)
    out = level_distances(
        torch.from_numpy(q),
        torch.from_numpy(q_lv),
        torch.from_numpy(g),
        torch.from_numpy(g_lv),
        split,
        metric,
    )
    assert out.dtype == torch.float64 and out.shape == (23, 31)
    np.testing.assert_allclose(
        out.numpy(), naive_distances(q, q_lv, g, g_lv, split, metric), atol=1e-10
    )
    # Full-length gallery: None and all-level-4 agree with the naive pairs, in float32 too.
    full = naive_distances(q, q_lv, g, np.full(31, 4), split, metric)
    for g_levels in (None, torch.full((31,), 4)):
        out32 = level_distances(
            torch.from_numpy(q).float(),
            q_lv.tolist(),
            torch.from_numpy(g).float(),
            g_levels,
            split,
            metric,
        )
        assert out32.dtype == torch.float32
        np.testing.assert_allclose(out32.numpy(), full, atol=1e-4, rtol=1e-5)


def test_level_distances_ignore_the_part_beyond_the_level() -> None:
    rng = np.random.default_rng(6)
    split = [4, 4, 4]
    q, g = torch.randn(10, 12), torch.randn(9, 12)
    q_lv, g_lv = torch.from_numpy(rng.integers(1, 4, 10)), torch.from_numpy(rng.integers(1, 4, 9))
    base = level_distances(q, q_lv, g, g_lv, split)
    noisy_q, noisy_g = q.clone(), g.clone()
    for x, lv in ((noisy_q, q_lv), (noisy_g, g_lv)):
        for i, k in enumerate(lv.tolist()):
            x[i, 4 * k :] = 100.0
    torch.testing.assert_close(level_distances(noisy_q, q_lv, noisy_g, g_lv, split), base)
    assert (base >= 0).all()


def test_level_distances_bad_input() -> None:
    q, g = torch.randn(3, 8), torch.randn(4, 8)
    with pytest.raises(ValueError, match="query_levels"):
        level_distances(q, [1, 2, 3], g, None, [4, 4])
    with pytest.raises(ValueError, match="split_sizes"):
        level_distances(q, [1, 1, 1], g, None, [4, 5])
    with pytest.raises(ValueError, match="metric"):
        level_distances(q, [1, 1, 1], g, None, [4, 4], metric="manhattan")
    with pytest.raises(ValueError, match="gallery_levels"):
        level_distances(q, [1, 1, 1], g, [1, 2], [4, 4])


# ----------------------------------------------------------------------------- MLRMetric
SPLIT = [2, 2, 2, 2]
RATES = (1, 2, 3, 4)


def make_protocol(seed: int = 0, trials: int = 3, ids: int = 6):
    """Single-shot MLR evaluation data: gallery (role 0) with per-trial bits, MLR queries
    (role 1) per trial at random levels 1..3, HR queries (role 2) at level 4."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(ids + 1, 8))
    rows = []  # (embedding, level, pid, camid, role, trial, gallery_trials)
    pids_all = np.arange(ids + 1)  # pid 0: distractor
    for pid in pids_all:
        for cam in range(3):
            rows.append([centers[pid] + rng.normal(scale=0.9, size=8), 4, pid, cam, 0, -1, 0])
    gallery_rows = [i for i, r in enumerate(rows) if r[4] == 0]
    for t in range(trials):
        for pid in pids_all:  # one random gallery image per identity and trial
            pick = rng.choice([i for i in gallery_rows if rows[i][2] == pid])
            rows[pick][6] |= 1 << t
    for pid in pids_all[1:]:
        for cam in (0, 1):
            hr = centers[pid] + rng.normal(scale=0.9, size=8)
            rows.append([hr, 4, pid, cam, 2, -1, 0])
            for t in range(trials):
                level = int(rng.integers(1, 4))
                emb = hr + rng.normal(scale=0.5, size=8)
                emb[2 * level :] = 0  # zero padded
                rows.append([emb, level, pid, cam, 1, t, 0])
    emb = torch.tensor(np.stack([r[0] for r in rows]), dtype=torch.float32)
    cols = [torch.tensor([r[k] for r in rows]) for k in range(1, 7)]
    index = torch.from_numpy(rng.permutation(len(rows)) * 3 + 7)  # unique, not 0..N-1
    return [emb, *cols, index]


def expected_results(data, trials: int, split=SPLIT, metric="euclidean") -> dict[str, float]:
    emb, lv, pid, cam, role, trial, gbits, _ = (x.numpy() for x in data)
    per: dict[str, list[float]] = {}
    counts: dict[str, int] = {}

    def add(prefix, rows, g):
        if not rows.any():
            return
        dist = naive_distances(emb[rows], lv[rows], emb[g], lv[g], split, metric)
        # A query is scored when a gallery image of its identity is in another camera.
        same_id = pid[rows][:, None] == pid[g][None, :]
        scored = (same_id & (cam[rows][:, None] != cam[g][None, :])).any(1)
        counts[f"{prefix}queries"] = counts.get(f"{prefix}queries", 0) + int(rows.sum())
        counts[f"{prefix}skipped"] = counts.get(f"{prefix}skipped", 0) + int((~scored).sum())
        try:
            cmc, mean_ap = reference_eval(dist, pid[rows], pid[g], cam[rows], cam[g])
        except ValueError:
            return
        for r in (1, 5, 10, 20):
            per.setdefault(f"{prefix}rank{r}", []).append(cmc[r - 1])
        per.setdefault(f"{prefix}mAP", []).append(mean_ap)

    for t in range(trials):
        g = (role == 0) & ((gbits >> t) & 1 == 1)
        q = (role == 1) & (trial == t)
        add("", q, g)
        for k in np.unique(lv[q]):
            add(f"level{k}/", q & (lv == k), g)
        add("hr/", role == 2, g)
    out = {}
    for key, values in per.items():
        out[key] = float(np.mean(values))
        out[f"{key}_std"] = float(np.std(values))  # population std (ddof=0)
    return out | counts


def run_metric(data, batch: int = 7, **kwargs) -> dict[str, float]:
    metric = MLRMetric(SPLIT, RATES, **kwargs)
    n = data[0].shape[0]
    for a in range(0, n, batch):
        metric.update(*(x[a : a + batch] for x in data))
    return {k: float(v) for k, v in metric.compute().items()}


def test_mlr_metric_matches_reference_per_trial_level_and_hr() -> None:
    data = make_protocol(trials=3)
    results = run_metric(data)
    expected = expected_results(data, trials=3)
    assert set(results) == set(expected)
    for key in ("rank1", "rank5", "rank10", "rank20", "mAP", "hr/rank1", "hr/mAP", "level1/mAP"):
        assert key in results and f"{key}_std" in results
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-6), key
    assert results["rank1_std"] > 0 and 0 < results["mAP"] < 1


def test_skipped_queries_are_counted_per_trial_and_level() -> None:
    # Each trial's gallery holds one image per identity, in a random camera: a query from that
    # camera has no valid match and is skipped. The counts must say how many, where.
    trials = 4
    data = make_protocol(seed=5, trials=trials, ids=8)
    metric = MLRMetric(SPLIT, RATES)
    metric.update(*data)
    results = metric.compute()
    _, lv, pid, cam, role, trial, gbits, _ = (x.numpy() for x in data)
    expected: dict[str, dict[str, list[int]]] = {}
    for t in range(trials):
        g = (role == 0) & ((gbits >> t) & 1 == 1)
        valid = (pid[:, None] == pid[g][None, :]) & (cam[:, None] != cam[g][None, :])
        skipped = ~valid.any(1)
        mlr = (role == 1) & (trial == t)
        groups = {"all": mlr, "hr": role == 2}
        groups |= {f"level{k}": mlr & (lv == k) for k in (1, 2, 3)}
        for group, rows in groups.items():
            count = expected.setdefault(group, {"queries": [], "skipped": []})
            count["queries"].append(int(rows.sum()))
            count["skipped"].append(int((rows & skipped).sum()))
    assert metric.query_counts["trials"] == list(range(trials))
    for group, count in expected.items():
        assert metric.query_counts[group] == count, group
        prefix = "" if group == "all" else f"{group}/"
        assert int(results[f"{prefix}queries"]) == sum(count["queries"])
        assert int(results[f"{prefix}skipped"]) == sum(count["skipped"])
    assert 0 < sum(expected["all"]["skipped"]) < sum(expected["all"]["queries"])
    assert len(set(expected["all"]["skipped"])) > 1  # differs between trials


def test_mlr_metric_order_batches_and_padding_duplicates_do_not_matter() -> None:
    data = make_protocol(seed=1)
    base = run_metric(data)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(data[0].shape[0]))
    dup = torch.cat([perm, perm[:5]])  # as a distributed sampler pads with repeats
    assert run_metric([x[dup] for x in data], batch=4) == base


def test_mlr_metric_gallery_bitmask_and_population_std() -> None:
    # Rows: 0 query (trial 0), 1 g_a (pid 1, trial-0 gallery, d=9), 2 g_b (pid 1, trial-1
    # gallery, d=1), 3 g_c (pid 2, both galleries, d=4), 4 query (trial 1), 5 HR query.
    emb = torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    data = [
        emb,
        torch.tensor([1, 1, 1, 1, 1, 1]),  # levels (a single level, one sub-vector)
        torch.tensor([1, 1, 1, 2, 1, 1]),  # pids
        torch.tensor([0, 1, 1, 1, 0, 0]),  # camids
        torch.tensor([1, 0, 0, 0, 1, 2]),  # roles
        torch.tensor([0, -1, -1, -1, 1, -1]),  # trials
        torch.tensor([0, 0b01, 0b10, 0b11, 0, 0]),  # gallery_trials
        torch.arange(6),
    ]
    metric = MLRMetric([2], (1,), max_rank=2)
    metric.update(*data)
    res = {k: float(v) for k, v in metric.compute().items()}
    # trial 0: gallery [g_a (d=9), g_c (d=4)] -> match at rank 2: rank1 0, AP 1/2
    # trial 1: gallery [g_b (d=1), g_c (d=4)] -> rank1 1, AP 1
    assert res["rank1"] == pytest.approx(0.5) and res["rank1_std"] == pytest.approx(0.5)
    assert res["mAP"] == pytest.approx(0.75) and res["mAP_std"] == pytest.approx(0.25)
    assert "rank5" not in res and "rank5_std" not in res  # max_rank = 2
    assert res["hr/rank1"] == pytest.approx(0.5) and res["hr/mAP_std"] == pytest.approx(0.25)
    assert res["level1/rank1"] == res["rank1"]


def test_mlr_metric_single_trial_std_zero_cosine_and_one_block() -> None:
    data = make_protocol(seed=2, trials=1)
    res = run_metric(data, distance="cosine")
    exp = expected_results(data, trials=1, metric="cosine")
    assert res["rank1_std"] == 0 and res["mAP"] == pytest.approx(exp["mAP"], abs=1e-6)
    # Varying length off: one block for distances, levels still name the keys.
    metric = MLRMetric([8], RATES)
    metric.update(*data)
    res = {k: float(v) for k, v in metric.compute().items()}
    exp = expected_results([data[0], torch.ones_like(data[1]), *data[2:]], trials=1, split=[8])
    assert res["mAP"] == pytest.approx(exp["mAP"], abs=1e-6)
    assert any(k.startswith("level2/") for k in res)


def test_mlr_metric_bad_and_missing_data() -> None:
    data = make_protocol(seed=3)
    metric = MLRMetric(SPLIT, RATES)
    with pytest.raises(ValueError, match="embeddings"):
        metric.update(data[0][:, :4], *data[1:])
    with pytest.raises(ValueError, match="levels"):
        metric.update(data[0], data[1] + 4, *data[2:])
    metric.update(*data)
    bad_dup = [x[:1].clone() for x in data]
    bad_dup[2] += 100  # same index, other pid
    metric.update(*bad_dup)
    with pytest.raises(ValueError, match="index"):
        metric.compute()
    # Only gallery images (e.g. a sanity check that saw two batches): NaN and a warning.
    metric = MLRMetric(SPLIT, RATES)
    gallery = data[4] == 0
    metric.update(*(x[gallery] for x in data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = metric.compute()
    assert np.isnan(float(res["mAP"])) and any(
        "nothing to evaluate" in str(w.message) for w in caught
    )


def test_rank_lists_and_tsne_data() -> None:
    data = make_protocol(seed=4, trials=2)
    metric = MLRMetric(SPLIT, RATES)
    metric.update(*data)
    lists = rank_lists(metric, trial=1, topk=4)
    emb, lv, pid, cam, role, trial, gbits, index = (x.numpy() for x in data)
    q = (role == 1) & (trial == 1)
    g = (role == 0) & ((gbits >> 1) & 1 == 1)
    order = np.argsort(index[q])  # the metric sorts samples by index
    q_rows = np.nonzero(q)[0][order]
    g_rows = np.nonzero(g)[0][np.argsort(index[g])]
    dist = naive_distances(emb[q_rows], lv[q_rows], emb[g_rows], lv[g_rows], SPLIT)
    assert lists["gallery_index"].shape == (len(q_rows), 4)
    np.testing.assert_array_equal(lists["query_index"].numpy(), index[q_rows])
    np.testing.assert_array_equal(lists["query_level"].numpy(), lv[q_rows])
    for i, row in enumerate(q_rows):
        ranked = g_rows[np.argsort(dist[i], kind="stable")]
        ranked = [r for r in ranked if not (pid[r] == pid[row] and cam[r] == cam[row])][:4]
        np.testing.assert_array_equal(lists["gallery_index"][i].numpy(), index[ranked])
        np.testing.assert_array_equal(lists["matches"][i].numpy(), pid[ranked] == pid[row])
    hr_lists = rank_lists(metric, trial=0, topk=3, roles=(2,))
    assert (hr_lists["query_role"] == 2).all() and hr_lists["matches"].shape[1] == 3
    t_emb, t_pid, t_lv = tsne_inputs(metric, trial=0)
    expected_n = int(
        ((role == 1) & (trial == 0)).sum()
        + (role == 2).sum()
        + ((role == 0) & (gbits & 1 == 1)).sum()
    )
    assert t_emb.shape == (expected_n, 8) and t_pid.shape == t_lv.shape == (expected_n,)


def test_mlr_metric_rerank_rows_are_the_reranked_distances_ranked() -> None:
    """``rerank=True`` adds ``rerank/`` keys: each trial's queries (MLR and HR together) ranked
    on k-reciprocal distances; the plain keys stay what they were."""
    from rareid.evaluation.rerank import k_reciprocal_distances

    data = make_protocol(trials=2, ids=8)
    plain = run_metric(data)
    results = run_metric(data, rerank=True, rerank_k1=4, rerank_k2=2, rerank_lambda=0.3)
    assert {key: results[key] for key in plain} == pytest.approx(plain)
    emb, lv, pid, cam, role, trial, gbits, _ = data
    per: dict[str, list[float]] = {}
    for t in range(2):
        g = (role == 0) & ((gbits >> t) & 1 == 1)
        q = ((role == 1) & (trial == t)) | (role == 2)
        dist = k_reciprocal_distances(
            emb[q], lv[q], emb[g], lv[g], SPLIT, k1=4, k2=2, lambda_value=0.3
        ).numpy()
        groups = {"rerank/": role[q] == 1, "rerank/hr/": role[q] == 2}
        for level in torch.unique(lv[q][role[q] == 1]).tolist():
            groups[f"rerank/level{level}/"] = (role[q] == 1) & (lv[q] == level)
        for prefix, rows in groups.items():
            rows = rows.numpy()
            cmc, mean_ap = reference_eval(
                dist[rows],
                pid[q][rows].numpy(),
                pid[g].numpy(),
                cam[q][rows].numpy(),
                cam[g].numpy(),
            )
            per.setdefault(f"{prefix}rank1", []).append(cmc[0])
            per.setdefault(f"{prefix}mAP", []).append(mean_ap)
    for key, values in per.items():
        assert results[key] == pytest.approx(float(np.mean(values)), abs=1e-6), key
    assert results["rerank/rank1"] != results["rank1"] or results["rerank/mAP"] != results["mAP"]


@pytest.mark.parametrize("forced", [1, 4])
def test_query_subvectors_ranks_every_mlr_query_with_that_many_subvectors(forced: int) -> None:
    """Table II: ``query_subvectors=N`` scores an MLR query as if it were a level-N image (its
    first N sub-vectors), keeps its own ``level{k}`` key and leaves HR queries alone."""
    emb, lv, pid, cam, role, trial, gbits, index = make_protocol(seed=6, trials=2, ids=8)
    generator = torch.Generator().manual_seed(0)
    emb = emb.clone()
    queries = role == 1
    emb[queries] += torch.randn(int(queries.sum()), emb.shape[1], generator=generator)  # unpadded
    data = [emb, lv, pid, cam, role, trial, gbits, index]
    forced_results = run_metric(data, query_subvectors=forced)
    as_level = run_metric([emb, torch.where(queries, forced, lv), *data[2:]])
    plain = run_metric(data)
    for key in ("rank1", "mAP", "hr/rank1", "hr/mAP"):
        assert forced_results[key] == pytest.approx(as_level[key], abs=1e-9), key
    assert {k for k in forced_results if k.startswith("level")} == {
        k for k in plain if k.startswith("level")
    }
    assert forced_results["hr/mAP"] == pytest.approx(plain["hr/mAP"], abs=1e-9)
    assert forced_results["mAP"] != pytest.approx(plain["mAP"], abs=1e-9)


def test_query_subvectors_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="query_subvectors"):
        MLRMetric(SPLIT, RATES, query_subvectors=len(SPLIT) + 1)
