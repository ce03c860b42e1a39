"""Resolution-adaptive masks (Eq. 3) applied by forward hooks on the backbone stages."""

from __future__ import annotations

import copy
import pickle

import pytest
import timm
import torch

from rareid.models.backbone import Backbone
from rareid.models.masks import IDENTITY_LOGIT, ResolutionMasks, StageMask

LEVELS = torch.tensor([1, 4, 2, 3, 4, 1])  # mixed levels in one batch (1..m)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def masked_backbone(name: str, img_size: tuple[int, int]) -> tuple[Backbone, ResolutionMasks]:
    torch.manual_seed(0)
    backbone = Backbone(name, img_size=img_size).eval()
    masks = ResolutionMasks(backbone.stages, num_levels=4)
    for stage in range(len(masks)):
        masks.set_active(stage, True)
    return backbone, masks


def expand_gate(gate: torch.Tensor, ndim: int, channel_dim: int) -> torch.Tensor:
    """(B, C) gates written out by hand for NCHW (channel_dim 1) or NHWC (-1)."""
    if channel_dim == 1:
        return gate.reshape(gate.shape[0], gate.shape[1], *([1] * (ndim - 2)))
    return gate.reshape(gate.shape[0], *([1] * (ndim - 2)), gate.shape[1])


@pytest.mark.parametrize(
    ("name", "img_size", "channel_dim"),
    [("resnet18", (64, 32), 1), ("swin_tiny_patch4_window7_224", (64, 32), -1)],
)
def test_hooked_stage_output_is_plain_output_times_sigmoid_mask(
    name: str, img_size: tuple[int, int], channel_dim: int
) -> None:
    backbone, masks = masked_backbone(name, img_size)
    assert all(s.channel_dim == channel_dim for s in backbone.stages)
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for s in backbone.stages:
        stage = backbone.get_stage(s.name)
        handles.append(
            stage.register_forward_pre_hook(
                lambda _m, args, n=s.name: inputs.__setitem__(n, args[0])
            )
        )
    masks.attach(backbone)  # the mask hook runs before the capture hook registered next
    for s in backbone.stages:
        handles.append(
            backbone.get_stage(s.name).register_forward_hook(
                lambda _m, _i, out, n=s.name: outputs.__setitem__(n, out)
            )
        )
    images = torch.randn(len(LEVELS), 3, *img_size)
    with torch.no_grad(), masks.levels(LEVELS - 1):
        backbone(images)
    for handle in handles:
        handle.remove()

    for s, mask in zip(backbone.stages, masks.masks, strict=True):
        stage = backbone.get_stage(s.name)
        with torch.no_grad():
            plain = stage.forward(inputs[s.name])  # .forward skips the hooks
        gate = torch.sigmoid(mask.logits.detach())[LEVELS - 1]  # (B, C), row k-1 per sample
        expected = plain * expand_gate(gate, plain.ndim, channel_dim)
        assert outputs[s.name].shape == plain.shape
        torch.testing.assert_close(outputs[s.name], expected, rtol=1e-6, atol=1e-6)
        # The mask really acts (sigmoid of a Gaussian draw is not 1).
        assert not torch.allclose(outputs[s.name], plain)
        # Samples of the same level share one mask, different levels do not.
        assert torch.equal(gate[1], gate[4]) and not torch.equal(gate[0], gate[1])


def test_inactive_stage_is_identity_but_its_parameter_gets_a_zero_grad() -> None:
    backbone, masks = masked_backbone("resnet18", (64, 32))
    masks.set_active(1, False)
    assert masks.active_flags() == [True, False, True, True]
    captured: dict[str, torch.Tensor] = {}
    stage = backbone.get_stage("layer2")
    pre = stage.register_forward_hook(lambda _m, _i, out: captured.__setitem__("plain", out))
    masks.attach(backbone)
    post = stage.register_forward_hook(lambda _m, _i, out: captured.__setitem__("masked", out))
    with masks.levels(LEVELS - 1):
        out = backbone(torch.randn(len(LEVELS), 3, 64, 32))
    pre.remove()
    post.remove()
    assert torch.equal(captured["masked"], captured["plain"])

    out.square().sum().backward()
    inactive = masks.masks[1].logits.grad
    assert inactive is not None  # in the graph: DDP sees a gradient on every step
    assert torch.count_nonzero(inactive) == 0
    for stage_index in (0, 2, 3):
        grad = masks.masks[stage_index].logits.grad
        assert grad is not None and torch.count_nonzero(grad) > 0
        # Only the rows of levels present in the batch get gradient (all four here).
        assert all(torch.count_nonzero(grad[k]) > 0 for k in range(4))


def test_only_the_levels_in_the_batch_receive_gradient() -> None:
    backbone, masks = masked_backbone("resnet18", (64, 32))
    masks.attach(backbone)
    with masks.levels(torch.tensor([0, 2, 2])):
        backbone(torch.randn(3, 3, 64, 32)).sum().backward()
    grad = masks.masks[3].logits.grad
    assert torch.count_nonzero(grad[0]) > 0 and torch.count_nonzero(grad[2]) > 0
    assert torch.count_nonzero(grad[1]) == 0 and torch.count_nonzero(grad[3]) == 0


@pytest.mark.parametrize(
    ("name", "img_size"), [("resnet18", (64, 32)), ("swin_tiny_patch4_window7_224", (64, 32))]
)
def test_removing_hooks_restores_the_plain_timm_model(name: str, img_size) -> None:
    backbone, masks = masked_backbone(name, img_size)
    masks.attach(backbone)
    assert masks.attached
    images = torch.randn(3, 3, *img_size)
    with torch.no_grad(), masks.levels(torch.tensor([0, 1, 2])):
        masked = backbone.model.forward_features(images)
    masks.remove()
    assert not masks.attached
    with torch.no_grad():
        restored = backbone.model.forward_features(images)  # no levels needed any more

    fresh = timm.create_model(
        name,
        num_classes=0,
        global_pool="",
        **({"img_size": img_size} if name.startswith("swin") else {}),
    )
    if name == "resnet18":  # the re-ID last stride 1 (plain stride, no dilation)
        fresh.layer4[0].conv1.stride = (1, 1)
        fresh.layer4[0].downsample[0].stride = (1, 1)
    fresh.load_state_dict(backbone.model.state_dict())
    with torch.no_grad():
        plain = fresh.eval().forward_features(images)
    assert torch.equal(restored, plain)
    assert not torch.allclose(masked, plain)
    # attach is idempotent: attaching twice still applies each mask once.
    masks.attach(backbone)
    masks.attach(backbone)
    with torch.no_grad(), masks.levels(torch.tensor([0, 1, 2])):
        again = backbone.model.forward_features(images)
    assert torch.equal(again, masked)


def test_running_without_levels_is_a_clear_error() -> None:
    backbone, masks = masked_backbone("resnet18", (64, 32))
    masks.attach(backbone)
    with pytest.raises(RuntimeError, match=r"masks\.levels"):
        backbone(torch.randn(1, 3, 64, 32))
    # The level context is cleared after use, even after an exception inside it.
    with pytest.raises(ZeroDivisionError), masks.levels(torch.tensor([0])):
        _ = 1 / 0
    with pytest.raises(RuntimeError, match="no levels were given"):
        backbone(torch.randn(1, 3, 64, 32))


def test_mask_init_is_gaussian_and_reset_is_seeded() -> None:
    mask = StageMask(num_levels=4, channels=2048, channel_dim=1, init_mean=0.5, init_std=2.0)
    values = mask.logits.detach().clone()
    assert values.shape == (4, 2048)
    assert abs(values.mean().item() - 0.5) < 0.15
    assert abs(values.std().item() - 2.0) < 0.15
    assert not bool(mask.active)
    mask.reset_parameters(torch.Generator().manual_seed(7))
    first = mask.logits.detach().clone()
    mask.reset_parameters(torch.Generator().manual_seed(7))
    assert torch.equal(mask.logits.detach(), first)
    assert not torch.equal(first, values)
    # The active flag is a buffer: it travels in the state dict.
    mask.active.fill_(True)
    assert "active" in mask.state_dict() and bool(mask.state_dict()["active"])


def test_identity_init_starts_every_gate_near_one() -> None:
    mask = StageMask(num_levels=4, channels=8, channel_dim=1, init="identity")
    assert torch.all(mask.logits == IDENTITY_LOGIT)
    with torch.no_grad():
        mask.logits.zero_()
    mask.reset_parameters(torch.Generator().manual_seed(0))  # what a new phase does
    assert torch.all(torch.sigmoid(mask.logits) > 0.98)


@pytest.mark.parametrize(("init", "low", "high"), [("gaussian", 0.5, 2.0), ("identity", 0, 0.15)])
def test_activating_identity_masks_leaves_the_network_almost_unchanged(init, low, high) -> None:
    from rareid.models.module import RAReIDModule
    from tests.helpers import tiny_module_kwargs

    torch.manual_seed(0)
    module = RAReIDModule(**tiny_module_kwargs(mask_init=init, embedding_dim=24)).eval()
    images, levels = torch.randn(6, 3, 64, 32), [1, 2, 3, 4, 4, 2]
    before = module.embed(images, levels)
    for stage in range(len(module.masks)):
        module.masks.set_active(stage, True)
    change = (module.embed(images, levels) - before).norm() / before.norm()
    # Gaussian gates near 0.5 rescale every channel at random; identity gates (0.98) do not.
    assert low <= change.item() <= high


@pytest.mark.parametrize(
    ("name", "img_size", "first_block"),
    [("resnet18", (64, 32), "layer1.0"), ("swin_tiny_patch4_window7_224", (64, 32), None)],
)
def test_block_masks_multiply_every_block_output(name, img_size, first_block) -> None:
    torch.manual_seed(0)
    backbone = Backbone(name, img_size=img_size).eval()
    blocks = [backbone.block_names(stage) for stage in backbone.stages]
    assert all(len(names) >= 2 for names in blocks)
    if first_block is not None:
        assert blocks[0][0] == first_block
    masks = ResolutionMasks(backbone.stages, num_levels=4, blocks=blocks)
    for stage in range(len(masks)):
        masks.set_active(stage, True)
    masks.attach(backbone)
    names = [n for stage_blocks in blocks for n in stage_blocks]
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for block_name in names:
        module = backbone.get_stage(block_name)
        handles.append(
            module.register_forward_pre_hook(
                lambda _m, args, n=block_name: inputs.__setitem__(n, args[0])
            )
        )
        handles.append(
            module.register_forward_hook(
                lambda _m, _i, out, n=block_name: outputs.__setitem__(n, out)
            )
        )
    with torch.no_grad(), masks.levels(LEVELS - 1):
        backbone(torch.randn(len(LEVELS), 3, *img_size))
    for handle in handles:
        handle.remove()
    for stage, (info, mask) in enumerate(zip(backbone.stages, masks.masks, strict=True)):
        assert mask.logits.shape == (len(blocks[stage]), 4, info.channels)
        for block, block_name in enumerate(blocks[stage]):
            with torch.no_grad():
                plain = backbone.get_stage(block_name).forward(inputs[block_name])
            gate = torch.sigmoid(mask.logits.detach()[block])[LEVELS - 1]
            expected = plain * expand_gate(gate, plain.ndim, info.channel_dim)
            torch.testing.assert_close(outputs[block_name], expected, rtol=1e-6, atol=1e-6)
    masks.remove()


def test_block_granularity_needs_a_sequence_of_blocks() -> None:
    from rareid.models.backbone import BackboneError, StageInfo

    backbone = Backbone("resnet18", img_size=(64, 32))
    with pytest.raises(BackboneError, match="mask_granularity: stage"):
        backbone.block_names(StageInfo("conv1", 64, 1, 2))


def test_masks_deep_copy_and_pickle_with_their_module() -> None:
    """A deep copy (EMA/SWA) must apply its own masks; ddp_spawn pickles the module."""
    backbone, masks = masked_backbone("resnet18", (64, 32))
    masks.attach(backbone)
    model = torch.nn.ModuleDict({"backbone": backbone, "masks": masks})
    images = torch.randn(2, 3, 64, 32)
    levels = torch.tensor([0, 3])
    with torch.no_grad(), masks.levels(levels):
        before = backbone(images)

    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone["masks"].masks[3].logits.add_(5.0)
        with clone["masks"].levels(levels):
            cloned = clone["backbone"](images)
        with masks.levels(levels):
            original = backbone(images)
    assert torch.equal(original, before)  # the copy's masks did not leak into the original
    assert not torch.allclose(cloned, before)

    restored = pickle.loads(pickle.dumps(model))
    with torch.no_grad(), restored["masks"].levels(levels):
        assert torch.equal(restored["backbone"](images), before)


def test_block_masks_equal_stage_masks_when_every_stage_is_one_block() -> None:
    """resnet10t holds one residual block per stage: the two readings are the same model."""
    from rareid.models.module import RAReIDModule
    from tests.helpers import tiny_module_kwargs

    kwargs = tiny_module_kwargs(backbone="resnet10t", mask_init="gaussian")
    modules = []
    for granularity in ("stage", "block"):
        torch.manual_seed(0)
        module = RAReIDModule(**kwargs, mask_granularity=granularity).eval()
        for stage in range(len(module.masks)):
            module.masks.set_active(stage, True)
        modules.append(module)
    stage_masks, block_masks = modules
    assert block_masks.masks.block_names == [["layer1.0"], ["layer2.0"], ["layer3.0"], ["layer4.0"]]
    images, levels = torch.randn(4, 3, 64, 32), [1, 2, 3, 4]
    with torch.no_grad():
        torch.testing.assert_close(
            block_masks.embed(images, levels), stage_masks.embed(images, levels)
        )
