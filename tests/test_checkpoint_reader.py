"""Every way a checkpoint file can be wrong, through every command and API that reads one: one
line naming the file (exit status 2 at the CLI, ``CheckpointError`` in Python), never torch's
hint to load with ``weights_only=False``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rareid.checkpoint_reader import CheckpointError, read_checkpoint
from rareid.cli import main
from tests.helpers import one_error_line, tiny_run_args


class _RunsCode:
    """A pickled object whose loading would run ``os.system``."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo this must never run",))


#: Damage kind -> what the one line says about the file.
DAMAGE = {
    "empty": "is an empty file",
    "text": "is a text file",
    "truncated": "is damaged or truncated",
    "state_dict": "holds a plain state dict",
    "other_torch_file": "holds a list without a state_dict",
    "pickled_payload": "holds pickled Python objects (posix.system",
    "random_bytes": "is not a PyTorch checkpoint",
}


def write_damaged(kind: str, path: Path) -> Path:
    """A file at ``path`` that is not a rareid checkpoint, damaged the way ``kind`` says."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("epoch: 3\nnot a checkpoint\n")
    elif kind == "truncated":
        torch.save({"state_dict": {"weight": torch.zeros(4096)}}, path)
        path.write_bytes(path.read_bytes()[:5000])
    elif kind == "state_dict":
        torch.save({"backbone.conv1.weight": torch.zeros(2, 3)}, path)
    elif kind == "other_torch_file":
        torch.save([torch.zeros(3), torch.ones(2)], path)
    elif kind == "pickled_payload":
        torch.save({"state_dict": {}, "payload": _RunsCode()}, path)
    elif kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reader") / "synthetic"
    assert main(["synth", "--out", str(out), "--identities", "12", "--seed", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def gallery(data: Path) -> Path:
    """A folder of a few crops (``rareid index`` lists it before reading the checkpoint)."""
    return data / "bounding_box_test"


def _command(name: str, ckpt: Path, data: Path, gallery: Path, tmp_path: Path) -> list[str]:
    run = tmp_path / "run"
    if name in ("fit", "test"):
        return [name, *tiny_run_args(data, run), "--ckpt_path", str(ckpt)]
    if name == "index":
        return [
            "index",
            "--ckpt",
            str(ckpt),
            "--gallery",
            str(gallery),
            "--out",
            str(tmp_path / "g.npz"),
            "--num-workers",
            "0",
            "--device",
            "cpu",
        ]
    if name == "export":
        return ["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "m.onnx")]
    conf = Path(__file__).resolve().parents[1] / "conf" / "quickstart.yaml"
    return [
        "calibrate",
        "--ckpt",
        str(ckpt),
        "--config",
        str(conf),
        "--root",
        str(data),
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "c.json"),
    ]


@pytest.mark.parametrize("kind", list(DAMAGE))
@pytest.mark.parametrize("command", ["fit", "test", "index", "export", "calibrate"])
def test_damaged_checkpoints_are_one_line_at_every_command(
    command: str,
    kind: str,
    data: Path,
    gallery: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt = write_damaged(kind, tmp_path / f"{kind}.ckpt")
    status = main(_command(command, ckpt, data, gallery, tmp_path))
    captured = capsys.readouterr()
    assert status == 2, captured.err
    line = one_error_line(captured.err, command)
    assert f"checkpoint '{ckpt}' {DAMAGE[kind]}" in line
    assert "weights_only" not in captured.err + captured.out
    assert "this must never run" not in captured.out
    assert not (tmp_path / "g.npz").exists() and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_checkpoints_raise_checkpoint_error_in_python(kind: str, tmp_path: Path) -> None:
    from rareid.deploy.model.inference import Preprocess, load_model
    from rareid.models.module import RAReIDModule

    ckpt = write_damaged(kind, tmp_path / f"{kind}.ckpt")
    readers = (
        read_checkpoint,
        load_model,
        Preprocess.from_checkpoint,
        RAReIDModule.load_from_checkpoint,
    )
    for reader in readers:
        with pytest.raises(CheckpointError, match=f"checkpoint '{ckpt}' ") as caught:
            reader(ckpt)
        assert DAMAGE[kind] in str(caught.value)
        assert "weights_only" not in str(caught.value)


def test_a_folder_or_missing_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a folder"):
        read_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "none.ckpt")


def test_the_reader_imports_no_lightning() -> None:
    """Deployment reads checkpoints without Lightning; the reader must not pull it in."""
    probe = (
        "import sys, rareid.checkpoint_reader, rareid.deploy.model.inference;"
        "print(any(name.split('.')[0] == 'lightning' for name in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert result.stdout.strip() == "False"
