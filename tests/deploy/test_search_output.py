"""Search output a practitioner can steer: which sheets, how many threads, what produced the
results, every match readable on a one-query sheet, names cut where a reader expects."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rareid.cli import main
from rareid.commands.search_sheet import (
    distance_text,
    draw_rank_sheets,
    shorten_path,
    wrap_name,
)
from rareid.commands.threads import default_threads, use_threads
from tests.helpers import one_error_line


def test_names_break_at_separators_and_never_inside_the_extension() -> None:
    name = "camera_0/deep folder/IMG-20240101-00000 (copy).jpeg"
    lines = wrap_name(name).splitlines()
    assert "".join(lines) == name
    assert lines[0].endswith("/") or lines[0].endswith(" ")
    assert lines[-1].endswith(".jpeg") and all(".jpe" not in line[-4:] for line in lines[:-1])
    long = "x" * 45 + ".jpeg"
    assert wrap_name(long).replace("\n", "") == long and wrap_name(long).endswith(".jpeg")


def test_the_console_keeps_the_camera_folder() -> None:
    name = "site 4/archive/2024/camera_07/frame_000123.jpg"
    short = shorten_path(name, 28)
    assert short == "\u2026/camera_07/frame_000123.jpg" and len(short) <= 28
    assert shorten_path("cam A/im 001.jpg", 28) == "cam A/im 001.jpg"


def test_reranked_labels_name_the_distance_of_the_verdict() -> None:
    match = {"rerank_distance": 0.31, "distance": 12.5, "order_distance": 0.31, "verdict": "same"}
    assert distance_text(match) == "re-ranked 0.31\nd 12.5: same"
    plain = {"distance": 12.5, "order_distance": 12.5, "verdict": "different"}
    assert distance_text(plain) == "d 12.5  different"


def test_a_one_query_sheet_shows_every_label_whole(tmp_path: Path) -> None:
    """A label cut at the page's edge would leave ink on its last rows of pixels."""
    image = np.full((128, 64, 3), 120, np.uint8)
    cv2.imwrite(str(tmp_path / "q.png"), image[:40, :20])
    matches = []
    for rank in range(10):
        path = tmp_path / f"g{rank}.png"
        cv2.imwrite(str(path), image)
        matches.append(
            {
                "path": path,
                "gallery": f"camera_{rank % 3}/deep folder/IMG-2024-{rank} (copy).jpeg",
                "order_distance": 1.0 + rank,
                "distance": 1.0 + rank,
                "verdict": ("same", "different", "uncalibrated")[rank % 3],
            }
        )
    query = {"path": tmp_path / "q.png", "name": "q.png", "level": 1, "height": 40, "width": 20}
    (sheet,) = draw_rank_sheets([query], [matches], tmp_path / "out", "rank sheet", "caption")
    pixels = cv2.imread(str(sheet))
    assert (pixels[-4:] == 255).all() and (pixels[:, -4:] == 255).all()
    assert (pixels[-40:] < 200).any()  # the labels are there, above the margin


def test_threads_default_to_one_for_a_handful_of_queries() -> None:
    previous = torch.get_num_threads()
    try:
        assert default_threads(5) == 1
        assert use_threads(None, 5) == 1 and torch.get_num_threads() == 1
        assert use_threads(2, 5) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("command", ["index", "search", "calibrate", "export"])
def test_every_helper_takes_threads(command: str, capsys) -> None:
    assert main([command, "--help"]) == 0
    assert "--threads" in capsys.readouterr().out
    assert main([command, "--threads", "0"]) == 2  # a required option or --threads: one line
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.e2e
def test_sheets_threads_and_run_metadata(
    tmp_path: Path, trained_checkpoint: Path, gallery_dir: Path, query_dir: Path, capsys
) -> None:
    from tests.deploy.conftest import run_cli as run
    from tests.deploy.conftest import save_folder_index

    previous = torch.get_num_threads()
    index = save_folder_index(trained_checkpoint, gallery_dir, tmp_path / "g.npz")
    base = ["search", "--index", str(index), "--query", str(query_dir)]
    try:
        assert run([*base, "--out", str(tmp_path / "none"), "--no-sheets"]) == 0
        assert "no rank sheet (--no-sheets)" in capsys.readouterr().out
        assert not list((tmp_path / "none").glob("rank_sheet_*.png"))
        assert run([*base, "--out", str(tmp_path / "one"), "--sheets", "1", "--threads", "1"]) == 0
        printed = capsys.readouterr().out
        assert [path.name for path in (tmp_path / "one").glob("rank_sheet_*.png")] == [
            "rank_sheet_001.png"
        ]
        assert "16 queries not drawn, see --sheets" in printed
        document = json.loads((tmp_path / "one" / "results.json").read_text())
        run_info = document["run"]
        assert run_info["index"] == str(index.resolve()) and run_info["far"] == 0.01
        assert run_info["backend"] == "auto" and run_info["ann"] is None
        assert len(run_info["checkpoint_sha256"]) == 64 and run_info["threads"] == 1
        assert run_info["rareid_version"] and document["matches"]
        assert run([*base, "--out", str(tmp_path / "bad"), "--sheets", "-3"]) == 2
        assert "--sheets" in one_error_line(capsys.readouterr().err, "search")
    finally:
        torch.set_num_threads(previous)
