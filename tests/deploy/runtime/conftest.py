"""Fixtures of the exported-model tests: one ONNX file and one bundle of the deploy tests'
tiny checkpoint, exported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.conftest import run_cli


@pytest.fixture(scope="session")
def exported_onnx(tmp_path_factory, trained_checkpoint) -> Path:
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("exported") / "model.onnx"
    assert run_cli(["export", "--ckpt", str(trained_checkpoint), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def bundle(tmp_path_factory, trained_checkpoint) -> Path:
    pytest.importorskip("safetensors")
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    code = run_cli(
        ["export", "--ckpt", str(trained_checkpoint), "--format", "bundle", "--out", str(out)]
    )
    assert code == 0
    return out
