"""The torch-free runtime: ``rareid index|search --backend onnx`` and ``OnnxEmbedder`` run in a
fresh process that never imports torch, timm or Lightning, and give what the torch path gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rareid.deploy.gallery.index import GalleryIndex
from rareid.deploy.model.inference import load_model
from tests.deploy.conftest import index_args, run_cli, search_args

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]

ROOT = Path(__file__).resolve().parents[3]
#: Run in a fresh interpreter: the commands, the embedder, then the heavy modules it loaded.
SCRIPT = """
import json, sys
from rareid.cli import main
from rareid.deploy.model.embedder import OnnxEmbedder
codes = [main(argv) for argv in json.loads(sys.argv[1])]
vectors, levels = OnnxEmbedder(sys.argv[2]).embed(json.loads(sys.argv[3]))
heavy = sorted(m for m in ("torch", "timm", "lightning", "matplotlib") if m in sys.modules)
print(json.dumps({"codes": codes, "heavy": heavy, "levels": levels.tolist(),
                  "vectors": vectors.tolist()}))
"""


def test_index_search_and_embedder_never_import_torch(
    tmp_path, exported_onnx, trained_checkpoint, gallery_dir, query_dir
) -> None:
    onnx_index, torch_index = tmp_path / "onnx.npz", tmp_path / "torch.npz"
    commands = [
        [
            "index", "--backend", "onnx", "--onnx", str(exported_onnx), "--gallery",
            str(gallery_dir), "--out", str(onnx_index), "--no-progress", "--threads", "1",
        ],
        search_args(
            onnx_index, query_dir, tmp_path / "found", "--backend", "onnx", "--onnx",
            str(exported_onnx), "--no-sheets", "--threads", "1",
        ),
    ]  # fmt: skip
    queries = sorted(str(path) for path in query_dir.iterdir())[:3]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            json.dumps(commands),
            str(exported_onnx),
            json.dumps(queries),
        ],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["codes"] == [0, 0], done.stderr
    assert report["heavy"] == []

    # the same index as the torch path's, and the same matches
    assert run_cli(index_args(trained_checkpoint, gallery_dir, torch_index)) == 0
    by_torch, by_onnx = GalleryIndex.load(torch_index), GalleryIndex.load(onnx_index)
    assert by_onnx.paths == by_torch.paths and by_onnx.skipped == []
    np.testing.assert_allclose(by_onnx.embeddings, by_torch.embeddings, atol=1e-4)
    assert run_cli(search_args(torch_index, query_dir, tmp_path / "t", "--no-sheets")) == 0
    torch_rows = json.loads((tmp_path / "t" / "results.json").read_text())["matches"]
    onnx_rows = json.loads((tmp_path / "found" / "results.json").read_text())["matches"]
    assert [(row["query"], row["gallery"], row["level"]) for row in onnx_rows] == [
        (row["query"], row["gallery"], row["level"]) for row in torch_rows
    ]
    # the embedder: levels from the crop heights (QUERY_HEIGHTS against the 64 px input)
    model, preprocess = load_model(trained_checkpoint)
    expected = model.embed(preprocess(queries), report["levels"]).detach().numpy()
    np.testing.assert_allclose(np.asarray(report["vectors"]), expected, atol=1e-4)
    assert all(1 <= level <= 4 for level in report["levels"])
