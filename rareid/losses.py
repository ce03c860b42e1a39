"""Identity (prototype cross-entropy) and balanced verification losses."""

from __future__ import annotations

import torch
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
