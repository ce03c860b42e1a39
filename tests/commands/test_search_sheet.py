"""Readable output: paged rank sheets with every file name, a short console table, flagged
crops, a level from height and width, and NaN embeddings refused."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rareid.cli import main
from rareid.commands.search_sheet import draw_rank_sheets, shorten, summary_table, wrap_name
from rareid.deploy.crops import check_crop
from rareid.levels import query_level
from tests.deploy.conftest import random_index


def test_long_names_are_wrapped_whole_and_shortened_in_the_middle() -> None:
    name = "camera_north_entrance/2024-01-01/very long file name of a crop 000123.jpg"
    assert wrap_name(name).replace("\n", "") == name
    assert max(len(line) for line in wrap_name(name).splitlines()) <= 20
    short = shorten(name, 28)
    assert len(short) == 28 and short.startswith("camera") and short.endswith("000123.jpg")


def test_every_query_is_drawn_on_as_many_sheets_as_needed(tmp_path) -> None:
    crop = tmp_path / "crop.png"
    cv2.imwrite(str(crop), np.full((64, 32, 3), 128, np.uint8))
    queries = [
        {"path": crop, "name": f"q{i}.png", "level": 1, "height": 64, "width": 32, "flags": ""}
        for i in range(17)
    ]
    matches = [
        [
            {"path": crop, "gallery": f"g/{j}.png", "order_distance": 0.1 * j, "verdict": v}
            for j, v in enumerate(("same", "different", "uncalibrated"))
        ]
        for _ in queries
    ]
    sheets = draw_rank_sheets(queries, matches, tmp_path / "out", "rank sheet, re-ranked")
    assert [path.name for path in sheets] == [f"rank_sheet_00{i}.png" for i in (1, 2, 3)]
    lines = summary_table(queries, matches, "re-ranked distance")
    assert "re-ranked distance" in lines[0] and len(lines) == 18
    assert lines[1].startswith("q0.png") and "1. g/0.png 0 same" in lines[1]


def test_degenerate_crops_are_flagged_and_the_level_uses_the_width() -> None:
    assert check_crop(128, 64).flags == ()
    assert "tiny" in str(check_crop(10, 5))
    assert "aspect" in str(check_crop(64, 64))  # a square box is not a standing person
    assert "aspect" in str(check_crop(128, 20))
    rates = [1, 2, 3, 4]
    # 80 of 128 px high but the full width (a crop cut at the knees): not a rate-1.6 query
    assert query_level(80, rates, 128)[1] == 3  # the height alone says rate 1.6: level 3
    rate, level = query_level(80, rates, 128, width=64, reference_width=64)
    assert rate == pytest.approx(1.6**0.5) and level == 4
    assert query_level(64, rates, 128, width=32, reference_width=64) == (2.0, 3)


def test_search_refuses_an_index_holding_nan(tmp_path, capsys) -> None:
    index = random_index(size=20)
    index.embeddings[3, 0] = float("nan")
    path = index.save(tmp_path / "nan.npz")
    query = tmp_path / "q.png"
    cv2.imwrite(str(query), np.zeros((64, 32, 3), np.uint8))
    code = main(["search", "--index", str(path), "--query", str(query), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "nan.npz" in err[-1] and "NaN" in err[-1]
    assert torch.isnan(index.embeddings).any() and Path(path).is_file()
