"""Identity cross-entropy and the balanced verification BCE."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rareid.losses import gather_across_ranks, identity_loss, verification_loss


def bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_balanced_bce_is_mean_of_positive_and_negative_means() -> None:
    torch.manual_seed(0)
    pids_a = torch.tensor([0, 0, 1, 2])
    pids_b = torch.tensor([0, 1, 1, 3, 0])
    logits = torch.randn(4, 5)
    positives, negatives = [], []
    for i, a in enumerate(pids_a.tolist()):
        for j, b in enumerate(pids_b.tolist()):
            (positives if a == b else negatives).append(bce(logits[i, j].item(), float(a == b)))
    expected = (sum(positives) / len(positives) + sum(negatives) / len(negatives)) / 2
    assert len(positives) == 6 and len(negatives) == 14  # unbalanced on purpose
    loss = verification_loss(logits, pids_a, pids_b)
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    # Not the plain (unbalanced) mean.
    plain = F.binary_cross_entropy_with_logits(logits, (pids_a[:, None] == pids_b[None, :]).float())
    assert not math.isclose(loss.item(), plain.item(), rel_tol=1e-3)


def test_balanced_bce_with_one_class_absent() -> None:
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.1]])
    only_negatives = verification_loss(logits, torch.tensor([0, 1]), torch.tensor([2, 3]))
    expected = sum(bce(x, 0.0) for x in logits.flatten().tolist()) / 4
    assert math.isclose(only_negatives.item(), expected, rel_tol=1e-5)
    only_positives = verification_loss(logits, torch.tensor([5, 5]), torch.tensor([5, 5]))
    expected = sum(bce(x, 1.0) for x in logits.flatten().tolist()) / 4
    assert math.isclose(only_positives.item(), expected, rel_tol=1e-5)


def test_verification_loss_gradient_is_balanced() -> None:
    # One positive and three negatives: each class carries half of the loss.
    logits = torch.zeros(2, 2, requires_grad=True)
    verification_loss(logits, torch.tensor([0, 1]), torch.tensor([0, 2])).backward()
    # d/dx BCE at x = 0 is (0.5 - y); weights 1/2 per class mean.
    expected = torch.tensor([[-0.5 * 0.5, 0.5 * 0.5 / 3], [0.5 * 0.5 / 3, 0.5 * 0.5 / 3]])
    torch.testing.assert_close(logits.grad, expected)


def test_identity_loss_is_cross_entropy_with_optional_smoothing() -> None:
    torch.manual_seed(1)
    logits = torch.randn(6, 5)
    targets = torch.tensor([0, 1, 4, 2, 2, 3])
    manual = -logits.log_softmax(dim=1)[torch.arange(6), targets].mean()
    torch.testing.assert_close(identity_loss(logits, targets), manual)
    smoothed = identity_loss(logits, targets, label_smoothing=0.1)
    log_p = logits.log_softmax(dim=1)
    manual_smoothed = (0.9 * -log_p[torch.arange(6), targets] + 0.1 * -log_p.mean(dim=1)).mean()
    torch.testing.assert_close(smoothed, manual_smoothed)


def test_gather_is_the_identity_outside_distributed_runs() -> None:
    tensor = torch.randn(3, 4, requires_grad=True)
    assert gather_across_ranks(tensor, with_grad=True) is tensor
    assert gather_across_ranks(tensor) is tensor
