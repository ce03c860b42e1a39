"""Identity-balanced P x K batch sampler (rareid/data/samplers.py)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from rareid.data.samplers import PKSampler, SampleKey


def make_pids(seed: int = 0, num_ids: int = 20) -> list[int]:
    """Identities with 1..12 images each (some below K), shuffled dataset order."""
    rng = np.random.default_rng(seed)
    pids = [pid for pid in range(num_ids) for _ in range(int(rng.integers(1, 13)))]
    return [pids[i] for i in rng.permutation(len(pids))]


def check_batch(batch: list[int], pids: list[int], p: int, k: int) -> set[int]:
    assert len(batch) == p * k
    assert all(0 <= i < len(pids) for i in batch)
    counts = Counter(pids[i] for i in batch)
    assert len(counts) == p  # P distinct identities ...
    assert set(counts.values()) == {k}  # ... with K images each: every batch has positives
    return set(counts)


@pytest.mark.parametrize("drop_last", [True, False])
def test_pk_structure_and_exact_length(drop_last):
    pids = make_pids()
    sampler = PKSampler(pids, p=4, k=4, seed=0, num_replicas=1, rank=0, drop_last=drop_last)
    lengths = set()
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        lengths.add(len(batches))
        assert len(batches) == len(sampler)
        for batch in batches:
            check_batch(batch, pids, 4, 4)
    assert len(lengths) == 1 and len(sampler) > 0  # constant across epochs


def test_drop_last_uses_each_image_at_most_once_for_large_identities():
    pids = make_pids(1)
    counts = Counter(pids)
    sampler = PKSampler(pids, p=3, k=4, seed=2, num_replicas=1, rank=0)
    used = Counter(i for batch in sampler for i in batch)
    for index, n in used.items():
        if counts[pids[index]] >= 4:
            assert n == 1
    # identities with fewer than K images are completed with repeats of their own images
    small = [pid for pid, n in counts.items() if n < 4]
    assert small
    for batch in sampler:
        for pid in {pids[i] for i in batch} & set(small):
            members = [i for i in batch if pids[i] == pid]
            assert len(members) == 4
            assert set(members) == {i for i, q in enumerate(pids) if q == pid}


def test_no_drop_last_covers_every_image():
    pids = make_pids(2)
    sampler = PKSampler(pids, p=2, k=4, seed=0, num_replicas=1, rank=0, drop_last=False)
    used = {i for batch in sampler for i in batch}
    assert used == set(range(len(pids)))


def test_set_epoch_is_deterministic():
    pids = make_pids()
    a = PKSampler(pids, p=4, k=2, seed=7, num_replicas=1, rank=0)
    b = PKSampler(pids, p=4, k=2, seed=7, num_replicas=1, rank=0)
    assert list(a) == list(b)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 != list(b)
    b.set_epoch(1)
    assert epoch1 == list(b)
    assert list(a) == epoch1  # iterating again repeats the epoch's plan
    c = PKSampler(pids, p=4, k=2, seed=8, num_replicas=1, rank=0)
    assert list(c) != list(PKSampler(pids, p=4, k=2, seed=7, num_replicas=1, rank=0))


@pytest.mark.parametrize("replicas", [1, 2])
def test_keyed_batches_carry_epoch_step_and_global_slot(replicas):
    pids = make_pids(3, num_ids=12)
    plain = [
        PKSampler(pids, p=4, k=2, seed=5, num_replicas=replicas, rank=r) for r in range(replicas)
    ]
    keyed = [
        PKSampler(pids, p=4, k=2, seed=5, num_replicas=replicas, rank=r, keyed=True)
        for r in range(replicas)
    ]
    for sampler in plain + keyed:
        sampler.set_epoch(2)
    slots = set()
    for rank in range(replicas):
        for step, (batch, keys) in enumerate(zip(plain[rank], keyed[rank], strict=True)):
            assert all(isinstance(key, SampleKey) for key in keys)
            assert [key.index for key in keys] == batch
            assert {key.epoch for key in keys} == {2} and {key.step for key in keys} == {step}
            slots |= {(key.step, key.slot) for key in keys}
    # every (step, slot) of the global batch once, the same layout whatever the replica count
    assert slots == {(step, slot) for step in range(len(plain[0])) for slot in range(8)}


def test_ddp_two_ranks_disjoint_identities_equal_lengths():
    pids = make_pids(3, num_ids=30)
    for epoch in range(3):
        ranks = []
        for rank in range(2):
            sampler = PKSampler(pids, p=8, k=4, seed=5, num_replicas=2, rank=rank)
            sampler.set_epoch(epoch)
            ranks.append(list(sampler))
            assert len(ranks[-1]) == len(sampler)
            assert sampler.batch_size == 4 * 4  # p / 2 identities x k per rank
        assert len(ranks[0]) == len(ranks[1]) > 0
        for batch0, batch1 in zip(*ranks, strict=True):
            ids0 = check_batch(batch0, pids, 4, 4)
            ids1 = check_batch(batch1, pids, 4, 4)
            assert not ids0 & ids1  # at every step the ranks see different identities
            assert not set(batch0) & set(batch1)


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("replicas", [2, 4])
def test_ranks_slice_the_global_batch_one_process_would_draw(drop_last, replicas):
    pids = make_pids(3, num_ids=30)
    single = PKSampler(pids, p=8, k=4, seed=5, num_replicas=1, rank=0, drop_last=drop_last)
    ranks = [
        PKSampler(pids, p=8, k=4, seed=5, num_replicas=replicas, rank=r, drop_last=drop_last)
        for r in range(replicas)
    ]
    for epoch in (0, 1):
        for sampler in (single, *ranks):
            sampler.set_epoch(epoch)
        steps = list(single)
        assert all(len(sampler) == len(single) for sampler in ranks)  # not split, not repeated
        for step, *slices in zip(steps, *ranks, strict=True):
            assert [i for part in slices for i in part] == step


def test_replicas_from_injected_distributed_sampler():
    pids = make_pids()
    dist = DistributedSampler(list(range(len(pids))), num_replicas=2, rank=1, shuffle=False)
    sampler = PKSampler(pids, p=2, k=2, seed=0, sampler=dist)
    assert (sampler.num_replicas, sampler.rank) == (2, 1)
    explicit = PKSampler(pids, p=2, k=2, seed=0, num_replicas=2, rank=1)
    assert list(sampler) == list(explicit)
    assert sampler.sampler is sampler  # Lightning's set_epoch reaches it through .sampler


def test_lightning_set_epoch_reaches_the_sampler():
    from lightning.fabric.utilities.data import _set_sampler_epoch

    pids = make_pids()
    loader = DataLoader(list(range(len(pids))), batch_sampler=PKSampler(pids, 2, 2, seed=0))
    _set_sampler_epoch(loader, 4)
    assert loader.batch_sampler.epoch == 4


class IndexDataset(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def test_works_with_dataloader_workers():
    pids = make_pids()
    sampler = PKSampler(pids, p=2, k=4, seed=3, num_replicas=1, rank=0)
    loader = DataLoader(IndexDataset(len(pids)), batch_sampler=sampler, num_workers=2)
    got = [batch.tolist() for batch in loader]
    assert got == list(sampler)
    assert all(isinstance(b, torch.Tensor) for b in loader)


def test_errors():
    pids = make_pids(num_ids=5)
    with pytest.raises(ValueError, match="p"):
        PKSampler(pids, p=6, k=2, num_replicas=1, rank=0)
    with pytest.raises(ValueError, match="p: the global batch of 3 identities"):
        PKSampler(pids, p=3, k=2, num_replicas=2, rank=0)  # 3 identities over 2 devices
    with pytest.raises(ValueError, match="k"):
        PKSampler(pids, p=2, k=0)
    with pytest.raises(ValueError, match="rank"):
        PKSampler(pids, p=2, k=2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="empty"):
        PKSampler([], p=2, k=2)
