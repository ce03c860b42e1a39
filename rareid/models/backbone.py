"""timm backbones as a list of stages whose outputs the resolution masks act on.

Stages are read from timm's ``feature_info`` (never hard-coded layer names), and
the channel axis of every stage output is measured with one dummy forward pass,
because it differs by family (NCHW for ResNet/ConvNeXt, NHWC for Swin).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

log = logging.getLogger(__name__)

#: Set while a model is rebuilt from a checkpoint: its state dict overwrites every weight, so
#: the initial weights (``pretrained``, ``weights_path``) are neither fetched nor read.
_RESTORING = contextvars.ContextVar("rareid_restoring_from_checkpoint", default=False)


@contextlib.contextmanager
def restoring_from_checkpoint() -> Iterator[None]:
    """Backbones built inside this block start from random weights: a checkpoint is about to
    overwrite them, so a warm-start file of the training run need not exist here."""
    token = _RESTORING.set(True)
    try:
        yield
    finally:
        _RESTORING.reset(token)


@dataclass(frozen=True)
class StageInfo:
    """One backbone stage: where to hook it and how its output is laid out."""

    name: str
    channels: int
    channel_dim: int  # axis of the channels in the stage output: 1 (NCHW) or -1 (NHWC / tokens)
    reduction: int


class BackboneError(ValueError):
    """A timm model cannot serve as a rareid backbone."""


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _channel_dim(shape: torch.Size, channels: int, fallback: str | None) -> int:
    """Which axis of a stage output holds ``channels``; ``fallback`` is timm's ``output_fmt``."""
    first = len(shape) > 1 and shape[1] == channels
    last = shape[-1] == channels
    if first and not last:
        return 1
    if last and not first:
        return -1
    if first and last:  # ambiguous (e.g. C == W): trust the model's declared format
        return -1 if (fallback or "NCHW").upper().endswith("C") else 1
    raise BackboneError(
        f"stage output of shape {tuple(shape)} has no axis of size {channels} (feature_info num_chs)"
    )


def _set_last_stride_one(stage: nn.Module, stage_name: str) -> None:
    """Make the last stage keep its input resolution: stride-2 convolutions get stride 1
    (no dilation) and stride-2 poolings (ResNet-D shortcuts) become identities."""
    changed = 0
    for parent in list(stage.modules()):
        for child_name, child in list(parent.named_children()):
            stride = getattr(child, "stride", 1)
            stride = stride if isinstance(stride, tuple) else (stride, stride)
            if max(stride) < 2:
                continue
            if isinstance(child, nn.Conv2d):
                child.stride = (1, 1)
                changed += 1
            elif isinstance(child, nn.AvgPool2d | nn.MaxPool2d):
                setattr(parent, child_name, nn.Identity())
                changed += 1
    if changed == 0:
        raise BackboneError(
            f"last_stride=1 asked for, but the last stage {stage_name!r} has no strided "
            "convolution or pooling to change (it is only supported for convolutional stages "
            "such as ResNet's); leave last_stride unset for this backbone"
        )


class Backbone(nn.Module):
    """A timm model without classifier, plus the stages the masks hook into.

    ``forward`` returns the globally average-pooled final feature (B, num_features).
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        weights_path: str | None = None,
        img_size: Sequence[int] = (256, 128),
        last_stride: int | None = None,
        stages: Sequence[str] | None = None,
        **timm_kwargs,
    ) -> None:
        super().__init__()
        self.name = name
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.model = self._create(name, pretrained, weights_path, timm_kwargs)
        self.stages = self._find_stages(stages)
        if last_stride is None and isinstance(self.model, timm.models.resnet.ResNet):
            last_stride = 1  # re-ID convention (paper §IV): 16x8 map at 256x128
        if last_stride is not None:
            if last_stride != 1:
                raise BackboneError(f"last_stride must be 1 or unset, got {last_stride}")
            _set_last_stride_one(self.get_stage(self.stages[-1].name), self.stages[-1].name)
        self.stages, self.output_channel_dim = self._probe_layout()
        self.num_features = int(self.model.num_features)

    def _create(
        self, name: str, pretrained: bool, weights_path: str | None, timm_kwargs: dict
    ) -> nn.Module:
        kwargs = {**timm_kwargs, "num_classes": 0, "global_pool": ""}
        if _RESTORING.get():
            pretrained, weights_path = False, None
        if weights_path is not None:
            path = Path(weights_path).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"weights_path {str(path)!r} does not exist: pass a local timm/PyTorch "
                    "checkpoint file (e.g. pytorch_model.bin or model.safetensors)"
                )
            pretrained = True
            kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        if not timm.is_model(name):
            close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
            raise BackboneError(
                f"unknown backbone {name!r}: not a timm model name"
                + (f" (similar: {', '.join(close)})" if close else "")
                + "; see timm.list_models()"
            )
        try:
            return timm.create_model(name, pretrained=pretrained, img_size=self.img_size, **kwargs)
        except TypeError as error:
            if "img_size" not in str(error):
                raise
            # Convolutional models take any input size and have no img_size argument.
            return timm.create_model(name, pretrained=pretrained, **kwargs)

    def _find_stages(self, names: Sequence[str] | None) -> list[StageInfo]:
        info = getattr(self.model, "feature_info", None)
        if not info:
            raise BackboneError(
                f"backbone {self.name!r} has no feature_info, so rareid cannot find its stages; "
                "choose a timm model with hierarchical stages (resnet*, convnext*, swin*)"
            )
        entries = list(info)
        if names is None:
            # Parameter-free taps (ResNet's stem activation 'act1') are not stages.
            entries = [e for e in entries if _has_parameters(self.get_stage(e["module"]))]
        else:
            known = {e["module"]: e for e in entries}
            missing = [n for n in names if n not in known]
            if missing:
                raise BackboneError(
                    f"stages {missing} are not in {self.name}'s feature_info "
                    f"(available: {list(known)})"
                )
            entries = [known[n] for n in names]
        if not entries:
            raise BackboneError(f"backbone {self.name!r} has no usable stages in feature_info")
        return [
            StageInfo(e["module"], int(e["num_chs"]), 1, int(e.get("reduction", 0)))
            for e in entries
        ]

    def get_stage(self, name: str) -> nn.Module:
        return self.model.get_submodule(name)

    def block_names(self, stage: StageInfo) -> list[str]:
        """Module names of the residual blocks inside ``stage``, in order.

        A stage is an ``nn.Sequential`` of blocks (ResNet, MobileNet) or holds one as
        ``.blocks`` (Swin, ConvNeXt). Every block output must have the stage's channels on
        the stage's channel axis, so one mask shape serves all of them (checked here).
        """
        module = self.get_stage(stage.name)
        container, prefix = module, stage.name
        if not isinstance(container, nn.Sequential):
            container, prefix = getattr(module, "blocks", None), f"{stage.name}.blocks"
        if not isinstance(container, nn.Sequential):
            raise BackboneError(
                f"stage {stage.name!r} of {self.name} is neither a sequence of blocks nor has "
                "a .blocks sequence: use mask_granularity: stage for this backbone"
            )
        names = [
            f"{prefix}.{child_name}"
            for child_name, child in container.named_children()
            if _has_parameters(child)
        ]
        shapes = self._probe_shapes(names)
        for name in names:
            shape = shapes[name]
            if len(shape) < 2 or shape[stage.channel_dim] != stage.channels:
                raise BackboneError(
                    f"block {name!r} of {self.name} outputs shape {tuple(shape)}, not "
                    f"{stage.channels} channels on axis {stage.channel_dim} like its stage: "
                    "use mask_granularity: stage for this backbone"
                )
        return names

    @torch.no_grad()
    def _probe_shapes(self, names: Sequence[str]) -> dict[str, torch.Size]:
        """Output shape of each named submodule on one dummy input (BatchNorm untouched)."""
        shapes: dict[str, torch.Size] = {}
        handles = [
            self.model.get_submodule(name).register_forward_hook(
                lambda _m, _i, out, name=name: shapes.__setitem__(name, out.shape)
            )
            for name in names
        ]
        was_training = self.model.training
        self.model.eval()
        try:
            self.model.forward_features(torch.zeros(1, 3, *self.img_size))
        finally:
            for handle in handles:
                handle.remove()
            self.model.train(was_training)
        return shapes

    @torch.no_grad()
    def _probe_layout(self) -> tuple[list[StageInfo], int]:
        """One dummy forward to read each stage output's channel axis."""
        shapes: dict[str, torch.Size] = {}
        handles = [
            self.get_stage(s.name).register_forward_hook(
                lambda _m, _i, out, name=s.name: shapes.__setitem__(name, out.shape)
            )
            for s in self.stages
        ]
        was_training = self.model.training
        self.model.eval()  # keep BatchNorm statistics untouched
        try:
            final = self.model.forward_features(torch.zeros(1, 3, *self.img_size))
        except Exception as error:
            raise BackboneError(
                f"backbone {self.name!r} failed on a {self.img_size} input: {error}"
            ) from error
        finally:
            for handle in handles:
                handle.remove()
            self.model.train(was_training)
        fmt = getattr(self.model, "output_fmt", None)
        fmt = getattr(fmt, "value", fmt)
        stages = [
            StageInfo(
                s.name, s.channels, _channel_dim(shapes[s.name], s.channels, fmt), s.reduction
            )
            for s in self.stages
        ]
        return stages, _channel_dim(final.shape, int(self.model.num_features), fmt)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Global average pool over every axis but batch and channels."""
        channel_dim = self.output_channel_dim % features.ndim
        dims = [d for d in range(1, features.ndim) if d != channel_dim]
        return features.mean(dim=dims)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.model.forward_features(images))
