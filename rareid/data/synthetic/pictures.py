"""A contact sheet of synthetic people at full and at low resolution, to check the data by eye."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rareid.data.synthetic.common import _H, _W
from rareid.data.synthetic.world import SyntheticWorld


def make_contact_sheet(
    path: str | Path,
    seed: int = 0,
    groups: int = 2,
    members: int = 4,
    cameras: int = 4,
    lr_factor: int = 4,
    zoom: int = 2,
    identities: int = 100,
) -> Path:
    """PNG grid of test identities (rows: ``groups`` x ``members``) in each camera, at full
    resolution (left block) and downsampled by ``lr_factor`` then upsampled back (right block).

    Why: to check by eye that same-group people look alike at low resolution while fine details
    tell them apart at full resolution.
    """
    n_train = identities // 2
    world = SyntheticWorld(identities, seed, cameras, n_train)
    test_groups = [g for g in world.groups if g[0] > n_train][:groups]
    rows = []
    for g in test_groups:
        for pid in g[:members]:
            hr = [world.render(pid, c, 1000 + c) for c in range(cameras)]
            lr = [
                cv2.resize(
                    cv2.resize(
                        im, (_W // lr_factor, _H // lr_factor), interpolation=cv2.INTER_AREA
                    ),
                    (_W, _H),
                    interpolation=cv2.INTER_LINEAR,
                )
                for im in hr
            ]
            sep = np.full((_H, 8, 3), 255, np.uint8)
            rows.append(np.concatenate([*hr, sep, *lr], axis=1))
        rows.append(np.full((6, rows[-1].shape[1], 3), 255, np.uint8))
    sheet = np.concatenate(rows, axis=0)
    sheet = cv2.resize(
        sheet, (sheet.shape[1] * zoom, sheet.shape[0] * zoom), interpolation=cv2.INTER_NEAREST
    )
    path = Path(path)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path
