"""Identity-balanced (P x K) batch sampler, DDP-aware (paper §IV: every batch has positives).

An epoch is planned from a seeded Generator (``seed``, ``epoch``):

1. Every identity's images are shuffled and cut into *chunks* of K indices. With
   ``drop_last=True`` an identity gives ``max(1, n // K)`` chunks (the remainder is left out this
   epoch, a different one each epoch); with ``drop_last=False`` it gives ``ceil(n / K)`` chunks,
   the last one completed with random repeats. An identity with fewer than K images always gives
   one chunk: all its images plus random repeats (sampling with replacement).
2. A *step* is the global batch: ``P`` chunks of distinct identities. With R replicas, rank
   ``r`` takes its slice, chunks ``r*P/R .. (r+1)*P/R - 1``, so the ranks see disjoint
   identities, every rank yields the same number of batches, and the global batch of a step is
   the same whatever R is (one seed, one plan: N devices train on what one device would).
3. The number of steps N is fixed by the chunk counts alone (not by the shuffle), so ``len()``
   is exact and constant across epochs: an identity contributes at most N chunks (one per step),
   and N = floor(total chunks / P) at the fixed point of that cap (ceil with
   ``drop_last=False``, the missing slots filled with extra chunks of identities not yet in
   the step). Chunks are laid out identity by identity in shuffled order and dealt to steps
   round-robin (position s -> step s mod N), which puts the chunks of one identity in
   different steps.

``set_epoch`` changes the plan deterministically. With ``keyed=True`` the sampler yields
:class:`SampleKey` tuples instead of bare indices: the index plus the epoch, step and slot of the
draw in the global batch, from which :class:`~rareid.data.dataset.TrainDataset` seeds that
sample's random views. Every draw of an epoch then depends on (seed, epoch) alone, not on what
earlier epochs drew nor on the number of workers or devices, which is what makes a fit resumed
at an epoch boundary repeat an uninterrupted one. Lightning calls ``set_epoch`` on
``dataloader.batch_sampler.sampler``, which is why ``sampler`` points back at the PK sampler
itself; when Lightning re-creates the sampler under DDP it passes its ``DistributedSampler`` as
``sampler=``, and the replica count and rank are read from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
from torch.utils.data import BatchSampler, Sampler


def _distributed_defaults() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class SampleKey(NamedTuple):
    """One draw of an epoch's plan: dataset ``index`` at ``slot`` of the global batch ``step``."""

    index: int
    epoch: int
    step: int
    slot: int


class PKSampler(BatchSampler):
    """Batch sampler yielding lists of (P / R) * K dataset indices: P / R identities x K images.

    Args:
        pids: identity of every dataset index (any hashable ints).
        p: identities per global batch (all ranks together); each rank takes ``p / R``.
        k: images per identity.
        seed: base seed; the plan of epoch ``e`` depends only on (seed, e, replicas).
        num_replicas, rank: DDP layout; default from ``sampler`` (a DistributedSampler that
            Lightning injects) or ``torch.distributed`` if initialised, else (1, 0).
        drop_last: leave out the images that do not fill a chunk / step (see module doc) instead
            of completing them with random repeats.
        sampler: ignored except for its ``num_replicas`` / ``rank`` (Lightning compatibility).
        keyed: yield :class:`SampleKey` tuples (index, epoch, step, slot) instead of indices,
            so the dataset can seed each sample's augmentation from its place in the plan.
    """

    def __init__(
        self,
        pids: Sequence[int],
        p: int,
        k: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = True,
        sampler: Sampler | None = None,
        keyed: bool = False,
    ) -> None:
        # BatchSampler.__init__ is not called on purpose: it insists on an index sampler, and
        # this sampler draws its own indices. The attributes Lightning reads are set here.
        if int(p) < 1:
            raise ValueError(f"p: expected at least 1 identity per batch, got {p}")
        if int(k) < 1:
            raise ValueError(f"k: expected at least 1 image per identity, got {k}")
        if sampler is not None:
            num_replicas = (
                getattr(sampler, "num_replicas", None) if num_replicas is None else num_replicas
            )
            rank = getattr(sampler, "rank", None) if rank is None else rank
        if num_replicas is None or rank is None:
            default_replicas, default_rank = _distributed_defaults()
            num_replicas = default_replicas if num_replicas is None else num_replicas
            rank = default_rank if rank is None else rank
        if int(num_replicas) < 1:
            raise ValueError(f"num_replicas: expected >= 1, got {num_replicas}")
        if not 0 <= int(rank) < int(num_replicas):
            raise ValueError(f"rank: expected 0 <= rank < num_replicas={num_replicas}, got {rank}")

        self.p, self.k = int(p), int(k)
        self.seed = int(seed)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.drop_last = bool(drop_last)
        self.keyed = bool(keyed)
        if self.p % self.num_replicas:
            raise ValueError(
                f"p: the global batch of {self.p} identities does not split evenly over "
                f"num_replicas={self.num_replicas} devices; choose p as a multiple of the "
                "number of devices"
            )
        self.p_per_rank = self.p // self.num_replicas
        self.batch_size = self.p_per_rank * self.k
        self.epoch = 0
        self.sampler = self  # Lightning calls set_epoch on batch_sampler.sampler

        pid_array = np.asarray(list(pids))
        if pid_array.size == 0:
            raise ValueError("pids: the training set is empty")
        unique, inverse = np.unique(pid_array, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=unique.size))[:-1]
        self._groups: list[np.ndarray] = np.split(order, bounds)
        self._num_ids = unique.size
        self._step_size = self.p
        if self._num_ids < self._step_size:
            raise ValueError(
                f"p: a batch needs p = {self.p} distinct identities, but the training set has "
                f"only {self._num_ids}; lower p"
            )
        counts = np.array([g.size for g in self._groups])
        if self.drop_last:
            self._chunks = np.maximum(1, counts // self.k)
        else:
            self._chunks = -(-counts // self.k)
        self._num_steps = self._plan_length(self._chunks)

    def _plan_length(self, chunks: np.ndarray) -> int:
        """Number of steps N, the fixed point of N = f(sum(min(chunks, N)))."""
        step = self._step_size

        def f(total: int) -> int:
            return total // step if self.drop_last else -(-total // step)

        steps = f(int(chunks.sum()))
        while True:
            new = f(int(np.minimum(chunks, steps).sum()))
            if new >= steps:
                return steps
            steps = new

    def set_epoch(self, epoch: int) -> None:
        """Select the plan of epoch ``epoch`` (same seed + epoch -> same batches)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._num_steps

    def _identity_chunks(self, rng: np.random.Generator, group: np.ndarray, count: int) -> list:
        """``count`` chunks of K indices of one identity (repeats only where it has to)."""
        k = self.k
        needed = count * k
        if group.size < needed:
            # fewer images than slots: every image once, the rest random repeats
            extra = rng.choice(group, size=needed - group.size, replace=True)
            perm = rng.permutation(np.concatenate([group, extra]))
        else:
            perm = rng.permutation(group)
        return [perm[i * k : (i + 1) * k] for i in range(count)]

    def plan(self, epoch: int | None = None) -> list[list[list[int]]]:
        """The full plan: ``steps[s][r]`` = batch (list of indices) of rank r at step s."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch])
        steps = self._num_steps
        step_size = self._step_size
        id_order = rng.permutation(self._num_ids)

        # lay out chunks identity after identity; position s goes to step s mod N
        slots: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(steps)]
        position = 0
        capacity = steps * step_size
        for ident in id_order:
            if position >= capacity:
                break
            count = min(int(self._chunks[ident]), steps, capacity - position)
            for chunk in self._identity_chunks(rng, self._groups[ident], count):
                slots[position % steps].append((int(ident), chunk))
                position += 1

        # drop_last=False: complete short steps with extra chunks of identities not in them
        for step_slots in slots:
            if len(step_slots) < step_size:
                present = {ident for ident, _ in step_slots}
                candidates = np.array([i for i in range(self._num_ids) if i not in present])
                picks = rng.choice(candidates, size=step_size - len(step_slots), replace=False)
                for ident in picks:
                    group = self._groups[int(ident)]
                    chunk = rng.choice(group, size=self.k, replace=group.size < self.k)
                    step_slots.append((int(ident), chunk))

        plan: list[list[list[int]]] = []
        share = self.p_per_rank
        for step_index in rng.permutation(steps):
            chunks = slots[int(step_index)]
            order = rng.permutation(len(chunks))
            chunks = [chunks[i] for i in order]
            plan.append(
                [
                    [int(i) for _, chunk in chunks[r * share : (r + 1) * share] for i in chunk]
                    for r in range(self.num_replicas)
                ]
            )
        return plan

    def __iter__(self) -> Iterator[list[int]] | Iterator[list[SampleKey]]:
        epoch = self.epoch
        first_slot = self.rank * self.batch_size
        for step_index, step in enumerate(self.plan(epoch)):
            batch = step[self.rank]
            if self.keyed:
                yield [
                    SampleKey(index, epoch, step_index, first_slot + position)
                    for position, index in enumerate(batch)
                ]
            else:
                yield batch
