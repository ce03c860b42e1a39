"""The data side of ``rareid test`` with ``data.protocol: mlr-video``: which video datasets it
takes and the one test batch that stands for the whole protocol.

The protocol itself (degrading query tracklets by a schedule, pooling, ranking) lives in
:mod:`rareid.tracks.protocol`; a callback of the Lightning CLI runs it whole at the end of the
test epoch (:mod:`rareid.tracks.lightning_protocol`), so the test loop is given one batch that
holds no image (:data:`RUN_BY_CALLBACK`), which the model embeds nothing for.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from rareid.data.readers.video import VIDEO_DATASETS
from rareid.evaluation.mlr import RUN_BY_CALLBACK

#: The evaluation protocols of ``rareid test``: image MLR (the paper's) and video MLR.
EvalProtocol = Literal["mlr", "mlr-video"]
#: The built-in synthetic HR tracklets (the test identities of ``rareid synth``; no files).
SYNTHETIC_VIDEO = "synthetic-video"
#: Options of the built-in synthetic tracklets and their defaults.
SYNTHETIC_VIDEO_OPTIONS = {"identities": 100, "seed": 0, "length": 12}
#: Options of a video dataset besides its reader's: frames read per tracklet.
VIDEO_OPTIONS = {"max_frames": 16}


def video_dataset_key(name: str) -> str:
    """The canonical name of a video dataset of the ``mlr-video`` protocol, or a ValueError
    listing them."""
    key = str(name).lower().replace("_", "-")
    if key == SYNTHETIC_VIDEO:
        return key
    compact = key.replace("-", "")
    if compact not in VIDEO_DATASETS:
        names = [SYNTHETIC_VIDEO, *VIDEO_DATASETS]
        raise ValueError(
            f"dataset: protocol mlr-video reads a video dataset, one of {names}; got {name!r}"
        )
    return compact


def check_video_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """``dataset_options`` of a video dataset, checked by name (ValueError naming the option)."""
    import inspect

    key = video_dataset_key(name)
    if key == SYNTHETIC_VIDEO:
        allowed = set(SYNTHETIC_VIDEO_OPTIONS)
    else:
        allowed = set(VIDEO_OPTIONS) | set(
            list(inspect.signature(VIDEO_DATASETS[key]).parameters)[1:]
        )
    unknown = sorted(set(options or {}) - allowed)
    if unknown:
        raise ValueError(
            f"dataset_options: {unknown} are not options of {key} under protocol mlr-video; "
            f"it takes {sorted(allowed)}"
        )
    return dict(options or {})


def protocol_loader() -> DataLoader:
    """The test loader of a protocol run whole by a callback: one batch, no image."""
    return DataLoader([0], batch_size=1, collate_fn=_protocol_batch)


def _protocol_batch(rows: list[int]) -> dict[str, torch.Tensor]:
    return {RUN_BY_CALLBACK: torch.tensor(rows)}
