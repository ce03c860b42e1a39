"""What the Python API does with inputs of the wrong kind: a folder given as the checkpoint is
one ValueError naming it and saying to pass a .ckpt file; one image given where a list is
expected is taken as one image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from rareid.cli import main
from rareid.deploy.model.inference import Preprocess, embed_images, load_model, read_checkpoint
from tests.deploy.conftest import make_model
from tests.helpers import one_error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("reader", [load_model, read_checkpoint, Preprocess.from_checkpoint])
def test_a_folder_as_checkpoint_is_one_value_error_naming_it(tmp_path, reader) -> None:
    run = tmp_path / "my run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(ValueError) as caught:
        reader(run)
    message = str(caught.value)
    assert "\n" not in message
    assert str(run) in message and "is a folder" in message and ".ckpt file" in message
    assert "checkpoints/last.ckpt" in message  # the file it probably meant


def test_a_folder_without_checkpoints_still_says_what_to_pass(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"is a folder: pass a \.ckpt file"):
        load_model(tmp_path)


def test_commands_refuse_a_folder_as_checkpoint_in_one_line(tmp_path, capsys) -> None:
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    cv2.imwrite(str(gallery / "a.png"), np.zeros((32, 16, 3), dtype=np.uint8))
    argv = ["index", "--ckpt", str(tmp_path), "--gallery", str(gallery)]
    argv += ["--out", str(tmp_path / "g.npz"), "--no-progress"]
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err, "index")
    assert line.startswith("rareid index: error: --ckpt") and str(tmp_path) in line
    assert "is a folder: pass a .ckpt file" in line
    assert not (tmp_path / "g.npz").exists()
    assert main(["export", "--ckpt", str(tmp_path), "--out", str(tmp_path / "model.onnx")]) == 2
    assert "is a folder: pass a .ckpt file" in one_error_line(capsys.readouterr().err, "export")


def test_one_image_array_or_path_is_one_image(tmp_path) -> None:
    preprocess = Preprocess((64, 32))
    image = np.random.default_rng(0).integers(0, 255, (40, 20, 3), dtype=np.uint8)
    single = preprocess(image)
    assert single.shape == (1, 3, 64, 32)
    torch.testing.assert_close(single, preprocess([image]))
    path = tmp_path / "one.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    torch.testing.assert_close(preprocess(path), single)
    torch.testing.assert_close(preprocess(str(path)), single)
    with pytest.raises(ValueError, match=r"shape \(40, 20\)"):  # a grey image is still refused
        preprocess(np.zeros((40, 20), dtype=np.uint8))
    batch = np.stack([image, image])  # an (N, H, W, 3) array is N images
    torch.testing.assert_close(preprocess(batch), torch.cat([single, single]))


def test_embed_images_takes_one_image_with_one_level() -> None:
    model = make_model()
    preprocess = Preprocess((64, 32))
    image = np.random.default_rng(1).integers(0, 255, (64, 32, 3), dtype=np.uint8)
    one = embed_images(model, preprocess, image, [2])
    assert one.shape == (1, model.embedding_dim)
    torch.testing.assert_close(one, embed_images(model, preprocess, [image], [2]))


def test_building_an_index_from_a_folder_as_checkpoint_says_what_to_pass(tmp_path) -> None:
    from rareid.deploy.gallery.update import build_or_update

    gallery = tmp_path / "gallery"
    gallery.mkdir()
    cv2.imwrite(str(gallery / "a.png"), np.zeros((32, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"is a folder: pass a \.ckpt file"):
        build_or_update(tmp_path / "g.npz", [gallery / "a.png"], gallery, checkpoint=tmp_path)
    assert not (tmp_path / "g.npz").exists()
