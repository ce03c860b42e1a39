"""Resolution-adaptive channel masks (paper Eq. 3), attached to backbone stages by hooks.

Every stage ``l`` owns ``M^l`` of shape ``(m, C_l)``; a level-``k`` sample's stage
output is multiplied channel-wise by ``sigmoid(M^l[k])``. One batch may mix levels.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from rareid.models.backbone import Backbone, StageInfo

MaskInit = Literal["gaussian", "identity"]
MaskGranularity = Literal["stage", "block"]

#: Logit of an ``identity`` mask: sigmoid(4) = 0.982, the stage output passes almost unchanged.
IDENTITY_LOGIT = 4.0


class StageMask(nn.Module):
    """The masks of one stage, one row per resolution level.

    With ``num_blocks`` the stage holds one mask per residual block inside it, logits
    ``(num_blocks, m, C)``; the stage is still activated, re-initialised and frozen as one.

    ``active`` is a buffer (saved in checkpoints). An inactive stage is an identity,
    yet its parameter stays in the autograd graph (``x * (1 + 0 * gate)``), so that
    DDP with ``find_unused_parameters=False`` sees a gradient for it on every step.
    """

    def __init__(
        self,
        num_levels: int,
        channels: int,
        channel_dim: int,
        init_mean: float = 0.0,
        init_std: float = 1.0,
        init: MaskInit = "gaussian",
        num_blocks: int | None = None,
    ) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.init_mean = init_mean
        self.init_std = init_std
        self.init = init
        shape = (num_levels, channels) if num_blocks is None else (num_blocks, num_levels, channels)
        self.logits = nn.Parameter(torch.empty(shape))
        self.register_buffer("active", torch.tensor(False))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Fresh initialisation (also when the stage becomes active).

        ``gaussian`` (the paper's): logits ~ N(init_mean, init_std), gates near 0.5 that
        rescale a network trained without them. ``identity``: every logit at
        ``IDENTITY_LOGIT``, so activating the stage leaves its output almost unchanged and
        the masks start from the network as it is.
        """
        with torch.no_grad():
            if self.init == "identity":
                self.logits.fill_(IDENTITY_LOGIT)
                return
            values = torch.randn(self.logits.shape, generator=generator)
            self.logits.copy_(values * self.init_std + self.init_mean)

    def gates(self, level_index: torch.Tensor, block: int | None = None) -> torch.Tensor:
        """Per-sample channel gates (B, C); ones (still in the graph) while inactive."""
        logits = self.logits if block is None else self.logits[block]
        gate = torch.sigmoid(logits)[level_index]
        return torch.where(self.active, gate, gate * 0 + 1)

    def forward(
        self, features: torch.Tensor, level_index: torch.Tensor, block: int | None = None
    ) -> torch.Tensor:
        # Gates in the activations' dtype: under bf16 autocast a float32 gate would promote
        # every masked activation to float32 (the logits and their gradients stay float32).
        gate = self.gates(level_index, block).to(features.dtype)
        shape = [features.shape[0]] + [1] * (features.ndim - 1)
        shape[self.channel_dim] = gate.shape[1]
        if not torch.is_grad_enabled():
            # Inference: scale the stage output in place; allocating a new activation-sized
            # tensor costs more than the product itself. Autograd needs the copy otherwise.
            return features.mul_(gate.view(shape))
        return features * gate.view(shape)


class ResolutionMasks(nn.Module):
    """All stages' masks, and the forward hooks that apply them inside a backbone.

    Call the backbone inside ``with masks.levels(level_index): ...`` so the hooks
    know each sample's level (0-based index, ``level - 1``).

    ``blocks`` (one list of block module names per stage) hooks a mask on every residual
    block instead of on every stage output (``mask_granularity: block``).
    """

    def __init__(
        self,
        stages: Sequence[StageInfo],
        num_levels: int,
        init_mean: float = 0.0,
        init_std: float = 1.0,
        init: MaskInit = "gaussian",
        blocks: Sequence[Sequence[str]] | None = None,
    ) -> None:
        super().__init__()
        self.stage_names = [s.name for s in stages]
        if blocks is not None and len(blocks) != len(stages):
            raise ValueError(f"blocks: expected one list per stage ({len(stages)})")
        self.block_names = None if blocks is None else [list(names) for names in blocks]
        self.masks = nn.ModuleList(
            StageMask(
                num_levels,
                s.channels,
                s.channel_dim,
                init_mean,
                init_std,
                init,
                num_blocks=None if blocks is None else len(blocks[index]),
            )
            for index, s in enumerate(stages)
        )
        self._handles: list[RemovableHandle] = []
        self._level_index: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.masks)

    def attach(self, backbone: Backbone) -> None:
        """Register one forward hook per stage (idempotent)."""
        self.remove()
        for index, (name, mask) in enumerate(zip(self.stage_names, self.masks, strict=True)):
            if self.block_names is None:
                hook = self._hook(mask, None)
                self._handles.append(backbone.get_stage(name).register_forward_hook(hook))
                continue
            for block, block_name in enumerate(self.block_names[index]):
                module = backbone.get_stage(block_name)
                self._handles.append(module.register_forward_hook(self._hook(mask, block)))

    def remove(self) -> None:
        """Remove the hooks: the backbone is the plain timm model again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def _hook(self, mask: StageMask, block: int | None):
        # A partial of a bound method, not a closure: the hook then pickles (ddp_spawn) and
        # deep-copies with the module (EMA/SWA copies apply their own masks, not these).
        return functools.partial(self._apply_mask, mask, block)

    def _apply_mask(
        self,
        mask: StageMask,
        block: int | None,
        _module: nn.Module,
        _inputs: tuple,
        output: torch.Tensor,
    ) -> torch.Tensor:
        if self._level_index is None:
            raise RuntimeError(
                "resolution masks are attached but no levels were given: run the backbone "
                "inside `with masks.levels(level_index):` (RAReIDModule does this for you)"
            )
        return mask(output, self._level_index, block)

    @contextmanager
    def levels(self, level_index: torch.Tensor) -> Iterator[None]:
        """Make each sample's 0-based level index visible to the hooks for one forward."""
        self._level_index = level_index
        try:
            yield
        finally:
            self._level_index = None

    def set_active(self, stage: int, active: bool) -> None:
        self.masks[stage].active.fill_(active)

    def active_flags(self) -> list[bool]:
        return [bool(m.active) for m in self.masks]


def attach_masks(
    backbone: Backbone,
    num_levels: int,
    granularity: MaskGranularity,
    init_mean: float,
    init_std: float,
    init: MaskInit,
) -> ResolutionMasks:
    """The resolution masks of every backbone stage (or block), attached to ``backbone``."""
    blocks = None
    if granularity == "block":
        blocks = [backbone.block_names(stage) for stage in backbone.stages]
    masks = ResolutionMasks(backbone.stages, num_levels, init_mean, init_std, init, blocks)
    masks.attach(backbone)
    return masks
