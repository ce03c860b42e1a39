"""RAReIDModule: training step, embedding/distance (Eq. 2), ablation switches, optimiser groups."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.models.module import RAReIDModule
from tests.helpers import (
    RandomReIDDataModule,
    quiet_trainer_kwargs,
    random_train_batch,
    tiny_module_kwargs,
)

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`"),
]

SPLITS = [2, 4, 4, 6]  # unequal sub-vectors, d = 16
BOUNDS = [0, 2, 6, 10, 16]


def make_module(**overrides) -> RAReIDModule:
    torch.manual_seed(0)
    return RAReIDModule(**tiny_module_kwargs(**overrides))


def activate_all(module: RAReIDModule) -> None:
    for stage in range(len(module.masks)):
        module.masks.set_active(stage, True)


def test_training_step_gives_a_finite_loss_and_gradients() -> None:
    module = make_module()
    activate_all(module)
    module.train()
    loss = module.training_step(random_train_batch(batch_size=4), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for name, param in module.named_parameters():
        assert param.grad is not None, name
    for part in (module.backbone, module.head, module.classifier, module.verifier):
        assert any(torch.count_nonzero(p.grad) for p in part.parameters())
    for mask in module.masks.masks:
        assert torch.count_nonzero(mask.logits.grad) > 0


def test_training_loss_is_cls_plus_lambda_verif(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = random_train_batch(batch_size=4)
    logged: dict[str, float] = {}
    module = make_module(verif_weight=0.25)
    monkeypatch.setattr(module, "log", lambda key, value, **_: logged.__setitem__(key, value))
    loss = module.training_step(batch, 0)
    expected = logged["train/loss_cls"] + 0.25 * logged["train/loss_verif"]
    torch.testing.assert_close(loss, expected)


def test_training_step_blocks_gradient_into_padded_part() -> None:
    module = make_module(split_sizes=SPLITS)
    activate_all(module)
    captured: dict[str, torch.Tensor] = {}

    def keep(_m, _i, out: torch.Tensor) -> None:
        out.retain_grad()
        captured["v"] = out

    module.head.register_forward_hook(keep)
    batch = random_train_batch(batch_size=4)
    module.training_step(batch, 0).backward()
    grad = captured["v"].grad
    levels = torch.cat([torch.full((4,), 4), batch["lr_level"]])
    assert set(batch["lr_level"].tolist()) != {4}  # some LR views really are padded
    for row, k in enumerate(levels.tolist()):
        assert torch.count_nonzero(grad[row, BOUNDS[k] :]) == 0
        assert torch.count_nonzero(grad[row, : BOUNDS[k]]) > 0


def test_verification_pairs_are_lr_against_hr_cut_to_the_lower_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = random_train_batch(batch_size=4)
    for varying, expected_lr_levels in ((True, batch["lr_level"]), (False, torch.full((4,), 4))):
        module = make_module(varying_length=varying)
        seen: dict[str, torch.Tensor] = {}
        original = module.verifier.forward_pairs

        def spy(z_a, levels_a, z_b, levels_b, original=original, seen=seen):
            seen.update(z_a=z_a, levels_a=levels_a, z_b=z_b, levels_b=levels_b)
            return original(z_a, levels_a, z_b, levels_b)

        monkeypatch.setattr(module.verifier, "forward_pairs", spy)
        module.training_step(batch, 0)
        assert torch.equal(seen["levels_a"], expected_lr_levels)
        assert torch.equal(seen["levels_b"], torch.full((4,), 4))
        assert seen["z_a"].shape == seen["z_b"].shape == (4, 16)


def test_embed_and_distance_shapes_and_padding() -> None:
    module = make_module(split_sizes=SPLITS).eval()
    images = torch.randn(5, 3, 64, 32)
    levels = torch.tensor([1, 2, 3, 4, 2])
    z = module.embed(images, levels)
    assert z.shape == (5, 16) and not z.requires_grad
    for row, k in enumerate(levels.tolist()):
        assert torch.count_nonzero(z[row, BOUNDS[k] :]) == 0
        assert torch.count_nonzero(z[row, : BOUNDS[k]]) == BOUNDS[k]
    # Levels as a plain list work too.
    assert torch.equal(module.embed(images, levels.tolist()), z)
    assert module.distance(z, levels, z[:3]).shape == (5, 3)
    assert module.distance(z, levels, z[:3], levels[:3]).shape == (5, 3)


def test_distance_is_the_truncated_squared_distance_of_eq2() -> None:
    module = make_module(split_sizes=SPLITS).eval()
    torch.manual_seed(5)
    q_levels = torch.tensor([1, 2, 3, 4, 1, 3])
    g_levels = torch.tensor([4, 2, 1, 3, 4])
    query = module.pad(torch.randn(6, 16), q_levels)
    gallery = module.pad(torch.randn(5, 16), g_levels)
    expected = torch.empty(6, 5)
    expected_hr = torch.empty(6, 5)
    for i, kq in enumerate(q_levels.tolist()):
        for j, kg in enumerate(g_levels.tolist()):
            n = BOUNDS[min(kq, kg)]
            expected[i, j] = (query[i, :n] - gallery[j, :n]).square().sum()
            n = BOUNDS[kq]  # HR gallery: the query's own prefix
            expected_hr[i, j] = (query[i, :n] - gallery[j, :n]).square().sum()
    torch.testing.assert_close(module.distance(query, q_levels, gallery, g_levels), expected)
    torch.testing.assert_close(module.distance(query, q_levels, gallery), expected_hr)


def test_varying_length_off_uses_every_sub_vector() -> None:
    module = make_module(varying_length=False).eval()
    images = torch.randn(3, 3, 64, 32)
    levels = torch.tensor([1, 1, 2])
    z = module.embed(images, levels)
    assert torch.count_nonzero(z) == z.numel()  # no zero tail for low levels
    with torch.no_grad():
        assert torch.equal(z, module(images, levels))
    gallery = torch.randn(4, 16)
    full = ((z[:, None, :] - gallery[None]) ** 2).sum(-1)
    torch.testing.assert_close(module.distance(z, levels, gallery), full)
    torch.testing.assert_close(
        module.distance(z, levels, gallery, torch.tensor([1, 2, 1, 3])), full
    )
    # With varying length on, the same level-1 query is cut.
    on = make_module(varying_length=True).eval()
    assert torch.count_nonzero(on.embed(images, levels)[:2, 4:]) == 0


def test_use_masks_off_has_no_hooks_and_no_mask_parameters() -> None:
    module = make_module(use_masks=False)
    assert module.masks is None
    assert module.mask_parameters() == []
    assert not any("masks" in name for name, _ in module.named_parameters())
    assert not any("masks" in name for name in module.state_dict())
    for stage in module.backbone.stages:
        assert not module.backbone.get_stage(stage.name)._forward_hooks
    with_masks = make_module(use_masks=True)
    assert len(with_masks.mask_parameters()) == 4
    assert all(
        with_masks.backbone.get_stage(s.name)._forward_hooks for s in with_masks.backbone.stages
    )
    # Without masks the level does not change the un-padded embedding.
    images = torch.randn(2, 3, 64, 32)
    module.eval()
    with torch.no_grad():
        assert torch.equal(
            module(images, torch.tensor([1, 1])), module(images, torch.tensor([4, 4]))
        )


def test_masks_make_the_embedding_depend_on_the_level() -> None:
    module = make_module()
    activate_all(module)
    module.eval()
    images = torch.randn(1, 3, 64, 32).expand(2, -1, -1, -1)
    with torch.no_grad():
        v = module(images, torch.tensor([1, 4]))
    assert not torch.allclose(v[0], v[1])


def test_cls_loss_off_has_no_classifier(monkeypatch: pytest.MonkeyPatch) -> None:
    module = make_module(use_cls_loss=False)
    assert module.classifier is None
    assert not any(name.startswith("classifier") for name, _ in module.named_parameters())
    logged: dict[str, float] = {}
    monkeypatch.setattr(module, "log", lambda key, value, **_: logged.__setitem__(key, value))
    loss = module.training_step(random_train_batch(), 0)
    assert "train/loss_cls" not in logged and "train/loss_verif" in logged
    torch.testing.assert_close(loss, 0.5 * logged["train/loss_verif"])
    loss.backward()
    assert all(p.grad is not None for p in module.parameters())


def test_verif_loss_off_has_no_verifier(monkeypatch: pytest.MonkeyPatch) -> None:
    module = make_module(use_verif_loss=False)
    assert module.verifier is None
    assert not any(name.startswith("verifier") for name, _ in module.named_parameters())
    logged: dict[str, float] = {}
    monkeypatch.setattr(module, "log", lambda key, value, **_: logged.__setitem__(key, value))
    loss = module.training_step(random_train_batch(), 0)
    assert "train/loss_verif" not in logged
    torch.testing.assert_close(loss, logged["train/loss_cls"])


def test_invalid_switches_are_rejected() -> None:
    with pytest.raises(ValueError, match="nothing to train"):
        make_module(use_cls_loss=False, use_verif_loss=False)
    with pytest.raises(ValueError, match="mask_schedule"):
        make_module(mask_schedule="sideways")
    with pytest.raises(ValueError, match="embedding_dim"):
        make_module(embedding_dim=18, split="equal")
    with pytest.raises(ValueError, match="embedding_dim"):
        make_module(embedding_dim=6)  # proportional: a level would get no dimension


def test_split_default_is_proportional_and_equal_is_an_option() -> None:
    assert make_module(embedding_dim=24).split_sizes == [6, 2, 4, 12]
    assert make_module(embedding_dim=24, split="equal").split_sizes == [6, 6, 6, 6]
    module = make_module(embedding_dim=24, split="equal", split_sizes=[1, 2, 3, 18])
    assert module.split_sizes == [1, 2, 3, 18]
    assert module.verifier.split_sizes == [1, 2, 3, 18]


def test_bad_levels_raise_value_error() -> None:
    module = make_module().eval()
    images = torch.randn(2, 3, 64, 32)
    z = torch.randn(2, 16)
    for bad in ([0, 1], [1, 5]):
        with pytest.raises(ValueError, match=r"levels must be in 1\.\.4"):
            module.embed(images, bad)
        with pytest.raises(ValueError, match=r"levels must be in 1\.\.4"):
            module.distance(z, bad, z)
        with pytest.raises(ValueError, match=r"levels must be in 1\.\.4"):
            module.distance(z, [1, 2], z, bad)


def test_embed_runs_in_eval_mode_and_restores_every_mode() -> None:
    module = make_module(embedding_norm=True)
    activate_all(module)
    module.train()
    module.head.norm.eval()  # a user's own choice for one submodule survives embed
    stats = {k: v.clone() for k, v in module.state_dict().items() if "running" in k}
    images = torch.randn(3, 3, 64, 32)
    z = module.embed(images, [1, 2, 4])
    one = module.embed(images[:1], [1])  # batch of one: BatchNorm1d in train mode would fail
    for key, value in stats.items():
        assert torch.equal(module.state_dict()[key], value), key  # statistics untouched
    assert module.training and module.backbone.training and not module.head.norm.training
    module.eval()
    torch.testing.assert_close(module.embed(images, [1, 2, 4]), z)
    torch.testing.assert_close(one[0], z[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ([1.5, 2.0], r"non-integer"),
        (2, r"expected shape \(2,\)"),
        ([1, 2, 3], r"expected shape \(2,\)"),
        ([[1, 2]], r"expected shape \(2,\)"),
        ([True, False], r"integer levels"),
    ],
)
def test_embed_rejects_malformed_levels(levels, message: str) -> None:
    module = make_module()
    with pytest.raises(ValueError, match=message):
        module.embed(torch.randn(2, 3, 64, 32), levels)
    # Whole-number floats are fine (e.g. levels read back from JSON).
    assert module.embed(torch.randn(2, 3, 64, 32), [1.0, 4.0]).shape == (2, 16)


def test_distance_rejects_levels_of_the_wrong_length() -> None:
    module = make_module()
    z = torch.randn(3, 16)
    with pytest.raises(ValueError, match=r"query_levels: expected shape \(3,\)"):
        module.distance(z, [1, 2], z)
    with pytest.raises(ValueError, match=r"gallery_levels: expected shape \(3,\)"):
        module.distance(z, [1, 2, 3], z, 4)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.zeros(2, 3, 64, 32, dtype=torch.uint8), r"dtype torch\.uint8"),
        (torch.randn(2, 1, 64, 32), r"\(N, 3, 64, 32\).*got shape \(2, 1, 64, 32\)"),
        (torch.randn(2, 3, 128, 64), r"img_size 64x32.*got shape \(2, 3, 128, 64\)"),
        (torch.randn(3, 64, 32), r"got shape \(3, 64, 32\)"),
    ],
)
def test_embed_rejects_malformed_images(images: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_module().embed(images, [1, 2])


def test_parameter_groups_exempt_masks_norms_and_biases_from_weight_decay() -> None:
    module = make_module(weight_decay=0.01)
    groups = module.parameter_groups()
    decay = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert all(g["weight_decay"] in (0.0, 0.01) for g in groups)
    names = dict(module.named_parameters())
    assert decay.isdisjoint(no_decay)
    assert decay | no_decay == {id(p) for p in names.values()}  # nothing left out
    for name, param in names.items():
        exempt = (
            name.startswith("masks.")
            or ".bn" in name
            or "downsample.1" in name
            or name.endswith(".bias")
        )
        assert (id(param) in no_decay) == exempt, name
    assert id(module.masks.masks[0].logits) in no_decay  # 2-D, yet exempt
    assert id(module.classifier.weight) in decay
    optimizer = module.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.Adam)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([3.5e-4] * 3)


def test_mask_lr_sets_the_learning_rate_of_the_masks_only() -> None:
    module = make_module(lr=1e-3, mask_lr=0.05)
    optimizer = module.configure_optimizers()["optimizer"]
    masks = {id(p) for p in module.mask_parameters()}
    for group in optimizer.param_groups:
        in_group = {id(p) for p in group["params"]}
        assert group["lr"] == pytest.approx(0.05 if in_group == masks else 1e-3)
    assert sum({id(p) for p in g["params"]} == masks for g in optimizer.param_groups) == 1
    # Without masks there is no mask group.
    assert len(make_module(use_masks=False, mask_lr=0.05).parameter_groups()) == 2


class _ActiveFlagsAtStart(Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.flags = pl_module.masks.active_flags()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.before = [m.logits.detach().clone() for m in pl_module.masks.masks]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.after = [m.logits.detach().clone() for m in pl_module.masks.masks]


@pytest.mark.parametrize("schedule", ["end_to_end", "progressive"])
def test_mask_schedule_at_fit_start(tmp_path, schedule: str) -> None:
    module = make_module(mask_schedule=schedule)
    probe = _ActiveFlagsAtStart()
    trainer = L.Trainer(
        callbacks=[ProgressiveMaskTraining(phase_epochs=[0, 1, 2, 3]), probe],
        **quiet_trainer_kwargs(tmp_path, max_epochs=4, max_steps=2, limit_train_batches=2),
    )
    trainer.fit(module, datamodule=RandomReIDDataModule(size=8, batch_size=4))
    changed = [not torch.equal(a, b) for a, b in zip(probe.before, probe.after, strict=True)]
    if schedule == "end_to_end":
        # Every mask is on from step 0 and trains together.
        assert probe.flags == [True] * 4
        assert changed == [True] * 4
        assert module.masks.active_flags() == [True] * 4
    else:
        # Nothing before the first epoch; phase 1 trains the stage next to the output only.
        assert probe.flags == [False] * 4
        assert changed == [False, False, False, True]
        assert module.masks.active_flags() == [False, False, False, True]


def test_embedding_norm_puts_batchnorm_after_the_fc_and_keeps_padding() -> None:
    plain = make_module()
    normed = make_module(embedding_norm=True)
    assert isinstance(plain.head.norm, torch.nn.Identity)
    assert isinstance(normed.head.norm, torch.nn.BatchNorm1d)
    normed.train()
    activate_all(normed)
    levels = torch.tensor([1, 2, 3, 4])
    v = normed(torch.randn(4, 3, 64, 32), levels)
    # Training-mode BatchNorm: every embedding dimension is standardised over the batch.
    torch.testing.assert_close(v.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    z = normed.eval().embed(torch.randn(4, 3, 64, 32), levels)
    for row, level in enumerate(levels.tolist()):
        length = sum(normed.split_sizes[:level])
        assert torch.count_nonzero(z[row, length:]) == 0
        assert torch.count_nonzero(z[row, :length]) == length


def test_rerank_option_reaches_the_test_metric_only() -> None:
    module = RAReIDModule(**tiny_module_kwargs(rerank=True, rerank_k1=7))
    assert module.test_metric.rerank and module.test_metric.rerank_options["k1"] == 7
    assert not module.val_metric.rerank  # validation stays cheap


def test_query_subvectors_keeps_that_many_subvectors_with_the_level_s_masks() -> None:
    """Table II's forced length: the masks follow the image's level, the padding the forced
    number of sub-vectors; the test metric ranks with it and the option needs varying length."""
    torch.manual_seed(0)
    module = RAReIDModule(**tiny_module_kwargs(query_subvectors=4)).eval()
    for mask in module.masks.masks:
        mask.active.fill_(True)  # level-dependent masks, so the level visibly matters
    images = torch.randn(2, 3, 64, 32)
    levels = torch.tensor([2, 2])
    own = module.embed(images, levels)
    longer = module.embed(images, levels, subvectors=[4, 4])
    kept = sum(module.split_sizes[:2])
    torch.testing.assert_close(longer[:, :kept], own[:, :kept])
    assert torch.count_nonzero(own[:, kept:]) == 0
    assert torch.count_nonzero(longer[:, kept:]) == longer[:, kept:].numel()
    other_masks = module.embed(images, torch.tensor([4, 4]))
    assert not torch.allclose(longer, other_masks)  # the masks are still level 2's
    assert module.test_metric.query_subvectors == 4
    batch = {  # one MLR query and one gallery image, both at level 2, through the test step
        "image": images,
        "level": levels,
        "pid": torch.tensor([1, 1]),
        "camid": torch.tensor([0, 1]),
        "role": torch.tensor([1, 0]),
        "trial": torch.tensor([0, -1]),
        "gallery_trials": torch.tensor([0, 1]),
        "index": torch.tensor([0, 1]),
    }
    module._eval_update(module.test_metric, batch)
    stored = module.test_metric.samples()["embeddings"]
    torch.testing.assert_close(stored[0], longer[0])  # the query: 4 sub-vectors
    torch.testing.assert_close(stored[1], own[1])  # the gallery image: its level's
    with pytest.raises(ValueError, match="query_subvectors"):
        RAReIDModule(**tiny_module_kwargs(query_subvectors=2, varying_length=False))
    with pytest.raises(ValueError, match="query_subvectors"):
        RAReIDModule(**tiny_module_kwargs(query_subvectors=0))
