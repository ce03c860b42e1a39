"""Hostile files at the deployment commands: a decompression bomb is never decoded (skipped
and named in a gallery, one line as a query), an existing file given as ``search --out`` is one
line."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from rareid.data.readers.base import MAX_IMAGE_PIXELS, header_problem
from tests.deploy.conftest import index_args, save_folder_index
from tests.deploy.conftest import run_cli as run
from tests.helpers import one_error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_bomb(path: Path, side: int = 20_000) -> Path:
    """A valid ``side`` x ``side`` 1-bit PNG of a few tens of kilobytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def test_a_bomb_is_named_from_its_header(tmp_path: Path) -> None:
    bomb = write_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1_000_000 and MAX_IMAGE_PIXELS < 20_000 * 20_000
    problem = header_problem(str(bomb))
    assert problem is not None and problem.startswith("too large to decode (20000x20000 pixels")


@pytest.mark.e2e
def test_a_bomb_in_the_gallery_is_skipped_and_named(
    tmp_path: Path, trained_checkpoint: Path, gallery_dir: Path, capsys
) -> None:
    import shutil

    gallery = tmp_path / "gallery"
    shutil.copytree(gallery_dir, gallery)
    write_bomb(gallery / "zz bomb.png")
    out = tmp_path / "g.npz"
    assert run(index_args(trained_checkpoint, gallery, out)) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "zz bomb.png" in err and "too large to decode" in err


@pytest.mark.e2e
def test_a_bomb_query_is_one_line(
    tmp_path: Path, trained_checkpoint: Path, gallery_dir: Path, capsys
) -> None:
    index = save_folder_index(trained_checkpoint, gallery_dir, tmp_path / "g.npz")
    bomb = write_bomb(tmp_path / "q" / "bomb.png")
    code = run(
        ["search", "--index", str(index), "--query", str(bomb), "--out", str(tmp_path / "r")]
    )
    line = one_error_line(capsys.readouterr().err, "search")
    assert code == 2 and f"--query: '{bomb}' is too large to decode" in line


def test_search_out_naming_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    code = run(["search", "--index", "i.npz", "--query", "q", "--out", str(existing)])
    line = one_error_line(capsys.readouterr().err, "search")
    assert code == 2 and f"--out: '{existing}' is a file" in line
    assert existing.read_text() == "keep me"


@pytest.mark.e2e
def test_ann_on_a_one_image_gallery_is_one_line(
    tmp_path: Path, trained_checkpoint: Path, gallery_dir: Path, capsys
) -> None:
    pytest.importorskip("faiss")
    import shutil

    gallery = tmp_path / "one"
    gallery.mkdir()
    first = sorted(path for path in gallery_dir.rglob("*.png"))[0]
    shutil.copy(first, gallery / "only.png")
    out = tmp_path / "g.npz"
    assert run(index_args(trained_checkpoint, gallery, out, "--ann", "ivf-pq")) == 2
    line = one_error_line(capsys.readouterr().err, "index")
    assert "--ann ivf-pq: a gallery of 1 image(s) is too small to train it" in line
    assert not out.exists()


@pytest.mark.e2e
def test_search_names_stale_gallery_files(
    tmp_path: Path, trained_checkpoint: Path, gallery_dir: Path, query_dir: Path, capsys
) -> None:
    import json
    import os
    import shutil

    gallery = tmp_path / "gallery"
    shutil.copytree(gallery_dir, gallery)
    index = save_folder_index(trained_checkpoint, gallery, tmp_path / "g.npz")
    from rareid.deploy.gallery.index import GalleryIndex

    names = sorted(GalleryIndex.load(index).paths)
    (gallery / names[0]).unlink()
    replaced = gallery / names[1]
    replaced.write_bytes((gallery / names[2]).read_bytes())
    os.utime(replaced, (1e9, 1e9))
    out = tmp_path / "r"
    code = run(
        [
            "search",
            "--index",
            str(index),
            "--query",
            str(query_dir),
            "--out",
            str(out),
            "--top-k",
            "20",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    rows = json.loads((out / "results.json").read_text())["matches"]
    status = {row["gallery"]: row["gallery_status"] for row in rows}
    assert status[names[0]] == "deleted" and status[names[1]] == "changed"
    assert status[names[2]] == "ok"
    assert "stale gallery: 2 matched file(s)" in err and names[0] in err and "--add" in err


@pytest.mark.e2e
def test_a_full_disk_during_search_is_one_line_and_leaves_no_partial_file(
    tmp_path: Path,
    trained_checkpoint: Path,
    gallery_dir: Path,
    query_dir: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    import rareid.runs

    index = save_folder_index(trained_checkpoint, gallery_dir, tmp_path / "g.npz")
    out = tmp_path / "r"

    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rareid.runs.os, "fsync", full)
    argv = ["search", "--index", str(index), "--query", str(query_dir), "--out", str(out)]
    assert run(argv) == 2
    line = one_error_line(capsys.readouterr().err, "search")
    assert f"--out: cannot write to '{out}' (No space left on device)" in line
    assert not any(path.is_file() for path in out.rglob("*"))
    monkeypatch.undo()
    assert run(argv) == 0  # no half-written file blocks the rerun


@pytest.mark.e2e
def test_a_truncated_jpeg_query_is_named_and_skipped(
    tmp_path: Path, trained_checkpoint: Path, gallery_dir: Path, query_dir: Path, capsys
) -> None:
    """A damaged query is never searched on the pixels libjpeg guessed: the file is named with
    what is wrong and counted among the skipped queries."""
    import cv2

    index = save_folder_index(trained_checkpoint, gallery_dir, tmp_path / "g.npz")
    queries = tmp_path / "q"
    queries.mkdir()
    image = cv2.imread(str(sorted(query_dir.glob("*.png"))[-1]))
    good = queries / "good.jpg"
    cv2.imwrite(str(good), image)
    data = cv2.imencode(".jpg", cv2.resize(image, (64, 128)))[1].tobytes()
    damaged = queries / "damaged.jpg"
    damaged.write_bytes(data[: len(data) * 2 // 3])
    patched = queries / "patched.jpg"  # cut short, then given an end-of-image marker
    patched.write_bytes(data[: len(data) * 2 // 3] + b"\xff\xd9")
    code = run(
        ["search", "--index", str(index), "--query", str(queries), "--out", str(tmp_path / "r")]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"skipped query {damaged}: truncated JPEG" in captured.err
    assert f"skipped query {patched}: damaged image (the decoder says: Corrupt JPEG" in captured.err
    assert "2 unreadable skipped" in captured.out + captured.err
    assert "good.jpg" in captured.out


@pytest.mark.parametrize("content", ["path,person\na.jpg,1\n", ""], ids=["csv", "empty"])
def test_index_add_to_a_file_that_is_no_index_says_so(
    tmp_path: Path, trained_checkpoint: Path, gallery_dir: Path, capsys, content: str
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(content)
    code = run(index_args(trained_checkpoint, gallery_dir, labels, "--add"))
    line = one_error_line(capsys.readouterr().err, "index")
    assert code == 2 and f"'{labels}' is not an index file" in line and "pickle" not in line


@pytest.mark.e2e
def test_outputs_that_cannot_be_written_are_one_line(
    tmp_path: Path, trained_checkpoint: Path, gallery_dir: Path, capsys
) -> None:
    """An --out whose folder cannot be made (it lies below a regular file: as root, a
    read-only folder still takes writes) is one line naming the option, exit status 2."""
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    code = run(index_args(trained_checkpoint, gallery_dir, blocker / "g.npz"))
    line = one_error_line(capsys.readouterr().err, "index")
    assert (
        code == 2
        and line.startswith("rareid index: error: --out: cannot write")
        and "a file" in line
    )
    index = save_folder_index(trained_checkpoint, gallery_dir, tmp_path / "g.npz")
    code = run(
        ["search", "--index", str(index), "--query", str(gallery_dir), "--out", str(blocker / "r")]
    )
    line = one_error_line(capsys.readouterr().err, "search")
    assert code == 2 and "--out: cannot write" in line


@pytest.mark.e2e
@pytest.mark.parametrize("earlier", [False, True], ids=["new", "overwritten"])
def test_calibrate_whose_index_cannot_be_written_leaves_no_calibration_claiming_it(
    tmp_path: Path, trained_checkpoint: Path, world, people, monkeypatch, capsys, earlier: bool
) -> None:
    """The thresholds go to calibration.json and into the index: when the index cannot be
    written, calibration.json is not left saying they were stored (an earlier one is kept)."""
    from rareid.deploy.gallery.index import GalleryIndex
    from tests.deploy.conftest import write_labelled_crops

    folder = tmp_path / "crops"
    labels = write_labelled_crops(folder, world, people, frames=4, name="p{number}/f{frame}.png")
    index = save_folder_index(trained_checkpoint, folder, tmp_path / "g.npz")
    out = tmp_path / "calibration.json"
    if earlier:
        out.write_text('{"earlier": true}')
        out.with_suffix(".png").write_bytes(b"earlier picture")

    def refuse(self, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(GalleryIndex, "save", refuse)
    argv = ["calibrate", "--index", str(index), "--labels", str(labels), "--far", "0.1"]
    code = run([*argv, *(["--overwrite"] if earlier else [])])
    line = one_error_line(capsys.readouterr().err, "calibrate")
    assert code == 2 and f"--index: cannot store the thresholds in '{index}'" in line
    assert "Permission denied" in line
    if earlier:
        assert out.read_text() == '{"earlier": true}'
        assert out.with_suffix(".png").read_bytes() == b"earlier picture"
    else:
        assert not out.exists() and not out.with_suffix(".png").exists()
    monkeypatch.undo()
    assert GalleryIndex.load(index).calibration is None
