"""The public image helper: the checkpoint's own input size and normalisation, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from rareid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, backbone_statistics
from rareid.deploy.model.inference import (
    Preprocess,
    embed_images,
    list_images,
    load_model,
)
from tests.deploy.conftest import MEAN, STD

pytestmark = pytest.mark.e2e  # the trained checkpoint fixture fits a tiny model


def test_preprocess_uses_the_checkpoint_size_and_normalisation(trained_checkpoint) -> None:
    preprocess = Preprocess.from_checkpoint(trained_checkpoint)
    assert preprocess == Preprocess((64, 32), MEAN, STD)
    flat = np.full((17, 9, 3), (255, 0, 102), dtype=np.uint8)  # any size is resized
    tensor = preprocess([flat])
    assert tensor.shape == (1, 3, 64, 32)
    expected = (np.array([1.0, 0.0, 0.4]) - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(tensor[0, :, 10, 10].numpy(), expected, atol=1e-5)


def test_without_datamodule_hyperparameters_the_backbone_statistics_are_used(
    tmp_path, trained_checkpoint
) -> None:
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    del checkpoint["datamodule_hyper_parameters"]
    torch.save(checkpoint, tmp_path / "bare.ckpt")
    preprocess = Preprocess.from_checkpoint(tmp_path / "bare.ckpt")
    timm_config = timm.get_pretrained_cfg("test_resnet")  # the backbone the model was built with
    assert preprocess.mean == pytest.approx(timm_config.mean) and preprocess.img_size == (64, 32)
    assert preprocess.std == pytest.approx(timm_config.std)
    assert backbone_statistics("no_such_model") == (IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((20, 10, 3), dtype=np.float32),
        np.zeros((20, 10), dtype=np.uint8),
        np.zeros((20, 10, 4), dtype=np.uint8),
        [[0, 0, 0]],
    ],
)
def test_preprocess_rejects_what_it_cannot_read(image) -> None:
    with pytest.raises(ValueError, match="uint8 HxWx3 RGB"):
        Preprocess((64, 32)).image(image)


def test_unreadable_file_is_named(tmp_path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(OSError, match=r"bad\.jpg"):
        Preprocess((64, 32)).image(tmp_path / "bad.jpg")


def test_list_images_is_recursive_and_keeps_images_only(gallery_dir) -> None:
    names = [p.relative_to(gallery_dir).as_posix() for p in list_images(gallery_dir)]
    assert "notes.txt" not in names and "IMG-20240101 (copy).JPG" in names
    assert "deep/er/x.bmp" in names and "p.webp" in names and len(names) == 7


def test_load_model_reads_cli_checkpoints_never_downloads_and_returns_eval_mode(
    tmp_path, trained_checkpoint
) -> None:
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["pretrained"] = True  # would download if honoured
    checkpoint["hyper_parameters"]["weights_path"] = str(tmp_path / "absent.safetensors")
    checkpoint["hyper_parameters"]["_instantiator"] = "lightning.pytorch.cli.instantiate_module"
    torch.save(checkpoint, tmp_path / "p.ckpt")
    model, _ = load_model(tmp_path / "p.ckpt")
    assert not model.training
    reference, _ = load_model(trained_checkpoint)
    images = torch.randn(3, 3, 64, 32)
    levels = torch.tensor([1, 3, 4])
    torch.testing.assert_close(model.embed(images, levels), reference.embed(images, levels))


def test_embed_images_batches_without_touching_batchnorm(trained_checkpoint) -> None:
    model, preprocess = load_model(trained_checkpoint)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    images = [
        np.random.default_rng(i).integers(0, 255, (40, 20, 3), dtype=np.uint8) for i in range(5)
    ]
    batched = embed_images(model, preprocess, images, [1, 2, 3, 4, 4], batch_size=2)
    single = embed_images(model, preprocess, images[:1], [1])
    torch.testing.assert_close(batched[:1], single)
    assert model.training  # mode restored
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    with pytest.raises(ValueError, match="one level per image"):
        embed_images(model, preprocess, images, [1, 2])


def test_the_inference_model_embeds_as_the_training_module_without_lightning(
    tmp_path, trained_checkpoint
) -> None:
    import subprocess
    import sys

    from rareid.models.embedding import EmbeddingModel
    from rareid.models.module import RAReIDModule

    model, _ = load_model(trained_checkpoint)
    assert isinstance(model, EmbeddingModel) and not model.training
    module = RAReIDModule.load_from_checkpoint(trained_checkpoint, map_location="cpu")
    images = torch.randn(5, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    levels = [1, 2, 3, 4, 2]
    torch.testing.assert_close(model.embed(images, levels), module.embed(images, levels))
    gallery = module.embed(images, [4] * 5)
    torch.testing.assert_close(
        model.distance(gallery, levels, gallery), module.distance(gallery, levels, gallery)
    )
    # matching crops never pays Lightning's import (it is most of a one-query start-up)
    probe = (
        "import sys; from rareid.deploy.model.inference import load_model; "
        f"load_model({str(trained_checkpoint)!r}); "
        "print(sorted(m for m in ('lightning', 'torchmetrics', 'albumentations') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]"


def test_the_inference_options_have_the_training_module_defaults() -> None:
    import inspect

    from rareid.models.embedding import EMBEDDING_OPTIONS
    from rareid.models.module import RAReIDModule

    parameters = inspect.signature(RAReIDModule.__init__).parameters
    assert {name: parameters[name].default for name in EMBEDDING_OPTIONS} == EMBEDDING_OPTIONS
