"""Fixtures of the exported-model tests: one ONNX file and one bundle of the deploy tests'
tiny checkpoint, exported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.conftest import run_cli, write_labelled_crops


@pytest.fixture(scope="session")
def exported_onnx(tmp_path_factory, trained_checkpoint) -> Path:
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("exported") / "model.onnx"
    assert run_cli(["export", "--ckpt", str(trained_checkpoint), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def heldout(tmp_path_factory, world, people) -> Path:
    """Labelled crops (``labels.csv``) of the tiny model's people, 4 frames over 2 cameras."""
    return write_labelled_crops(tmp_path_factory.mktemp("heldout"), world, people, frames=4)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory, trained_checkpoint, heldout) -> Path:
    pytest.importorskip("safetensors")
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    argv = ["export", "--ckpt", str(trained_checkpoint), "--format", "bundle", "--out", str(out)]
    assert run_cli([*argv, "--heldout", str(heldout)]) == 0
    return out
