"""``index --add`` on a gallery folder that moved: one line naming the move, never a silent
re-embedding under ``../`` names; ``--rebase`` keeps the embeddings of the same files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from rareid.deploy.gallery.index import GalleryIndex
from tests.deploy.conftest import index_args
from tests.deploy.conftest import run_cli as run
from tests.helpers import one_error_line

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture
def moved(tmp_path: Path, trained_checkpoint: Path, gallery_dir: Path) -> tuple[Path, Path, Path]:
    """An index built on ``old/`` whose folder was then moved to ``new/``."""
    old, new, out = tmp_path / "old", tmp_path / "new", tmp_path / "g.npz"
    shutil.copytree(gallery_dir, old, copy_function=shutil.copy2)
    assert run(index_args(trained_checkpoint, old, out)) == 0
    index = GalleryIndex.load(out)
    index.calibration = {"fars": [0.01], "levels": {}}
    index.save(out)
    shutil.move(old, new)
    return old, new, out


def test_add_on_a_moved_gallery_is_one_line_and_changes_nothing(
    moved, trained_checkpoint: Path, capsys
) -> None:
    old, new, out = moved
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    capsys.readouterr()
    assert run(index_args(trained_checkpoint, new, out, "--add")) == 2
    line = one_error_line(capsys.readouterr().err, "index")
    assert f"built on {old.resolve()}" in line and str(new.resolve()) in line
    assert "--rebase" in line
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before


def test_rebase_keeps_the_embeddings_of_the_same_files(
    moved, trained_checkpoint: Path, capsys
) -> None:
    _, new, out = moved
    before = GalleryIndex.load(out)
    capsys.readouterr()
    assert run(index_args(trained_checkpoint, new, out, "--add", "--rebase")) == 0
    printed = capsys.readouterr().out
    count = len(before)
    assert f"kept {count} embedding(s) of the same files, 0 file(s) differ" in printed
    assert f"{count} already indexed" in printed and "0 added" in printed
    after = GalleryIndex.load(out)
    assert Path(after.root) == new.resolve() and after.paths == before.paths
    assert not any(name.startswith("..") for name in after.paths)
    torch.testing.assert_close(after.embeddings, before.embeddings)
    assert after.calibration == before.calibration  # same content: still valid


def test_rebase_embeds_what_differs_and_drops_the_calibration(
    moved, trained_checkpoint: Path, capsys
) -> None:
    _, new, out = moved
    names = GalleryIndex.load(out).paths
    (new / names[0]).write_bytes((new / names[1]).read_bytes())  # another picture, same name
    capsys.readouterr()
    assert run(index_args(trained_checkpoint, new, out, "--add", "--rebase")) == 0
    printed = capsys.readouterr().out
    assert "1 file(s) differ and are embedded again" in printed
    assert "the calibration is dropped" in printed and "1 changed and re-embedded" in printed
    assert GalleryIndex.load(out).calibration is None


def test_rebase_needs_add(trained_checkpoint: Path, gallery_dir: Path, tmp_path: Path, capsys):
    assert run(index_args(trained_checkpoint, gallery_dir, tmp_path / "g.npz", "--rebase")) == 2
    assert "--rebase applies with --add" in one_error_line(capsys.readouterr().err, "index")
