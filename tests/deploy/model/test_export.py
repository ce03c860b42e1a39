"""ONNX export: onnxruntime equals PyTorch on every level (dynamic batch); the search command can
embed with it; torch.export as a second format."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch

from rareid.deploy.gallery.index import GalleryIndex
from rareid.deploy.model.backend_onnx import OnnxBackend
from rareid.deploy.model.export import export_torch
from rareid.deploy.model.inference import list_images, load_model
from tests.deploy.conftest import index_args, search_args
from tests.deploy.conftest import run_cli as run

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]


def test_onnx_export_is_checked_on_every_level_and_serves_search(
    tmp_path, trained_checkpoint, gallery_dir, query_dir, capsys
) -> None:
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "model.onnx"
    assert run(["export", "--ckpt", str(trained_checkpoint), "--out", str(onnx_path)]) == 0
    out = capsys.readouterr().out
    differences = [float(v) for v in re.findall(r"level \d: ([0-9.e+-]+)", out)]
    assert len(differences) == 4 and max(differences) <= 1e-4
    assert "check passed" in out

    model, preprocess = load_model(trained_checkpoint)
    embedder = OnnxBackend(onnx_path)
    assert json.loads(embedder.metadata["rareid_mean"]) == pytest.approx(list(preprocess.mean))
    images = torch.randn(5, 3, 64, 32)  # a batch size the export never saw
    levels = torch.tensor([4, 1, 2, 3, 1])
    torch.testing.assert_close(
        embedder.embed(images, levels), model.embed(images, levels), atol=1e-4, rtol=1e-4
    )
    with pytest.raises(ValueError, match=r"1\.\.4"):
        embedder.embed(images, torch.tensor([0, 1, 2, 3, 5]))

    index = tmp_path / "g.npz"
    assert run(index_args(trained_checkpoint, gallery_dir, index, workers=None)) == 0
    results = {}
    for backend in ("torch", "onnx"):
        extra = ["--onnx", str(onnx_path)] if backend == "onnx" else []
        assert (
            run(search_args(index, query_dir, tmp_path / backend, "--backend", backend, *extra))
            == 0
        )
        results[backend] = json.loads((tmp_path / backend / "results.json").read_text())["matches"]
    assert [r["gallery"] for r in results["onnx"]] == [r["gallery"] for r in results["torch"]]
    for a, b in zip(results["onnx"], results["torch"], strict=True):
        assert a["distance"] == pytest.approx(b["distance"], rel=1e-3, abs=1e-4)

    # The index embeds through either backend: the ONNX-built gallery is the torch-built one.
    paths = list_images(gallery_dir)
    by_torch = GalleryIndex.build(model, paths, root=gallery_dir, preprocess=preprocess)
    by_onnx = GalleryIndex.empty(model, gallery_dir, preprocess)
    added, _, skipped = by_onnx.add(OnnxBackend(onnx_path), paths)
    assert added == len(by_torch) > 0 and len(skipped) == len(by_torch.skipped)
    assert by_onnx.paths == by_torch.paths
    torch.testing.assert_close(by_onnx.embeddings, by_torch.embeddings, atol=1e-4, rtol=1e-4)


def test_existing_export_is_not_overwritten(tmp_path, trained_checkpoint, capsys) -> None:
    target = tmp_path / "m.onnx"
    target.write_text("keep me")
    assert run(["export", "--ckpt", str(trained_checkpoint), "--out", str(target)]) == 2
    assert "--overwrite" in capsys.readouterr().err and target.read_text() == "keep me"


def test_missing_onnx_names_the_extra(tmp_path, trained_checkpoint, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    assert (
        run(["export", "--ckpt", str(trained_checkpoint), "--out", str(tmp_path / "m.onnx")]) == 2
    )
    assert "rareid[deploy]" in capsys.readouterr().err


def test_torch_export_round_trip(tmp_path, trained_checkpoint) -> None:
    model, _ = load_model(trained_checkpoint)
    path = export_torch(model, tmp_path / "m.pt2")
    program = torch.export.load(str(path)).module()
    images, levels = torch.randn(3, 3, 64, 32), torch.tensor([1, 4, 2])
    torch.testing.assert_close(program(images, levels), model.embed(images, levels))


def test_output_path_is_checked_before_the_model_is_built(
    tmp_path, trained_checkpoint, capsys, monkeypatch
) -> None:
    import rareid.deploy.model.inference as inference

    def never(*args, **kwargs):
        raise AssertionError("the model was built before the output path was checked")

    monkeypatch.setattr(inference, "load_model", never)
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    for out, message in ((blocker / "m.onnx", "is a file"), (tmp_path, "is a folder")):
        code = run(["export", "--ckpt", str(trained_checkpoint), "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and message in err[-1], err


def test_checkpoint_with_nan_weights_is_refused(tmp_path, trained_checkpoint, capsys) -> None:
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    checkpoint["state_dict"]["head.fc.bias"][0] = float("nan")
    broken = tmp_path / "nan.ckpt"
    torch.save(checkpoint, broken)
    code = run(["export", "--ckpt", str(broken), "--format", "torch-export"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "nan.ckpt" in err[-1] and "NaN" in err[-1]
    assert not broken.with_suffix(".pt2").exists()
