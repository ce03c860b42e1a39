"""``rareid index`` keeps an index true to its folder and never loses a write: deleted and changed
files are noticed and counted, one writer at a time (a lock beside the file), NaN refused,
float16 storage, an ONNX-only build, and images decoded by DataLoader workers."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

from rareid.deploy.gallery.index import GalleryIndex
from rareid.deploy.gallery.update import IndexLock
from rareid.deploy.search.exact import Searcher
from tests.deploy.conftest import GALLERY_NAMES, delete_change_and_add, index_args, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]


run = run_cli


def test_add_counts_deleted_and_changed_files(tmp_path, trained_checkpoint, gallery_dir, capsys):
    folder = tmp_path / "gallery"
    shutil.copytree(gallery_dir, folder)
    out = tmp_path / "g.npz"
    assert run(index_args(trained_checkpoint, folder, out)) == 0
    before = GalleryIndex.load(out)
    capsys.readouterr()

    delete_change_and_add(folder)
    assert run(index_args(trained_checkpoint, folder, out, "--add")) == 0
    printed = capsys.readouterr().out
    assert (
        "6 images (1 added, 1 changed and re-embedded, 1 deleted from the gallery and dropped, "
        "4 already indexed, 1 unreadable skipped, 0 flagged crops)" in printed
    )
    after = GalleryIndex.load(out)
    assert GALLERY_NAMES[0] not in after.paths and "new one.png" in after.paths
    row = {name: position for position, name in enumerate(after.paths)}
    old_row = {name: position for position, name in enumerate(before.paths)}
    torch.testing.assert_close(
        after.embeddings[row[GALLERY_NAMES[1]]], before.embeddings[old_row[GALLERY_NAMES[2]]]
    )
    torch.testing.assert_close(
        after.embeddings[row[GALLERY_NAMES[4]]], before.embeddings[old_row[GALLERY_NAMES[4]]]
    )


def test_a_second_writer_is_refused_with_one_line(
    tmp_path, trained_checkpoint, gallery_dir, capsys
):
    out = tmp_path / "g.npz"
    assert run(index_args(trained_checkpoint, gallery_dir, out)) == 0
    saved = out.read_bytes()
    capsys.readouterr()
    lock = IndexLock(out).acquire()  # another `rareid index --add` running (a live process)
    try:
        assert run(index_args(trained_checkpoint, gallery_dir, out, "--add")) == 2
    finally:
        lock.release()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is being written by process" in err[0]
    assert out.read_bytes() == saved
    assert run(index_args(trained_checkpoint, gallery_dir, out, "--add")) == 0  # lock released
    assert not (tmp_path / ".g.npz.lock").exists()


def test_a_checkpoint_with_nan_weights_is_refused(
    tmp_path, trained_checkpoint, gallery_dir, capsys
):
    broken = tmp_path / "nan.ckpt"
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name].view(-1)[0] = float("nan")
    torch.save(checkpoint, broken)
    out = tmp_path / "g.npz"
    assert run(index_args(broken, gallery_dir, out)) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite weights" in err and name in err and "Traceback" not in err
    assert not out.exists()


def test_float16_storage_halves_the_file_and_keeps_the_ranking(
    tmp_path, trained_checkpoint, gallery_dir, query_dir
) -> None:
    from rareid.deploy.model.inference import list_images, load_model

    full, half = tmp_path / "f32.npz", tmp_path / "f16.npz"
    assert run(index_args(trained_checkpoint, gallery_dir, full)) == 0
    assert run(index_args(trained_checkpoint, gallery_dir, half, "--dtype", "float16")) == 0
    with np.load(half, allow_pickle=False) as data:
        assert data["embeddings"].dtype == np.float16
    exact, rounded = GalleryIndex.load(full), GalleryIndex.load(half)
    assert rounded.storage_dtype == "float16"
    model, _ = load_model(trained_checkpoint)
    queries = list_images(query_dir)
    levels = [4] * len(queries)
    a = Searcher(exact).search_images(model, queries, levels, k=5)
    b = Searcher(rounded).search_images(model, queries, levels, k=5)
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(a.distances, b.distances, atol=2e-3, rtol=2e-3)


def test_dataloader_workers_give_the_same_index(tmp_path, trained_checkpoint, gallery_dir) -> None:
    one, two = tmp_path / "w0.npz", tmp_path / "w2.npz"
    assert run(index_args(trained_checkpoint, gallery_dir, one)) == 0
    assert run([*index_args(trained_checkpoint, gallery_dir, two), "--num-workers", "2"]) == 0
    a, b = GalleryIndex.load(one), GalleryIndex.load(two)
    assert a.paths == b.paths
    torch.testing.assert_close(a.embeddings, b.embeddings)


def test_index_with_an_approximate_index_is_kept_on_add(
    tmp_path, trained_checkpoint, gallery_dir, capsys
) -> None:
    pytest.importorskip("faiss")
    folder = tmp_path / "gallery"
    shutil.copytree(gallery_dir, folder)
    out = tmp_path / "g.npz"
    assert run(index_args(trained_checkpoint, folder, out, "--ann", "hnsw")) == 0
    assert GalleryIndex.load(out).ann.kind == "hnsw"
    (folder / GALLERY_NAMES[0]).unlink()
    assert run(index_args(trained_checkpoint, folder, out, "--add")) == 0
    updated = GalleryIndex.load(out)
    assert updated.ann is not None and updated.ann.indexes[0].ntotal == len(updated) == 5


def test_onnx_backend_builds_the_index_without_a_checkpoint_and_half_weights_agree(
    tmp_path, trained_checkpoint, gallery_dir, capsys
) -> None:
    pytest.importorskip("onnxruntime")
    from rareid.deploy.model.onnx_half import compare_exports, half_weights

    onnx_path = tmp_path / "model.onnx"
    assert run(["export", "--ckpt", str(trained_checkpoint), "--out", str(onnx_path)]) == 0
    by_torch, by_onnx = tmp_path / "t.npz", tmp_path / "o.npz"
    assert run(index_args(trained_checkpoint, gallery_dir, by_torch)) == 0
    onnx_only = [
        "index", "--backend", "onnx", "--onnx", str(onnx_path), "--gallery", str(gallery_dir),
        "--out", str(by_onnx), "--no-progress", "--num-workers", "0",
    ]  # fmt: skip
    import onnx

    older = onnx.load(str(onnx_path))  # an export from before the distance was recorded
    kept = [entry for entry in older.metadata_props if entry.key != "rareid_distance"]
    del older.metadata_props[:]
    older.metadata_props.extend(kept)
    older_path = tmp_path / "older.onnx"
    onnx.save(older, str(older_path))
    older_only = [str(older_path) if item == str(onnx_path) else item for item in onnx_only]
    assert run(older_only) == 2  # the distance is not in the file: one line asks for it
    assert "--metric" in capsys.readouterr().err
    assert run([*older_only, "--metric", "euclidean"]) == 0
    by_onnx.unlink()
    assert run(onnx_only) == 0  # today's export records the distance: no --metric needed
    a, b = GalleryIndex.load(by_torch), GalleryIndex.load(by_onnx)
    assert a.paths == b.paths and a.checkpoint_sha256 == b.checkpoint_sha256
    assert a.preprocess == b.preprocess and a.split_sizes == b.split_sizes
    torch.testing.assert_close(a.embeddings, b.embeddings, atol=1e-4, rtol=1e-4)

    half = half_weights(onnx_path, tmp_path / "model-fp16.onnx")
    assert half.stat().st_size < 0.6 * onnx_path.stat().st_size
    crops = torch.randn(24, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    report = compare_exports(onnx_path, half, crops, k=5)
    assert [row.level for row in report] == [1, 2, 3, 4]
    for row in report:
        assert 0 < row.max_difference < 5e-2 and row.top_k_agreement >= 0.9


def test_degenerate_gallery_crops_are_named_in_the_summary(
    tmp_path, trained_checkpoint, gallery_dir, capsys
) -> None:
    folder = tmp_path / "gallery"
    shutil.copytree(gallery_dir, folder)
    image = cv2.imread(str(folder / GALLERY_NAMES[0]))
    cv2.imwrite(str(folder / "sliver.png"), image[:, :8])  # 128x8: no person is this thin
    out = tmp_path / "g.npz"
    assert run(index_args(trained_checkpoint, folder, out)) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "flagged" in line]
    assert len(lines) == 1
    assert "1 unreadable skipped, 1 flagged crops)" in lines[0]
    assert "sliver.png [aspect 16.00" in lines[0]
    assert "sliver.png" in GalleryIndex.load(out).paths  # indexed all the same
