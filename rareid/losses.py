"""Identity (prototype cross-entropy) and balanced verification losses, and the gather
that forms verification pairs over the global batch under DDP."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F


def identity_loss(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy over identity prototypes."""
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def verification_loss(
    pair_logits: torch.Tensor, pids_a: torch.Tensor, pids_b: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy over all a-b pairs, positives and negatives weighted equally.

    A P x K batch has far more negative than positive pairs, so the loss is the mean
    of the positive-pair loss and the negative-pair loss (a class absent from the
    batch simply drops out).
    """
    same = (pids_a[:, None] == pids_b[None, :]).to(pair_logits.dtype)
    losses = F.binary_cross_entropy_with_logits(pair_logits, same, reduction="none")
    n_pos = same.sum()
    n_neg = same.numel() - n_pos
    pos_mean = (losses * same).sum() / n_pos.clamp(min=1)
    neg_mean = (losses * (1 - same)).sum() / n_neg.clamp(min=1)
    present = (n_pos > 0).to(losses.dtype) + (n_neg > 0).to(losses.dtype)
    return (pos_mean + neg_mean) / present


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def gather_across_ranks(tensor: torch.Tensor, with_grad: bool = False) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, in rank order (the global batch).

    With ``with_grad`` the result keeps the autograd path to this rank's part, and the
    backward pass sums the gradients every rank computed for it. When every rank then
    computes the same loss over the global batch, DDP's average of the parameter gradients
    equals the gradient of that loss on one device. A no-op outside distributed runs.
    """
    world = _world_size()
    if world == 1:
        return tensor
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
    if len({int(size) for size in sizes}) != 1:
        raise ValueError(
            f"every rank must hold the same number of samples to gather the global batch, got "
            f"{[int(size) for size in sizes]}: use the P x K batch sampler (equal batches)"
        )
    if with_grad:
        return torch.cat(dist_nn.all_gather(tensor), dim=0)
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
