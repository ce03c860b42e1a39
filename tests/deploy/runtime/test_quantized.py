"""int8 and OpenVINO exports: each prints the per-level drift table against float32 (largest
embedding difference, top-10 agreement, rank-1 / mAP on held-out labelled crops) and writes
only when no level loses more than ``--max-drop`` points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rareid.deploy.model.drift import LevelDrift, drift_table
from rareid.deploy.model.embedder import OnnxEmbedder
from tests.deploy.conftest import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]


def _export(
    checkpoint: Path, out: Path, heldout: Path, calibration: Path, *extra: str
) -> list[str]:
    return [
        "export", "--ckpt", str(checkpoint), "--out", str(out), "--heldout", str(heldout),
        "--calibration", str(calibration), "--samples", "32", *extra,
    ]  # fmt: skip


def _table_rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("| ") and "(r=" in line]


def test_int8_prints_the_drift_per_level_and_respects_max_drop(
    tmp_path, trained_checkpoint, heldout, gallery_dir, capsys
) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.int8.onnx"
    argv = _export(trained_checkpoint, out, heldout, gallery_dir, "--quantize", "int8")
    assert run_cli([*argv, "--max-drop", "100"]) == 0
    printed = capsys.readouterr().out
    rows = _table_rows(printed)
    assert [row.split()[1] for row in rows] == ["1", "2", "3", "4"]
    assert "most drift at level" in printed and "1 unreadable skipped" in printed
    import onnx

    graph = onnx.load(str(out)).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    vectors, levels = OnnxEmbedder(out).embed([np.full((16, 8, 3), 80, np.uint8)])
    assert vectors.shape == (1, 32) and levels.tolist() == [1]


def test_a_drop_above_max_drop_writes_nothing(
    tmp_path, trained_checkpoint, heldout, gallery_dir, capsys, monkeypatch
) -> None:
    import rareid.deploy.model.drift as drift

    pytest.importorskip("onnxruntime")
    measured = drift.measure_drift

    def lossy(*args, **kwargs):  # the real table, with level 1 losing 1.5 rank-1 points
        rows = measured(*args, **kwargs)
        rows[0].rank1 = rows[0].rank1_reference - 1.5
        rows[0].map = rows[0].map_reference
        return rows

    monkeypatch.setattr(drift, "measure_drift", lossy)
    out = tmp_path / "refused.onnx"
    argv = _export(trained_checkpoint, out, heldout, gallery_dir, "--quantize", "int8")
    assert run_cli(argv) == 1
    captured = capsys.readouterr()
    assert len(_table_rows(captured.out)) == 4
    error = captured.err.strip().splitlines()
    assert len(error) == 1 and "loses 1.5 points at level 1" in error[0]
    assert "--max-drop 1" in error[0] and "nothing written" in error[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == []
    assert run_cli([*argv, "--max-drop", "2"]) == 0 and out.exists()


def test_the_worst_level_is_named_and_the_drop_is_the_larger_loss() -> None:
    rows = [
        LevelDrift(1, 4.0, 0.2, 70.0, 50.0, 40.0, 45.0, 39.0),
        LevelDrift(2, 3.0, 0.1, 90.0, 60.0, 50.0, 60.0, 48.0),
        LevelDrift(4, 1.0, 0.01, 100.0, 80.0, 70.0, 80.0, 70.0),
    ]
    assert [row.drop for row in rows] == [5.0, 2.0, 0.0]
    assert drift_table(rows, "int8")[-1].startswith("most drift at level 1 (r=4)")


def test_openvino_exports_with_its_drift_table(
    tmp_path, trained_checkpoint, heldout, gallery_dir, capsys
) -> None:
    pytest.importorskip("openvino")
    out = tmp_path / "model.xml"
    argv = _export(trained_checkpoint, out, heldout, gallery_dir, "--format", "openvino")
    assert run_cli([*argv, "--max-drop", "100"]) == 0
    printed = capsys.readouterr().out
    assert len(_table_rows(printed)) == 4 and "OpenVINO fp32" in printed
    assert out.exists() and out.with_suffix(".bin").exists()
    embedder = OnnxEmbedder(out)
    assert embedder.rates == [1.0, 2.0, 3.0, 4.0]
    image = np.full((64, 32, 3), 120, np.uint8)
    from rareid.deploy.model.inference import load_model

    model, preprocess = load_model(trained_checkpoint)
    expected = model.embed(preprocess(image), [4]).detach().numpy()
    np.testing.assert_allclose(embedder.embed([image], levels=[4])[0], expected, atol=1e-3)
