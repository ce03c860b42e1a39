"""The ONNX-only path: an exported file carries everything an index needs (no --metric, no
checkpoint), calibrate and search work on an ONNX-built index with --onnx, and a damaged or
altered ONNX file is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rareid.deploy.gallery.index import GalleryIndex
from tests.deploy.conftest import run_cli as run
from tests.deploy.conftest import write_labelled_crops
from tests.helpers import one_error_line

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_checkpoint) -> Path:
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert run(["export", "--ckpt", str(trained_checkpoint), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, world, people) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("labelled") / "crops"
    return folder, write_labelled_crops(folder, world, people)


def _onnx_index(exported: Path, gallery: Path, out: Path, *extra: str) -> int:
    return run(
        [
            "index",
            "--backend",
            "onnx",
            "--onnx",
            str(exported),
            "--gallery",
            str(gallery),
            "--out",
            str(out),
            "--no-progress",
            "--num-workers",
            "0",
            *extra,
        ]
    )


def test_the_export_records_what_an_index_needs(exported: Path) -> None:
    import onnx

    meta = {entry.key: entry.value for entry in onnx.load(str(exported)).metadata_props}
    assert meta["rareid_distance"] == "euclidean"
    assert meta["rareid_level_policy"] and len(meta["rareid_weights_sha256"]) == 64


def test_index_calibrate_and_search_with_the_onnx_file_alone(
    tmp_path, exported, labelled, query_dir, capsys
) -> None:
    folder, labels = labelled
    index_path = tmp_path / "g.npz"
    assert _onnx_index(exported, folder, index_path) == 0, capsys.readouterr().err
    index = GalleryIndex.load(index_path)
    assert index.metric == "euclidean" and index.checkpoint_path == ""
    code = run(
        [
            "calibrate",
            "--index",
            str(index_path),
            "--labels",
            str(labels),
            "--far",
            "0.05",
            "--onnx",
            str(exported),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert GalleryIndex.load(index_path).calibration["levels"]["4"]["thresholds"]
    out = tmp_path / "results"
    code = run(
        [
            "search",
            "--index",
            str(index_path),
            "--query",
            str(query_dir),
            "--backend",
            "onnx",
            "--onnx",
            str(exported),
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["matches"]


def test_hints_name_the_onnx_option(tmp_path, exported, labelled, query_dir, capsys) -> None:
    folder, labels = labelled
    index_path = tmp_path / "g.npz"
    assert _onnx_index(exported, folder, index_path) == 0
    capsys.readouterr()
    assert run(["calibrate", "--index", str(index_path), "--labels", str(labels)]) == 2
    assert "pass --onnx MODEL.onnx" in one_error_line(capsys.readouterr().err, "calibrate")
    code = run(
        [
            "search",
            "--index",
            str(index_path),
            "--query",
            str(query_dir),
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    assert "--backend onnx --onnx MODEL.onnx" in one_error_line(capsys.readouterr().err, "search")


def test_a_metric_the_model_does_not_use_is_refused(tmp_path, exported, labelled, capsys) -> None:
    folder, _ = labelled
    assert _onnx_index(exported, folder, tmp_path / "g.npz", "--metric", "cosine") == 2
    line = one_error_line(capsys.readouterr().err, "index")
    assert "--metric cosine: the model measures euclidean distances" in line
    assert not (tmp_path / "g.npz").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("empty", "is an empty file"),
        ("text", "is a text file"),
        ("truncated", "is damaged or truncated"),
        ("weights", "its weights differ from the ones `rareid export` wrote"),
    ],
)
def test_damaged_onnx_files_are_one_line(
    tmp_path, exported, labelled, capsys, damage: str, message: str
) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    folder, _ = labelled
    broken = tmp_path / "broken.onnx"
    if damage == "empty":
        broken.write_bytes(b"")
    elif damage == "text":
        broken.write_text("not a model\n")
    elif damage == "truncated":
        broken.write_bytes(exported.read_bytes()[: exported.stat().st_size // 2])
    else:
        proto = onnx.load(str(exported))
        tensor = max(proto.graph.initializer, key=lambda item: len(item.raw_data))
        array = numpy_helper.to_array(tensor).copy()
        array.reshape(-1)[0] = -array.reshape(-1)[0] + np.float32(1)
        tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
        onnx.save(proto, str(broken))
    assert _onnx_index(broken, folder, tmp_path / "g.npz") == 2
    line = one_error_line(capsys.readouterr().err, "index")
    assert f"'{broken}'" in line and message in line


def test_a_full_disk_during_export_leaves_no_partial_file(
    tmp_path, trained_checkpoint, capsys, monkeypatch
) -> None:
    import errno

    import rareid.runs

    pytest.importorskip("onnxruntime")

    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rareid.runs.os, "fsync", full)
    out = tmp_path / "model.onnx"
    assert run(["export", "--ckpt", str(trained_checkpoint), "--out", str(out)]) == 2
    assert "No space left on device" in one_error_line(capsys.readouterr().err, "export")
    assert list(tmp_path.iterdir()) == []  # neither model.onnx nor a staged file
    monkeypatch.undo()
    assert run(["export", "--ckpt", str(trained_checkpoint), "--out", str(out)]) == 0
