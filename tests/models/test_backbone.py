"""Backbone: stages from timm's feature_info, channel layout, last stride, local weights."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from rareid.models import backbone as backbone_module
from rareid.models.backbone import Backbone, BackboneError, StageInfo, _channel_dim

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def stage_outputs(backbone: Backbone, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run the backbone once and capture every stage's output."""
    captured: dict[str, torch.Tensor] = {}
    handles = [
        backbone.get_stage(s.name).register_forward_hook(
            lambda _m, _i, out, name=s.name: captured.__setitem__(name, out)
        )
        for s in backbone.stages
    ]
    try:
        with torch.no_grad():
            backbone.eval()
            backbone(images)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def test_resnet18_stages_come_from_feature_info() -> None:
    backbone = Backbone("resnet18", img_size=(64, 32))
    info = [e for e in backbone.model.feature_info if e["module"] != "act1"]
    assert [s.name for s in backbone.stages] == [e["module"] for e in info]
    assert [s.name for s in backbone.stages] == ["layer1", "layer2", "layer3", "layer4"]
    assert [s.channels for s in backbone.stages] == [64, 128, 256, 512]
    assert all(isinstance(s, StageInfo) and s.channel_dim == 1 for s in backbone.stages)
    assert backbone.output_channel_dim == 1
    assert backbone.num_features == 512
    out = backbone(torch.randn(2, 3, 64, 32))
    assert out.shape == (2, 512)


def test_resnet50_last_stride_one_gives_16x8_map() -> None:
    backbone = Backbone("resnet50", img_size=(256, 128))
    assert [s.channels for s in backbone.stages] == [256, 512, 1024, 2048]
    assert all(s.channel_dim == 1 for s in backbone.stages)
    with torch.no_grad():
        final = backbone.eval().model.forward_features(torch.zeros(1, 3, 256, 128))
    assert final.shape == (1, 2048, 16, 8)
    # Plain stride 1, not dilation.
    for module in backbone.get_stage("layer4").modules():
        if isinstance(module, nn.Conv2d):
            assert module.stride == (1, 1)
            assert module.dilation == (1, 1)
    # Earlier stages keep their strides.
    assert backbone.model.layer3[0].conv2.stride == (2, 2)


def test_resnet_default_last_stride_differs_from_native_timm() -> None:
    # Native timm keeps stride 2 in layer4 (2x1 map at 64x32); rareid's default is stride 1.
    backbone = Backbone("resnet18", img_size=(64, 32))
    native = timm.create_model("resnet18", num_classes=0, global_pool="")
    with torch.no_grad():
        ours = backbone.eval().model.forward_features(torch.zeros(1, 3, 64, 32))
        theirs = native.eval().forward_features(torch.zeros(1, 3, 64, 32))
    assert ours.shape == (1, 512, 4, 2)
    assert theirs.shape == (1, 512, 2, 1)


def test_bad_last_stride_is_rejected() -> None:
    with pytest.raises(BackboneError, match="last_stride"):
        Backbone("resnet18", img_size=(64, 32), last_stride=2)


def test_convnext_tiny_stages_nchw() -> None:
    backbone = Backbone("convnext_tiny", img_size=(64, 32))
    assert [s.name for s in backbone.stages] == [e["module"] for e in backbone.model.feature_info]
    assert [s.channels for s in backbone.stages] == [96, 192, 384, 768]
    assert all(s.channel_dim == 1 for s in backbone.stages)
    assert backbone.output_channel_dim == 1
    outputs = stage_outputs(backbone, torch.randn(1, 3, 64, 32))
    assert outputs["stages.0"].shape == (1, 96, 16, 8)


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("swin_base_patch4_window7_224", [128, 256, 512, 1024]),
        ("swin_large_patch4_window7_224", [192, 384, 768, 1536]),
    ],
)
def test_swin_stages_are_nhwc_at_256x128(name: str, channels: list[int]) -> None:
    backbone = Backbone(name, img_size=(256, 128))
    assert [s.name for s in backbone.stages] == [e["module"] for e in backbone.model.feature_info]
    assert [s.channels for s in backbone.stages] == channels
    assert all(s.channel_dim == -1 for s in backbone.stages)
    assert backbone.output_channel_dim == -1
    assert backbone.num_features == channels[-1]
    outputs = stage_outputs(backbone, torch.randn(1, 3, 256, 128))
    assert outputs["layers.0"].shape == (1, 64, 32, channels[0])
    assert outputs["layers.3"].shape == (1, 8, 4, channels[-1])


def test_swin_tiny_small_input_nhwc_and_pool() -> None:
    backbone = Backbone("swin_tiny_patch4_window7_224", img_size=(64, 32))
    assert all(s.channel_dim == -1 for s in backbone.stages)
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        backbone.eval()
        features = backbone.model.forward_features(images)
        pooled = backbone(images)
    assert features.shape[-1] == 768
    torch.testing.assert_close(pooled, features.mean(dim=(1, 2)), rtol=0, atol=0)


def test_last_stride_on_swin_is_a_clear_error() -> None:
    with pytest.raises(BackboneError, match="last_stride"):
        Backbone("swin_tiny_patch4_window7_224", img_size=(64, 32), last_stride=1)


def test_channel_axis_detection() -> None:
    assert _channel_dim(torch.Size([2, 64, 16, 8]), 64, None) == 1
    assert _channel_dim(torch.Size([2, 16, 8, 64]), 64, None) == -1
    assert _channel_dim(torch.Size([2, 49, 96]), 96, None) == -1  # tokens (B, N, C)
    # Ambiguous (C equals W): the model's declared output format decides.
    assert _channel_dim(torch.Size([2, 8, 16, 8]), 8, "NHWC") == -1
    assert _channel_dim(torch.Size([2, 8, 16, 8]), 8, "NCHW") == 1
    with pytest.raises(BackboneError, match="no axis of size 32"):
        _channel_dim(torch.Size([2, 64, 16, 8]), 32, None)


def test_pool_follows_the_channel_axis() -> None:
    backbone = Backbone("resnet18", img_size=(64, 32))
    nchw = torch.randn(2, 5, 4, 3)
    assert torch.equal(backbone.pool(nchw), nchw.mean(dim=(2, 3)))
    backbone.output_channel_dim = -1
    nhwc = torch.randn(2, 4, 3, 5)
    assert torch.equal(backbone.pool(nhwc), nhwc.mean(dim=(1, 2)))


def test_unknown_backbone_name_is_named_in_the_error() -> None:
    with pytest.raises(BackboneError, match="not_a_real_net_xyz"):
        Backbone("not_a_real_net_xyz")
    assert issubclass(BackboneError, ValueError)


def test_unknown_stage_names_are_rejected() -> None:
    with pytest.raises(BackboneError, match="layer9"):
        Backbone("resnet18", img_size=(64, 32), stages=["layer3", "layer9"])


def test_explicit_stage_subset() -> None:
    backbone = Backbone("resnet18", img_size=(64, 32), stages=["layer3", "layer4"])
    assert [s.name for s in backbone.stages] == ["layer3", "layer4"]
    assert [s.channels for s in backbone.stages] == [256, 512]


class _NoFeatureInfo(nn.Module):
    """A model timm could return that has no ``feature_info`` at all."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _ParameterFreeStages(_NoFeatureInfo):
    """``feature_info`` lists only a parameter-free tap: no usable stage."""

    def __init__(self) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.feature_info = [{"module": "act", "num_chs": 8, "reduction": 1}]


@pytest.mark.parametrize(
    ("model_class", "message"),
    [(_NoFeatureInfo, "has no feature_info"), (_ParameterFreeStages, "no usable stages")],
)
def test_model_without_usable_stages_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, model_class: type[nn.Module], message: str
) -> None:
    monkeypatch.setattr(backbone_module.timm, "create_model", lambda *a, **k: model_class())
    with pytest.raises(BackboneError, match=message) as error:
        Backbone("resnet18", img_size=(16, 16))
    assert "resnet18" in str(error.value)


def test_local_weights_file_is_loaded(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub fetch would fail loudly, never download
    torch.manual_seed(123)
    reference = timm.create_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18_weights.pth"
    torch.save(reference.state_dict(), path)

    backbone = Backbone("resnet18", img_size=(64, 32), weights_path=str(path))
    loaded = backbone.model.state_dict()
    expected = reference.state_dict()
    assert set(loaded) == set(expected) - {"fc.weight", "fc.bias"}
    for key, value in loaded.items():
        assert torch.equal(value, expected[key]), key
    # Not a coincidence of initialisation: a fresh model differs.
    fresh = Backbone("resnet18", img_size=(64, 32)).model.state_dict()
    assert not torch.equal(fresh["conv1.weight"], expected["conv1.weight"])


def test_missing_weights_file_is_named(tmp_path) -> None:
    path = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(FileNotFoundError, match=r"weights\.pth"):
        Backbone("resnet18", img_size=(64, 32), weights_path=str(path))
