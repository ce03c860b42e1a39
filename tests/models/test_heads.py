"""Varying-length padding (Eq. 2), prototype classifier and verification head (Eq. 4)."""

from __future__ import annotations

import pytest
import torch

from rareid.levels import prefix_lengths
from rareid.models.heads import (
    EmbeddingHead,
    PrototypeClassifier,
    VerificationHead,
    level_mask,
    pad_by_level,
    proportional_prefix_lengths,
    resolve_split_sizes,
)

SPLITS = [3, 5, 2, 6]  # unequal sub-vectors, d = 16, m = 4
D = sum(SPLITS)
BOUNDS = [0, 3, 8, 10, 16]  # prefix ends written out by hand


RATES = (1, 2, 3, 4)


def test_resolve_split_sizes_equal_and_explicit() -> None:
    assert resolve_split_sizes(2048, RATES, "equal") == [512] * 4
    assert resolve_split_sizes(16, RATES, "proportional", SPLITS) == SPLITS  # explicit wins
    assert resolve_split_sizes(16, RATES, "equal", SPLITS) == SPLITS
    with pytest.raises(ValueError, match="embedding_dim=10"):
        resolve_split_sizes(10, RATES, "equal")
    with pytest.raises(ValueError, match="split_sizes"):
        resolve_split_sizes(16, RATES, split_sizes=[4, 4, 4])  # one size per rate
    with pytest.raises(ValueError, match="split_sizes"):
        resolve_split_sizes(16, RATES, split_sizes=[4, 4, 4, 5])  # must sum to d
    with pytest.raises(ValueError, match="split_sizes"):
        resolve_split_sizes(16, RATES, split_sizes=[8, 8, 0, 0])  # positive sizes


def test_proportional_split_follows_table_ii() -> None:
    # Rates [1, 2, 3, 4]: sub-vectors d/4, d/12, d/6, d/2 for levels 1..4.
    assert resolve_split_sizes(2048, RATES) == [512, 171, 341, 1024]
    assert resolve_split_sizes(24, RATES) == [6, 2, 4, 12]  # exact: 24 / 12 = 2
    assert resolve_split_sizes(24, [4, 2, 3, 1]) == [6, 2, 4, 12]  # rate order is irrelevant
    for d in (16, 100, 256, 2047, 2048):
        sizes = resolve_split_sizes(d, RATES)
        assert sum(sizes) == d and min(sizes) >= 1
        prefixes = prefix_lengths(sizes)
        # Level k at rate r_k uses ~d / r_k dimensions (rounded): 1/4, 1/3, 1/2, 1 of d.
        for prefix, rate in zip(prefixes, (4, 3, 2, 1), strict=True):
            assert abs(prefix - d / rate) <= 0.5
    # Rounding half up: d = 10 -> 2.5, 3.33, 5, 10 -> 3, 3, 5, 10: level 2 gets nothing.
    assert proportional_prefix_lengths(10, RATES) == [3, 3, 5, 10]
    with pytest.raises(ValueError, match=r"embedding_dim=10.*rates"):
        resolve_split_sizes(10, RATES)
    # Rates need not start at 1: the highest resolution uses the whole vector.
    assert proportional_prefix_lengths(64, [2, 4, 8]) == [16, 32, 64]
    assert resolve_split_sizes(64, [2, 4, 8]) == [16, 16, 32]
    assert resolve_split_sizes(7, [1]) == [7]


def test_level_mask_and_padding() -> None:
    assert prefix_lengths(SPLITS) == BOUNDS[1:]
    levels = torch.tensor([1, 2, 3, 4, 2])
    mask = level_mask(levels, SPLITS)
    for row, k in enumerate(levels.tolist()):
        expected = torch.zeros(D)
        expected[: BOUNDS[k]] = 1
        assert torch.equal(mask[row], expected)
    v = torch.randn(5, D)
    z = pad_by_level(v, levels, SPLITS)
    for row, k in enumerate(levels.tolist()):
        assert torch.equal(z[row, : BOUNDS[k]], v[row, : BOUNDS[k]])
        assert torch.count_nonzero(z[row, BOUNDS[k] :]) == 0


def test_classifier_logits_use_only_the_first_k_sub_classifiers() -> None:
    torch.manual_seed(0)
    classifier = PrototypeClassifier(D, num_classes=7)
    with torch.no_grad():
        classifier.weight.normal_()  # the default init (std 1e-3) is too small to tell apart
    assert not any(name.endswith("bias") for name, _ in classifier.named_parameters())
    v = torch.randn(6, D)
    levels = torch.tensor([1, 2, 3, 4, 1, 3])
    logits = classifier(pad_by_level(v, levels, SPLITS))
    assert logits.shape == (6, 7)
    W = classifier.weight.detach()  # (C, d)
    for row, k in enumerate(levels.tolist()):
        # e = sum over the first k sub-vectors of (w^j)^T v_j.
        expected = sum(
            W[:, BOUNDS[j] : BOUNDS[j + 1]] @ v[row, BOUNDS[j] : BOUNDS[j + 1]] for j in range(k)
        )
        torch.testing.assert_close(logits[row], expected, rtol=1e-5, atol=1e-5)
    # A level-k sample's logits ignore what the network put in the padded part.
    v_noisy = v.clone()
    v_noisy[0, BOUNDS[1] :] += 100.0
    assert torch.equal(
        classifier(pad_by_level(v_noisy, levels, SPLITS))[0],
        classifier(pad_by_level(v, levels, SPLITS))[0],
    )


def test_prototype_classifier_needs_two_identities() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        PrototypeClassifier(D, num_classes=1)


def test_padded_dimensions_get_exactly_zero_gradient() -> None:
    torch.manual_seed(1)
    classifier = PrototypeClassifier(D, num_classes=5)
    verifier = VerificationHead(D, SPLITS, hidden=8)
    v = torch.randn(6, D, requires_grad=True)
    levels = torch.tensor([1, 2, 3, 4, 1, 2])
    z = pad_by_level(v, levels, SPLITS)
    loss = (
        classifier(z).logsumexp(dim=1).sum()
        + verifier.forward_pairs(z[:3], levels[:3], z[3:], levels[3:]).square().sum()
    )
    loss.backward()
    for row, k in enumerate(levels.tolist()):
        assert torch.count_nonzero(v.grad[row, BOUNDS[k] :]) == 0
        assert torch.count_nonzero(v.grad[row, : BOUNDS[k]]) == BOUNDS[k]


def explicit_pair_logits(
    head: VerificationHead, z_a: torch.Tensor, levels_a, z_b: torch.Tensor, levels_b
) -> torch.Tensor:
    """The MLP on every difference, cut by hand to the first min(k_a, k_b) sub-vectors."""
    out = torch.empty(len(z_a), len(z_b))
    for i, ka in enumerate(levels_a.tolist()):
        for j, kb in enumerate(levels_b.tolist()):
            n = BOUNDS[min(ka, kb)]
            difference = torch.zeros(D)
            difference[:n] = z_a[i, :n] - z_b[j, :n]
            out[i, j] = head(difference[None])[0]
    return out


def test_verification_forward_pairs_equals_mlp_on_cut_differences() -> None:
    torch.manual_seed(2)
    head = VerificationHead(D, SPLITS, hidden=12)
    # Raw (un-padded) embeddings: forward_pairs must cut them itself.
    z_a = torch.randn(5, D)
    z_b = torch.randn(4, D)
    levels_a = torch.tensor([1, 2, 3, 4, 2])
    levels_b = torch.tensor([4, 1, 3, 2])
    with torch.no_grad():
        logits = head.forward_pairs(z_a, levels_a, z_b, levels_b)
        expected = explicit_pair_logits(head, z_a, levels_a, z_b, levels_b)
    assert logits.shape == (5, 4)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    # Cutting matters: the same pairs at full length give other logits.
    with torch.no_grad():
        full = head.forward_pairs(z_a, torch.full((5,), 4), z_b, torch.full((4,), 4))
    assert not torch.allclose(full, logits)


def test_verification_head_gradient_matches_explicit_version() -> None:
    torch.manual_seed(3)
    head = VerificationHead(D, SPLITS, hidden=6)
    z_a = torch.randn(3, D, requires_grad=True)
    z_b = torch.randn(3, D, requires_grad=True)
    levels_a, levels_b = torch.tensor([1, 3, 4]), torch.tensor([4, 2, 4])
    head.forward_pairs(z_a, levels_a, z_b, levels_b).sum().backward()
    grads = (z_a.grad.clone(), z_b.grad.clone(), head.fc1.weight.grad.clone())
    z_a.grad = z_b.grad = None
    head.zero_grad()
    explicit_pair_logits(head, z_a, levels_a, z_b, levels_b).sum().backward()
    for ours, theirs in zip(grads, (z_a.grad, z_b.grad, head.fc1.weight.grad), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_embedding_head_is_a_linear_layer_to_d() -> None:
    head = EmbeddingHead(32, D)
    pooled = torch.randn(3, 32)
    torch.testing.assert_close(head(pooled), pooled @ head.fc.weight.t() + head.fc.bias)
    assert head(pooled).shape == (3, D)
