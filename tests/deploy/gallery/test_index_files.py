"""A damaged index file (cut short, random bytes, a zip of other arrays) is named in one line
that says to rebuild it, by the API and by every command that reads an index."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rareid.deploy.gallery.index import GalleryIndex, GalleryIndexError
from rareid.deploy.model.inference import Preprocess
from tests.deploy.conftest import run_cli as _run
from tests.helpers import one_error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def good_index(tmp_path: Path) -> Path:
    """A small valid index file (no model needed)."""
    count = 5
    index = GalleryIndex(
        embeddings=torch.randn(count, 6),
        paths=[f"p{number}.png" for number in range(count)],
        sizes=np.full((count, 2), (32, 16), dtype=np.int64),
        levels=torch.full((count,), 2, dtype=torch.long),
        root=str(tmp_path.resolve()),
        rates=[1.0, 2.0],
        split_sizes=[3, 3],
        metric="euclidean",
        preprocess=Preprocess((16, 8)),
    )
    return index.save(tmp_path / "good.npz")


def _without(path: Path, dropped: str) -> bytes:
    """The bytes of the index at ``path`` with the archive member ``dropped`` left out."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            if name != dropped:
                target.writestr(name, source.read(name))
    return buffer.getvalue()


def _other_arrays() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, weights=np.zeros(3), names=np.asarray(["a", "b"]))
    return buffer.getvalue()


def _meta_not_json(path: Path) -> bytes:
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["meta"] = np.asarray("{not json")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _meta_without_rates(path: Path) -> bytes:
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["rates"]
    arrays["meta"] = np.asarray(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


DAMAGES = {
    "cut in half": lambda path: path.read_bytes()[: path.stat().st_size // 2],
    "random bytes": lambda path: np.random.default_rng(0).bytes(4096),
    "empty file": lambda path: b"",
    "a zip of other arrays": lambda path: _other_arrays(),
    "no embeddings array": lambda path: _without(path, "embeddings.npy"),
    "no paths array": lambda path: _without(path, "paths.npy"),
    "metadata not JSON": _meta_not_json,
    "metadata without rates": _meta_without_rates,
}


@pytest.fixture(params=sorted(DAMAGES))
def damaged(request, tmp_path) -> Path:
    data = DAMAGES[request.param](good_index(tmp_path))
    path = tmp_path / "damaged index.npz"
    path.write_bytes(data)
    return path


def test_a_good_index_loads(tmp_path) -> None:
    assert len(GalleryIndex.load(good_index(tmp_path))) == 5


def test_damaged_index_is_one_error_naming_the_file(damaged) -> None:
    with pytest.raises(GalleryIndexError) as caught:
        GalleryIndex.load(damaged)
    message = str(caught.value)
    assert "\n" not in message
    assert str(damaged) in message
    assert "rebuild it with `rareid index`" in message


def test_commands_reading_a_damaged_index_say_so_in_one_line(damaged, tmp_path, capsys) -> None:
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    cv2.imwrite(str(gallery / "a.png"), np.zeros((32, 16, 3), dtype=np.uint8))
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"never read: the index is read first")
    before = damaged.read_bytes()
    commands = {
        "search": ["--index", str(damaged), "--query", str(gallery), "--out", str(tmp_path / "r")],
        "calibrate": ["--index", str(damaged), "--labels", str(gallery)],
        "index": [
            "--ckpt",
            str(checkpoint),
            "--gallery",
            str(gallery),
            "--out",
            str(damaged),
            "--add",
            "--no-progress",
            "--num-workers",
            "0",
        ],
    }
    for subcommand, args in commands.items():
        capsys.readouterr()
        assert _run([subcommand, *args]) == 2, subcommand
        line = one_error_line(capsys.readouterr().err, subcommand)
        assert str(damaged) in line and "rebuild it with `rareid index`" in line, line
    assert damaged.read_bytes() == before  # nothing overwritten
