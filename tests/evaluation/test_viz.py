"""Rank-list and t-SNE pictures, and logging them to loggers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from rareid.evaluation.viz import (
    MATCH_COLOR,
    NON_MATCH_COLOR,
    RankListLayout,
    draw_rank_list,
    log_images_to_loggers,
    plot_tsne,
)


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_rank_list_layout_borders_and_nearest_query(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    # A 4x2 LR query of two pure colours: nearest upscaling keeps exactly those colours.
    lr = np.zeros((4, 2, 3), np.uint8)
    lr[:2] = (10, 200, 30)
    lr[2:] = (250, 250, 0)
    queries = [
        {"image": lr, "level": 1, "rate": 4.0, "pid": 3},
        {
            "image": rng.integers(0, 255, (64, 32, 3), dtype=np.uint8),
            "level": 3,
            "rate": 2,
            "pid": 5,
        },
    ]
    matches = [[True, False, False], [False, True, True]]
    galleries = [
        [
            {"image": rng.integers(0, 255, (128, 64, 3), dtype=np.uint8), "pid": 1, "match": m}
            for m in row
        ]
        for row in matches
    ]
    layout = RankListLayout()
    path = draw_rank_list(queries, galleries, tmp_path / "pics" / "rank.png")
    assert path == tmp_path / "pics" / "rank.png" and path.exists()
    image = read_rgb(path)
    assert image.shape[:2] == layout.size(rows=2, topk=3)
    b = layout.border
    for row, flags in enumerate(matches):
        for col, match in enumerate(flags, start=1):
            y0, x0, y1, x1 = layout.cell(row, col)
            color = MATCH_COLOR if match else NON_MATCH_COLOR
            for y, x in (
                (y0, x0),
                (y0 + b - 1, (x0 + x1) // 2),
                (y1 - 1, x1 - 1),
                ((y0 + y1) // 2, x0 + 1),
            ):
                np.testing.assert_array_equal(image[y, x], color)
    y0, x0, y1, x1 = layout.cell(0, 0)
    inner = image[y0 + b : y1 - b, x0 + b : x1 - b].reshape(-1, 3)
    assert {tuple(c) for c in np.unique(inner, axis=0)} == {(10, 200, 30), (250, 250, 0)}
    # The label strip above the query holds dark text pixels.
    assert image[y0 - layout.label_height : y0, x0 : x1 + 40].min() < 100


def test_rank_list_rejects_bad_input(tmp_path: Path) -> None:
    good = {"image": np.zeros((8, 4, 3), np.uint8), "level": 1, "rate": 2, "pid": 1}
    with pytest.raises(ValueError, match="gallery lists"):
        draw_rank_list([good], [], tmp_path / "x.png")
    with pytest.raises(ValueError, match="uint8"):
        draw_rank_list([{**good, "image": np.zeros((8, 4), np.float32)}], [[]], tmp_path / "x.png")


def test_tsne_two_panels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pids = np.repeat(np.arange(0, 20), 6)  # pid 0 = distractors, 19 identities > max_ids
    levels = np.tile([1, 2, 3, 4, 4, 4], 20)
    emb = rng.normal(size=(len(pids), 16)) + pids[:, None]
    path = plot_tsne(
        emb,
        pids,
        levels,
        tmp_path / "tsne.png",
        seed=0,
        max_ids=15,
        rates=(1, 2, 3, 4),
        max_iter=250,
    )
    image = read_rgb(path)
    assert image.shape == (550, 1200, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # coloured points drawn
    with pytest.raises(ValueError, match="same N"):
        plot_tsne(emb, pids[:-1], levels, tmp_path / "bad.png")


class RecordingWandb(WandbLogger):
    def __init__(self) -> None:  # no wandb run: only records calls
        self.calls: list[tuple[str, list[str]]] = []

    def log_image(self, key: str, images: list, **kwargs) -> None:
        self.calls.append((key, images))


def test_log_images_to_loggers(tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), np.zeros((4, 4, 3), np.uint8))
    wandb = RecordingWandb()
    log_images_to_loggers([CSVLogger(tmp_path), wandb], {"rank_list": png})
    assert wandb.calls == [("rank_list", [str(png)])]
    log_images_to_loggers(None, {"rank_list": png})
